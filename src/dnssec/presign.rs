//! A zone signed whole ahead of time, for DNS servers that cannot sign online
//! (`mimi zone export --dnssec`, docs/dnssec.md "Export"): the key's DNSKEY set at the apex,
//! a classic NSEC chain (RFC 4034 section 4) over the authoritative names, and an RRSIG over
//! every authoritative set, the chain's included. At a delegation only the DS set (and the
//! NSEC) is signed; names below a cut are glue, neither signed nor chained.
//!
//! The chain lets anyone who can query a server of the zone list its names: the price of
//! having other servers answer denials, which the DP itself never pays (it answers with
//! compact denial). Free of I/O: the caller hands in the zone's sets and writes the result.

use super::denial::type_bitmap;
use super::key::DnssecKey;
use super::sign::{sign_rrset, SignatureWindow};
use super::{TYPE_DNSKEY, TYPE_DS, TYPE_NSEC, TYPE_RRSIG};
use crate::name::Name;

const TYPE_NS: u16 = 2;

/// One RRset of the zone: RDATAs in canonical form.
#[derive(Debug, Clone)]
pub struct Set {
    pub owner: Name,
    pub rtype: u16,
    pub ttl: u32,
    pub rdatas: Vec<Vec<u8>>,
}

/// The sets to add to `sets` (the zone at `apex`, without DNSSEC records of its own) so
/// that it is signed by `key`: the DNSKEY set (TTL `dnskey_ttl`), one NSEC per
/// authoritative name (TTL `nsec_ttl`, RFC 9077: the SOA's negative TTL), and the RRSIGs.
pub fn presign(
    apex: &Name,
    sets: &[Set],
    key: &DnssecKey,
    dnskey_ttl: u32,
    nsec_ttl: u32,
    window: SignatureWindow,
) -> Vec<Set> {
    let cuts: Vec<&Name> = sets
        .iter()
        .filter(|s| s.rtype == TYPE_NS && s.owner != *apex)
        .map(|s| &s.owner)
        .collect();
    let below_cut = |n: &Name| cuts.iter().any(|c| n != *c && n.is_subdomain_of(c));
    let at_cut = |n: &Name| cuts.contains(&n);
    let mut all: Vec<Set> = sets
        .iter()
        .filter(|s| !below_cut(&s.owner))
        .cloned()
        .collect();
    all.push(Set {
        owner: apex.clone(),
        rtype: TYPE_DNSKEY,
        ttl: dnskey_ttl,
        rdatas: vec![key.dnskey_rdata()],
    });
    // The chain, in canonical order, wrapping to the apex.
    let mut owners: Vec<Name> = all.iter().map(|s| s.owner.clone()).collect();
    owners.sort();
    owners.dedup();
    let mut added: Vec<Set> = all
        .iter()
        .filter(|s| s.rtype == TYPE_DNSKEY)
        .cloned()
        .collect();
    for (i, owner) in owners.iter().enumerate() {
        let next = &owners[(i + 1) % owners.len()];
        let mut types: Vec<u16> = all
            .iter()
            .filter(|s| &s.owner == owner)
            .map(|s| s.rtype)
            .collect();
        types.extend([TYPE_NSEC, TYPE_RRSIG]);
        let mut rdata = next.as_wire().to_vec();
        rdata.extend(type_bitmap(&types));
        added.push(Set {
            owner: owner.clone(),
            rtype: TYPE_NSEC,
            ttl: nsec_ttl,
            rdatas: vec![rdata],
        });
    }
    let signed: Vec<&Set> = all
        .iter()
        .filter(|s| s.rtype != TYPE_DNSKEY)
        .chain(added.iter())
        .filter(|s| !at_cut(&s.owner) || s.rtype == TYPE_DS || s.rtype == TYPE_NSEC)
        .collect();
    let mut rrsigs: Vec<Set> = Vec::with_capacity(signed.len());
    for s in signed {
        let refs: Vec<&[u8]> = s.rdatas.iter().map(Vec::as_slice).collect();
        rrsigs.push(Set {
            owner: s.owner.clone(),
            rtype: TYPE_RRSIG,
            ttl: s.ttl,
            rdatas: vec![sign_rrset(key, &s.owner, s.rtype, s.ttl, &refs, window)],
        });
    }
    added.extend(rrsigs);
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::denial::parse_nsec;
    use crate::dnssec::validate::{SignedSet, ZoneKeys};
    use crate::dnssec::FLAGS_CSK;

    fn n(s: &str) -> Name {
        Name::parse(s, None).unwrap()
    }

    fn set(owner: &str, rtype: u16, rdata: &[u8]) -> Set {
        Set {
            owner: n(owner),
            rtype,
            ttl: 300,
            rdatas: vec![rdata.to_vec()],
        }
    }

    #[test]
    fn the_chain_covers_authoritative_names_and_everything_it_adds_validates() {
        let apex = n("e164.mimi.arpa.");
        let key = DnssecKey::generate(apex.clone(), FLAGS_CSK);
        let sets = vec![
            set("e164.mimi.arpa.", 6, b"soa"),
            set("e164.mimi.arpa.", TYPE_NS, b"ns"),
            set("2.2.1.e164.mimi.arpa.", 65280, b"mapping"),
            set("5.e164.mimi.arpa.", TYPE_NS, b"cut"),
            set("5.e164.mimi.arpa.", TYPE_DS, b"ds"),
            set("ns1.5.e164.mimi.arpa.", 1, b"glue"),
        ];
        let now = 1_800_000_000;
        let added = presign(
            &apex,
            &sets,
            &key,
            3600,
            300,
            SignatureWindow::starting(now, 86400),
        );
        let nsecs: Vec<&Set> = added.iter().filter(|s| s.rtype == TYPE_NSEC).collect();
        let owners: Vec<String> = nsecs.iter().map(|s| s.owner.to_string()).collect();
        // Canonical order; glue below the cut is not chained; the last wraps to the apex.
        assert_eq!(
            owners,
            [
                "e164.mimi.arpa.",
                "2.2.1.e164.mimi.arpa.",
                "5.e164.mimi.arpa."
            ]
        );
        let (next, types) = parse_nsec(&nsecs[2].rdatas[0]).unwrap();
        assert_eq!(next, apex);
        assert_eq!(types, vec![TYPE_NS, TYPE_DS, TYPE_RRSIG, TYPE_NSEC]);
        // Every added set validates under the key; the cut's NS and the glue are unsigned.
        let keys = ZoneKeys::prove(
            &signed_set(&added, &apex, TYPE_DNSKEY),
            &[key.ds_rdata()],
            now as u32,
        )
        .unwrap();
        for s in sets
            .iter()
            .chain(added.iter())
            .filter(|s| s.rtype != TYPE_RRSIG)
        {
            let signed = signed_set(
                &sets.iter().chain(&added).cloned().collect::<Vec<_>>(),
                &s.owner,
                s.rtype,
            );
            let cut_ns = s.owner == n("5.e164.mimi.arpa.") && s.rtype == TYPE_NS;
            let glue = s.owner == n("ns1.5.e164.mimi.arpa.");
            match keys.verify(&signed, now as u32) {
                Ok(()) => assert!(!cut_ns && !glue, "{} {} is signed", s.owner, s.rtype),
                Err(e) => assert!(cut_ns || glue, "{} {}: {e}", s.owner, s.rtype),
            }
        }
    }

    fn signed_set(all: &[Set], owner: &Name, rtype: u16) -> SignedSet {
        let of = |t: u16| {
            all.iter()
                .filter(move |s| &s.owner == owner && s.rtype == t)
        };
        SignedSet {
            owner: owner.clone(),
            rtype,
            rdatas: of(rtype).flat_map(|s| s.rdatas.clone()).collect(),
            rrsigs: of(TYPE_RRSIG)
                .flat_map(|s| s.rdatas.clone())
                .filter(|r| r[..2] == rtype.to_be_bytes())
                .collect(),
        }
    }
}
