//! What a standard query gets from the zone that holds its name (RFC 1034 section 4.3.2,
//! RFC 2308, RFC 8482), decided once: the general path decodes the outcome's records for
//! hickory's encoder, the fast path (`fast`) copies its prebuilt sections. Both start here,
//! so they cannot disagree on what the answer is.

use std::sync::atomic::Ordering::Relaxed;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};

use super::handler::Stats;
use super::zones::ServedZone;
use crate::dnssec::denial::compact_nsec;
use crate::dnssec::{ZoneSigner, TYPE_NSEC, TYPE_NXNAME, TYPE_RRSIG};
use crate::name::Name;
use crate::zone::store::opaque_record;
use crate::zone::{Lookup, Node, Prebuilt, RRset};

const TYPE_ANY: u16 = 255;
const TYPE_DS: u16 = 43;

/// The kind of answer a query gets.
pub(super) enum Outcome<'z> {
    /// The RRset asked for (for ANY, the node's first one: RFC 8482); also the DS set at a
    /// delegation point, which belongs to the parent side (RFC 4035 section 3.1.4.1).
    Records(&'z RRset),
    /// The name exists without the asked type; also DS at a delegation point without one,
    /// an authoritative NODATA rather than a referral.
    NoData,
    /// The name is at or below a delegation point (its node).
    Referral(&'z Node),
    NxDomain,
    /// The name is not in this zone.
    Refused,
}

impl<'z> Outcome<'z> {
    /// Classifies a query for `qname` (lowercase wire form) and `qtype` in `zone`.
    pub(super) fn of(zone: &'z ServedZone, qname: &[u8], qtype: u16) -> Outcome<'z> {
        match zone.store.lookup(qname) {
            Lookup::Exact(node) => {
                let set = if qtype == TYPE_ANY {
                    node.rrsets.first()
                } else {
                    node.rrset(qtype)
                };
                set.map_or(Outcome::NoData, Outcome::Records)
            }
            Lookup::Referral { cut, node } if qtype == TYPE_DS && cut == qname => node
                .rrset(TYPE_DS)
                .map_or(Outcome::NoData, Outcome::Records),
            Lookup::Referral { node, .. } => Outcome::Referral(node),
            Lookup::NxDomain => Outcome::NxDomain,
            Lookup::OutOfZone => Outcome::Refused,
        }
    }

    pub(super) fn rcode(&self) -> ResponseCode {
        match self {
            Outcome::NxDomain => ResponseCode::NXDomain,
            Outcome::Refused => ResponseCode::Refused,
            _ => ResponseCode::NoError,
        }
    }

    pub(super) fn authoritative(&self) -> bool {
        !matches!(self, Outcome::Referral(_) | Outcome::Refused)
    }

    /// Counts the outcome's kind (the RCODE is counted when the answer is sent).
    pub(super) fn count(&self, stats: &Stats) {
        match self {
            Outcome::NoData => stats.nodata.fetch_add(1, Relaxed),
            Outcome::Referral(_) => stats.referrals.fetch_add(1, Relaxed),
            _ => 0,
        };
    }

    /// The prebuilt sections, or None when there are none (REFUSED) or they are missing.
    pub(super) fn prebuilt(&self, zone: &'z ServedZone) -> Option<&'z Prebuilt> {
        match self {
            Outcome::Records(set) => Some(&set.answer),
            Outcome::NoData | Outcome::NxDomain => zone.negative.as_ref(),
            Outcome::Referral(node) => node.referral(),
            Outcome::Refused => None,
        }
    }

    /// The answer, authority and additional records, for the general path.
    pub(super) fn records(&self, zone: &ServedZone) -> [Vec<Record>; 3] {
        match self {
            Outcome::Records(set) => set.answer.decoded().unwrap_or_default(),
            Outcome::NoData | Outcome::NxDomain => {
                [Vec::new(), vec![zone.negative_soa.clone()], Vec::new()]
            }
            Outcome::Referral(node) => {
                let ns = node
                    .rrset(u16::from(RecordType::NS))
                    .map(RRset::records)
                    .unwrap_or_default();
                [Vec::new(), ns, node.glue().to_vec()]
            }
            Outcome::Refused => Default::default(),
        }
    }
}

/// An RRSIG record over `owner`'s set, with the set's TTL.
fn rrsig_record(owner: &Name, ttl: u32, rrsig: &[u8]) -> Record {
    opaque_record(owner, ttl, TYPE_RRSIG, rrsig)
}

impl Outcome<'_> {
    /// The sections for a DO query to a signed zone: each RRset with its RRSIG; a denial
    /// with the SOA, its RRSIG and one compact NSEC for the name asked (RFC 9824), signed
    /// now; a referral with the child's DS and its RRSIG, or an NSEC at the cut proving
    /// there is none. The caller turns NXDOMAIN into NOERROR unless the asker set CO.
    pub(super) fn signed_records(
        &self,
        zone: &ServedZone,
        signer: &ZoneSigner,
        qname: &[u8],
        now: u64,
    ) -> [Vec<Record>; 3] {
        let [mut answers, mut authority, additional] = self.records(zone);
        let store = &zone.store;
        let name = Name::from_wire_trusted(qname);
        let negative_ttl = zone.negative_soa.ttl;
        // One NSEC denying `owner` the types it lacks, signed now.
        let nsec = |owner: &Name, types: &[u16], out: &mut Vec<Record>| {
            let rdata = compact_nsec(owner, types);
            let sig = signer.sign(owner, TYPE_NSEC, negative_ttl, &[&rdata], now);
            out.push(opaque_record(owner, negative_ttl, TYPE_NSEC, &rdata));
            out.push(rrsig_record(owner, negative_ttl, &sig));
        };
        match self {
            Outcome::Records(set) => {
                if let Some(sig) = &set.rrsig {
                    answers.push(rrsig_record(&name, set.ttl, sig));
                }
            }
            Outcome::NoData | Outcome::NxDomain => {
                if let Some(sig) = store
                    .apex()
                    .rrset(u16::from(RecordType::SOA))
                    .and_then(|s| s.rrsig.as_ref())
                {
                    authority.push(rrsig_record(store.origin(), negative_ttl, sig));
                }
                let types: Vec<u16> = match (self, store.node(qname)) {
                    (Outcome::NoData, Some(node)) => node.rrsets.iter().map(|s| s.rtype).collect(),
                    // An empty non-terminal: no types, yet it exists (no NXNAME).
                    (Outcome::NoData, None) => Vec::new(),
                    _ => vec![TYPE_NXNAME],
                };
                nsec(&name, &types, &mut authority);
            }
            Outcome::Referral(node) => {
                if let Lookup::Referral { cut, .. } = store.lookup(qname) {
                    let cut = Name::from_wire_trusted(cut);
                    match node.rrset(TYPE_DS) {
                        Some(ds) => {
                            authority.extend(ds.records());
                            if let Some(sig) = &ds.rrsig {
                                authority.push(rrsig_record(&cut, ds.ttl, sig));
                            }
                        }
                        None => {
                            let types: Vec<u16> = node.rrsets.iter().map(|s| s.rtype).collect();
                            nsec(&cut, &types, &mut authority);
                        }
                    }
                }
            }
            Outcome::Refused => {}
        }
        [answers, authority, additional]
    }
}
