//! The fast path: a plain QUERY - one question of class IN, no answer or authority
//! records, at most an OPT record (so no TSIG) - answered by writing the query's ID, flags
//! and question, the zone's prebuilt sections and the OPT record. No parse into hickory's
//! types, no allocation. Whatever else arrives, and whatever this path could not write
//! exactly as the general path would (a UDP answer that needs truncating, a refusal for
//! quota, an unusual EDNS option), is declined and goes to the general path, so the two
//! always give the same bytes (`tests/fastpath.rs` compares them).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_server::net::xfer::Protocol;

use super::answer::Outcome;
use super::handler::DpHandler;
use crate::name::{Name, MAX_WIRE_LEN};
use crate::net::plain;

const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
/// Query types with an exchange of their own in the general path (NXNAME: FORMERR).
const GENERAL_TYPES: [u16; 6] = [
    crate::dnssec::TYPE_NXNAME,
    TYPE_IXFR,
    TYPE_AXFR,
    crate::changes::TYPE_CHANGES,
    crate::record::TYPE_PIR,
    crate::record::TYPE_SLOTS,
];

impl DpHandler {
    /// Answers `query` into `out` when it is a plain query this path answers exactly as
    /// the general path would; false hands it to the general path. `udp`: the answer must
    /// fit the size the query allows (512 bytes, or its EDNS payload up to ours).
    pub(super) fn answer_plain(
        &self,
        query: &[u8],
        src: SocketAddr,
        protocol: Protocol,
        out: &mut Vec<u8>,
    ) -> bool {
        let started = std::time::Instant::now();
        let udp = protocol == Protocol::Udp;
        let mut lower = [0u8; MAX_WIRE_LEN];
        let Some(q) = plain::read(query, &mut lower).filter(|q| !GENERAL_TYPES.contains(&q.qtype))
        else {
            return false;
        };
        let qname = &lower[..q.qname_len];
        let shared = &self.shared;
        let zones = shared.zones.load();
        let zone = zones.find_for(qname, q.qtype);
        let outcome = zone
            .as_deref()
            .map_or(Outcome::Refused, |z| Outcome::of(z, qname, q.qtype));
        // DO to a signed zone: records come with their RRSIG, prebuilt at commit; denials
        // and referrals are signed per answer by the general path.
        let signed = q.dnssec_ok && zone.as_deref().is_some_and(|z| z.store.signer().is_some());
        let sections = match (&outcome, zone.as_deref()) {
            (Outcome::Refused, _) => None,
            (Outcome::Records(set), Some(_)) if signed => match &set.signed_answer {
                Some(p) => Some(p),
                None => return false,
            },
            (_, Some(_)) if signed => return false,
            (o, Some(z)) => match o.prebuilt(z) {
                Some(p) => Some(p),
                None => return false,
            },
            (_, None) => return false,
        };
        let rcode = outcome.rcode();
        let counts = sections.map_or([0; 3], |s| s.counts());
        q.begin(
            out,
            outcome.authoritative(),
            false,
            u16::from(rcode) as u8,
            counts,
        );
        if let Some(s) = sections {
            if !s.write(out) {
                return false;
            }
        }
        // RFC 3225: the DO bit is copied into the response.
        let flags = if q.dnssec_ok { plain::EDNS_DO } else { 0 };
        if !q.finish(out, shared.udp_payload, udp, flags) {
            return false;
        }
        let access = shared.access.load();
        let client = access.identify(src.ip(), self.peer_pin.as_deref());
        let now = std::time::Instant::now();
        if !access.try_charge(&client, 1, now) {
            return false;
        }
        access.observe(&client, qname, rcode == ResponseCode::NXDomain, now);
        let stats = &shared.stats;
        stats.queries.fetch_add(1, Relaxed);
        stats.count_query(q.qtype, protocol);
        outcome.count(stats);
        stats.count_rcode(rcode);
        stats.answer_latency.observe(started.elapsed());
        // The same debug line as the general path's, so operators' query logs see every
        // query whichever path answered it; the name is decoded only when it is logged.
        if tracing::enabled!(tracing::Level::DEBUG) {
            if let Ok((qname, _)) = Name::from_wire(q.question) {
                let proto = if udp { "udp" } else { "stream" };
                tracing::debug!(%src, proto, %qname, qtype = %RecordType::from(q.qtype), "query");
            }
        }
        true
    }
}
