//! DNSSEC on the resolver's walk (DESIGN.md section 12, docs/dnssec.md): what the walk
//! knows about a zone's security, and the checks a reply from a secure zone must pass
//! before it is used. Free of I/O: the walk (`super::iterate`) fetches the DNSKEY and DS
//! sets and hands each reply here; the proofs themselves are `crate::dnssec::validate`.

use std::sync::Arc;

use hickory_proto::op::Message;
use hickory_proto::rr::Record;

use crate::dnssec::validate::{Bogus, SignedSet, ZoneKeys};
use crate::dnssec::RrsigFields;
use crate::dnssec::{TYPE_DS, TYPE_NSEC, TYPE_RRSIG};
use crate::name::Name;
use crate::zone::update::canonical_rdata;

/// The trust anchor of the tree (`[dnssec] trust_anchor`): the apex's DS set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    pub zone: Name,
    /// DS RDATAs; a configured DNSKEY is held as its DS.
    pub ds: Vec<Vec<u8>>,
}

impl TrustAnchor {
    /// One `trust_anchor` line for the tree `apex`: the DS line `mimi key dnssec ds` prints
    /// (`<apex> [TTL] [IN] DS tag 15 2 hex`), or the DNSKEY line (`DNSKEY flags 3 15
    /// base64`), held as its DS. Returns the DS RDATA.
    pub fn parse_line(line: &str, apex: &Name) -> Result<Vec<u8>, String> {
        let (owner, rtype, rdata) = crate::zone::parse_key_line(line)?;
        if owner != *apex {
            return Err(format!(
                "the anchor is for {owner}; it must be for the tree apex {apex}"
            ));
        }
        Ok(match rtype {
            TYPE_DS => rdata,
            _ => crate::dnssec::key::ds_rdata(apex, &rdata),
        })
    }
}

/// What the walk knows of a zone's security.
#[derive(Debug, Clone)]
pub enum Security {
    /// Its keys, proved from the anchor down.
    Secure(Arc<ZoneKeys>),
    /// Its parent's validated DS set; the keys are fetched when first needed.
    Ds(Arc<[Vec<u8>]>),
    /// Proved to have no DS (or below such a zone): answers are used as they come, and
    /// the trust file alone vouches for mappings.
    Insecure,
}

/// The RRset `owner`/`rtype` of a section with the RRSIGs beside it, in canonical form.
pub fn set_of(section: &[Record], owner: &Name, rtype: u16) -> SignedSet {
    let at = |r: &&Record| Name::from_hickory(&r.name).is_ok_and(|n| n == *owner);
    let rdata = |r: &Record| canonical_rdata(r).unwrap_or_default();
    SignedSet {
        owner: owner.clone(),
        rtype,
        rdatas: section
            .iter()
            .filter(at)
            .filter(|r| u16::from(r.record_type()) == rtype)
            .map(rdata)
            .collect(),
        rrsigs: section
            .iter()
            .filter(at)
            .filter(|r| u16::from(r.record_type()) == TYPE_RRSIG)
            .map(rdata)
            .collect(),
    }
}

/// Checks the answer set (`qname`, `qtype`) of a reply from a secure zone.
pub fn check_answer(
    keys: &ZoneKeys,
    reply: &Message,
    qname: &Name,
    qtype: u16,
    now: u32,
) -> Result<(), Bogus> {
    keys.verify(&set_of(&reply.answers, qname, qtype), now)
}

/// Checks a negative answer from a secure zone: its SOA (when there is one) and its
/// denial. Returns true when the name does not exist (NXDOMAIN, or RFC 9824's NXNAME in
/// a NOERROR answer).
pub fn check_denial(
    keys: &ZoneKeys,
    reply: &Message,
    qname: &Name,
    qtype: u16,
    now: u32,
) -> Result<bool, Bogus> {
    let soa = set_of(&reply.authorities, &keys.zone, 6);
    if !soa.rdatas.is_empty() {
        keys.verify(&soa, now)?;
    }
    keys.denial(qname, qtype, &nsec_sets(reply), now)
}

/// Checks a referral from a secure zone to `cut`: what the child's security is.
pub fn check_referral(
    keys: &ZoneKeys,
    reply: &Message,
    cut: &Name,
    now: u32,
) -> Result<Security, Bogus> {
    let ds = set_of(&reply.authorities, cut, TYPE_DS);
    let nsec = set_of(&reply.authorities, cut, TYPE_NSEC);
    let nsec = (!nsec.rdatas.is_empty()).then_some(&nsec);
    Ok(match keys.delegation(cut, Some(&ds), nsec, now)? {
        Some(ds) => Security::Ds(ds.into()),
        None => Security::Insecure,
    })
}

/// Every NSEC set of a reply's authority section, one per owner.
fn nsec_sets(reply: &Message) -> Vec<SignedSet> {
    let mut owners: Vec<Name> = Vec::new();
    for r in &reply.authorities {
        if u16::from(r.record_type()) != TYPE_NSEC {
            continue;
        }
        if let Ok(n) = Name::from_hickory(&r.name) {
            if !owners.contains(&n) {
                owners.push(n);
            }
        }
    }
    owners
        .iter()
        .map(|o| set_of(&reply.authorities, o, TYPE_NSEC))
        .collect()
}

/// The zone strictly below `zone` that a reply to (`qname`, `qtype`) came from, when one
/// server serves both: the signer of the answer's RRSIGs, or the owner of a denial's SOA.
/// Never `qname` itself for a DS question, which only the parent's side answers.
pub fn answered_from_below(reply: &Message, zone: &Name, qname: &Name, qtype: u16) -> Option<Name> {
    let signer = reply
        .answers
        .iter()
        .filter(|r| u16::from(r.record_type()) == TYPE_RRSIG)
        .filter_map(canonical_rdata)
        .filter_map(|rdata| RrsigFields::parse(&rdata).ok())
        .find(|f| f.type_covered == qtype)
        .map(|f| f.signer);
    let from = signer.or_else(|| {
        reply
            .authorities
            .iter()
            .find(|r| u16::from(r.record_type()) == 6)
            .and_then(|r| Name::from_hickory(&r.name).ok())
    })?;
    let below = from != *zone && from.is_subdomain_of(zone) && qname.is_subdomain_of(&from);
    (below && !(qtype == TYPE_DS && from == *qname)).then_some(from)
}
