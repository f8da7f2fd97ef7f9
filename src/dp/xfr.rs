//! Zone transfers out: AXFR (RFC 5936) from the served version and IXFR (RFC 1995) from
//! the zone's diff history, both over TCP as runs of messages.

use std::sync::atomic::Ordering::Relaxed;

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use tracing::debug;

use super::handler::DpHandler;
use super::zones::{ServedZone, DERIVED_TYPES};
use crate::zone::Diff;

/// Uncompressed bytes of records per transfer message: well under the 64 KiB a TCP
/// message can hold, so no message is ever truncated.
const MESSAGE_BYTES: usize = 16 * 1024;

/// Splits records into runs whose uncompressed size stays within `MESSAGE_BYTES` (a
/// single larger record gets a message of its own).
fn chunks<'r>(records: &[&'r Record]) -> Vec<Vec<&'r Record>> {
    use hickory_proto::serialize::binary::BinEncodable;
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for &r in records {
        let len = r.name.len() + 12 + r.data.to_bytes().map_or(0, |b| b.len());
        if !current.is_empty() && size + len > MESSAGE_BYTES {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(r);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The client's serial in an IXFR request: the SOA in its authority section.
fn ixfr_serial(request: &Request) -> Option<u32> {
    request.authorities.iter().find_map(|r| match &r.data {
        hickory_proto::rr::RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

fn soa_record(zone: &ServedZone, soa: &(crate::zone::Soa, u32)) -> Record {
    crate::zone::Record {
        name: zone.store.origin().clone(),
        ttl: soa.1,
        data: crate::zone::RData::Soa(Box::new(soa.0.clone())),
        line: 0,
    }
    .to_wire_record()
}

/// IXFR body (RFC 1995 section 4): new SOA, then per step old SOA, removed, new SOA,
/// added, then the new SOA again.
fn ixfr_records(zone: &ServedZone, diffs: &[std::sync::Arc<Diff>]) -> Vec<Record> {
    let keep = |r: &&crate::zone::Record| !DERIVED_TYPES.contains(&r.data.rtype());
    let mut out = vec![zone.soa.clone()];
    for d in diffs {
        out.push(soa_record(zone, &d.from));
        out.extend(d.removed.iter().filter(keep).map(|r| r.to_wire_record()));
        out.push(soa_record(zone, &d.to));
        out.extend(d.added.iter().filter(keep).map(|r| r.to_wire_record()));
    }
    out.push(zone.soa.clone());
    out
}

impl DpHandler {
    /// AXFR, or IXFR from the history when it reaches the client's serial (else the
    /// whole zone, as RFC 1995 section 4 allows).
    pub(super) async fn transfer<R: ResponseHandler>(
        &self,
        request: &Request,
        zone: &ServedZone,
        qtype: RecordType,
        edns: Option<&Edns>,
        signing: Option<(&crate::tsig::TsigKey, &crate::tsig::Verified)>,
        mut handle: R,
    ) -> ResponseInfo {
        self.shared.stats.transfers.fetch_add(1, Relaxed);
        let incremental = (qtype == RecordType::IXFR)
            .then(|| ixfr_serial(request))
            .flatten()
            .and_then(|serial| zone.diffs_since(serial).map(|d| (serial, d)));
        let owned: Vec<Record>;
        let records: Vec<&Record> = match incremental {
            Some((serial, [])) => {
                debug!(src = %request.src(), serial, "IXFR: client is up to date");
                vec![&zone.soa]
            }
            Some((serial, diffs)) => {
                self.shared.stats.ixfr_incremental.fetch_add(1, Relaxed);
                debug!(src = %request.src(), serial, steps = diffs.len(), "IXFR from the journal");
                owned = ixfr_records(zone, diffs);
                owned.iter().collect()
            }
            None => {
                owned = zone
                    .store
                    .records()
                    .filter(|r| {
                        let t = u16::from(r.record_type());
                        r.record_type() != RecordType::SOA && !DERIVED_TYPES.contains(&t)
                    })
                    .collect();
                std::iter::once(&zone.soa)
                    .chain(owned.iter())
                    .chain(std::iter::once(&zone.soa))
                    .collect()
            }
        };
        let info = super::run::send_run(
            request,
            edns,
            signing,
            &mut handle,
            "zone transfer",
            chunks(&records),
        )
        .await;
        self.shared.stats.count_rcode(ResponseCode::NoError);
        info
    }
}
