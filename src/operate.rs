//! The zone operator's side of the lifecycle (DESIGN 8.2, docs/lifecycle.md): releasing
//! an identifier and porting a number, on a zone file or on a live DP.
//!
//! On a live DP each is one DNS UPDATE signed with the operator's TSIG key (the DP's
//! `[[operator]]`), in plain RFC 2136 forms that `nsupdate` can send too:
//! - release: "delete all RRsets of a name" (class ANY, type ANY) at the identifier's owner;
//! - port out: NS records at the owner plus glue below it (the recipient's name servers);
//! - take a port back: "delete an RRset" (class ANY, type NS) at the owner.
//!
//! The donor hands the number's signed mappings to the recipient as a file: a zone-file
//! fragment with `$ORIGIN` the owner and its SSI records, unchanged (a mapping is bound to
//! its owner name, not to a zone).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::rdata::{A, AAAA, NS};
use hickory_proto::rr::{DNSClass, RData as HRData, Record as WireRecord, RecordType};
use thiserror::Error;

use crate::name::Name;
use crate::record::{Ssi, TYPE_SSI};
use crate::zone::{RData, Record, ZoneFile};

#[derive(Debug, Error)]
pub enum OperateError {
    #[error("asking {server} for the mappings of {owner}: {reason}")]
    Fetch {
        server: SocketAddr,
        owner: Name,
        reason: String,
    },
    #[error("{server} answered {rcode} for the mappings of {owner}")]
    Answer {
        server: SocketAddr,
        owner: Name,
        rcode: String,
    },
    #[error("{file}: {reason}")]
    Mappings { file: String, reason: String },
}

/// The update section that releases `owner`: delete all RRsets of the name.
pub fn release_update(owner: &Name) -> Vec<WireRecord> {
    let mut r = WireRecord::update0(owner.to_hickory(), 0, RecordType::ANY);
    r.dns_class = DNSClass::ANY;
    vec![r]
}

/// The update section that delegates `owner` to `ns` (glue for the names below it).
pub fn delegation_update(owner: &Name, ns: &[(Name, IpAddr)], ttl: u32) -> Vec<WireRecord> {
    let mut out = Vec::new();
    for (name, ip) in ns {
        out.push(WireRecord::from_rdata(
            owner.to_hickory(),
            ttl,
            HRData::NS(NS(name.to_hickory())),
        ));
        if name.is_subdomain_of(owner) {
            let data = match ip {
                IpAddr::V4(v4) => HRData::A(A(*v4)),
                IpAddr::V6(v6) => HRData::AAAA(AAAA(*v6)),
            };
            out.push(WireRecord::from_rdata(name.to_hickory(), ttl, data));
        }
    }
    out
}

/// The update section that adds the DS records `add` and deletes `remove` (each the
/// child's name and the DS RDATA): RFC 2136 "add to an RRset" and "delete an RR from an
/// RRset" (class NONE), as `nsupdate` sends them.
pub fn ds_update(add: &[(Name, Vec<u8>)], remove: &[(Name, Vec<u8>)], ttl: u32) -> Vec<WireRecord> {
    use hickory_proto::rr::rdata::NULL;
    let ds = |owner: &Name, rdata: &[u8], ttl: u32| {
        WireRecord::from_rdata(
            owner.to_hickory(),
            ttl,
            HRData::Unknown {
                code: RecordType::DS,
                rdata: NULL::with(rdata.to_vec()),
            },
        )
    };
    let mut out: Vec<WireRecord> = remove
        .iter()
        .map(|(owner, rdata)| {
            let mut r = ds(owner, rdata, 0);
            r.dns_class = DNSClass::NONE;
            r
        })
        .collect();
    out.extend(add.iter().map(|(owner, rdata)| ds(owner, rdata, ttl)));
    out
}

/// The update section that takes the delegation of `owner` back: delete its NS RRset.
pub fn undelegation_update(owner: &Name) -> Vec<WireRecord> {
    let mut r = WireRecord::update0(owner.to_hickory(), 0, RecordType::NS);
    r.dns_class = DNSClass::ANY;
    vec![r]
}

/// The SSI records (with TTLs) a DP serves at `owner`, tombstones included: what the
/// donor hands over when the number is ported.
pub async fn fetch_mappings(
    server: SocketAddr,
    owner: &Name,
    wait: Duration,
) -> Result<Vec<(u32, Ssi)>, OperateError> {
    let fetch = |reason: String| OperateError::Fetch {
        server,
        owner: owner.clone(),
        reason,
    };
    let (reply, _) = crate::resolver::transport::exchange(server, owner, TYPE_SSI, wait)
        .await
        .map_err(|e| fetch(e.to_string()))?;
    let rcode = reply.metadata.response_code;
    if rcode != hickory_proto::op::ResponseCode::NoError
        && rcode != hickory_proto::op::ResponseCode::NXDomain
    {
        return Err(OperateError::Answer {
            server,
            owner: owner.clone(),
            rcode: rcode.to_string(),
        });
    }
    if !reply.metadata.authoritative {
        return Err(fetch(
            "the answer is not authoritative: ask the zone's primary DP".into(),
        ));
    }
    let mut out = Vec::new();
    for r in &reply.answers {
        if u16::from(r.record_type()) != TYPE_SSI
            || Name::from_hickory(&r.name).ok().as_ref() != Some(owner)
        {
            continue;
        }
        let HRData::Unknown { rdata, .. } = &r.data else {
            continue;
        };
        let ssi = Ssi::from_wire(&rdata.anything).map_err(|e| fetch(format!("SSI record: {e}")))?;
        out.push((r.ttl, ssi));
    }
    Ok(out)
}

/// The hand-over file of a ported number: its SSI records under `$ORIGIN` the owner.
pub fn mappings_file(owner: &Name, mappings: &[(u32, Ssi)]) -> ZoneFile {
    ZoneFile {
        origin: owner.clone(),
        records: mappings
            .iter()
            .map(|(ttl, ssi)| Record {
                name: owner.clone(),
                ttl: *ttl,
                data: RData::Ssi(Box::new(ssi.clone())),
                line: 0,
            })
            .collect(),
        source: String::new(),
    }
}

/// Reads a hand-over file: every record must be an SSI record at `owner`.
pub fn read_mappings(path: &std::path::Path, owner: &Name) -> Result<Vec<Record>, OperateError> {
    let file = path.display().to_string();
    let zone = ZoneFile::load(path).map_err(|e| OperateError::Mappings {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    for r in &zone.records {
        if r.name != *owner || !matches!(r.data, RData::Ssi(_)) {
            return Err(OperateError::Mappings {
                file: format!("{file}:{}", r.line),
                reason: format!(
                    "{} type {}: a hand-over file holds only SSI records of {owner}",
                    r.name,
                    r.data.rtype()
                ),
            });
        }
    }
    Ok(zone.records)
}
