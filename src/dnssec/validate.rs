//! Validation of a chain of trust (RFC 4035 section 5), free of I/O: the caller fetches the
//! sets, this checks them. From a trust anchor (the apex's DS) each zone's DNSKEY set must
//! hold a key whose digest the parent's validated DS set lists and be signed by it; every
//! other set must be signed by the zone's keys with the zone as signer; a compact denial
//! (RFC 9824) must be an NSEC owned by the name asked that does not list the type asked.
//! Each failure is a [`Bogus`] naming the step.

use ed25519_dalek::VerifyingKey;
use thiserror::Error;

use super::denial::parse_nsec;
use super::key::{ds_rdata, key_tag, parse_dnskey};
use super::sign::{verify_rrset, RrsigFields};
use super::{DnssecError, TYPE_DNSKEY, TYPE_DS, TYPE_NSEC, TYPE_NXNAME};
use crate::name::Name;

/// One RRset as received: its owner, type, canonical RDATAs, and the RRSIGs beside it.
#[derive(Debug, Clone)]
pub struct SignedSet {
    pub owner: Name,
    pub rtype: u16,
    pub rdatas: Vec<Vec<u8>>,
    pub rrsigs: Vec<Vec<u8>>,
}

/// Why an answer is bogus, by step.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Bogus {
    #[error("no DNSKEY of {zone} matches its DS set")]
    NoKeyForDs { zone: String },
    #[error("the DNSKEY set of {zone} is not signed by a key its DS names: {reason}")]
    DnskeyUnsigned { zone: String, reason: String },
    #[error("{owner} type {rtype} has no RRSIG by {zone}")]
    MissingRrsig {
        owner: String,
        rtype: u16,
        zone: String,
    },
    #[error("{owner} type {rtype}: {reason}")]
    BadSignature {
        owner: String,
        rtype: u16,
        reason: String,
    },
    #[error("the denial for {qname} type {qtype} does not prove it: {reason}")]
    BadDenial {
        qname: String,
        qtype: u16,
        reason: String,
    },
    #[error("the referral to {cut} carries neither a signed DS set nor a signed NSEC proving there is none")]
    UnprovedDelegation { cut: String },
}

/// A zone's keys, proved from its parent's DS set (or the trust anchor).
#[derive(Debug, Clone)]
pub struct ZoneKeys {
    pub zone: Name,
    keys: Vec<(u16, VerifyingKey)>,
}

impl ZoneKeys {
    /// The zone keys of `dnskey` (the zone's DNSKEY set with its RRSIGs), accepted when a key
    /// whose DS is in `ds` signs the set (RFC 4035 section 5.2).
    pub fn prove(dnskey: &SignedSet, ds: &[Vec<u8>], now: u32) -> Result<ZoneKeys, Bogus> {
        let zone = dnskey.owner.clone();
        let keys: Vec<(u16, VerifyingKey, bool)> = dnskey
            .rdatas
            .iter()
            .filter_map(|r| {
                let (flags, key) = parse_dnskey(r).ok()?;
                // Bit 7: a zone key; others sign nothing here.
                (flags & 0x0100 != 0).then(|| (key_tag(r), key, ds.contains(&ds_rdata(&zone, r))))
            })
            .collect();
        if !keys.iter().any(|k| k.2) {
            return Err(Bogus::NoKeyForDs {
                zone: zone.to_string(),
            });
        }
        let entry: Vec<(u16, VerifyingKey)> =
            keys.iter().filter(|k| k.2).map(|k| (k.0, k.1)).collect();
        let by_entry = ZoneKeys {
            zone: zone.clone(),
            keys: entry,
        };
        by_entry
            .verify(dnskey, now)
            .map_err(|e| Bogus::DnskeyUnsigned {
                zone: zone.to_string(),
                reason: e.to_string(),
            })?;
        Ok(ZoneKeys {
            zone,
            keys: keys.into_iter().map(|k| (k.0, k.1)).collect(),
        })
    }

    /// Accepts `set` when one of its RRSIGs, made by this zone, verifies with one of the
    /// zone's keys at `now`.
    pub fn verify(&self, set: &SignedSet, now: u32) -> Result<(), Bogus> {
        let rdatas: Vec<&[u8]> = set.rdatas.iter().map(Vec::as_slice).collect();
        let mut last: Option<DnssecError> = None;
        let mut any = false;
        for rrsig in &set.rrsigs {
            let Ok(f) = RrsigFields::parse(rrsig) else {
                continue;
            };
            if f.signer != self.zone || f.type_covered != set.rtype {
                continue;
            }
            any = true;
            for (tag, key) in self.keys.iter().filter(|(t, _)| *t == f.key_tag) {
                match verify_rrset(key, *tag, &set.owner, set.rtype, &rdatas, &f, now) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = Some(e),
                }
            }
        }
        match (any, last) {
            (false, _) => Err(Bogus::MissingRrsig {
                owner: set.owner.to_string(),
                rtype: set.rtype,
                zone: self.zone.to_string(),
            }),
            (true, e) => Err(Bogus::BadSignature {
                owner: set.owner.to_string(),
                rtype: set.rtype,
                reason: e.map_or_else(
                    || "no key with the RRSIG's key tag".into(),
                    |e| e.to_string(),
                ),
            }),
        }
    }

    /// The DS set of a child, validated here: the child's proof.
    pub fn child_ds(&self, ds: &SignedSet, now: u32) -> Result<Vec<Vec<u8>>, Bogus> {
        debug_assert_eq!(ds.rtype, TYPE_DS);
        self.verify(ds, now)?;
        Ok(ds.rdatas.clone())
    }

    /// Checks a denial of `qtype` at `qname` from the NSEC sets of a negative answer (each
    /// verified here). Either an NSEC owned by `qname` that does not list `qtype` (NODATA,
    /// or with NXNAME RFC 9824's compact NXDOMAIN), or, as RFC 4035 section 5.4 has it, an
    /// NSEC covering `qname` and one covering the wildcard at its closest encloser.
    /// Returns true when the name does not exist at all.
    pub fn denial(
        &self,
        qname: &Name,
        qtype: u16,
        nsecs: &[SignedSet],
        now: u32,
    ) -> Result<bool, Bogus> {
        let bad = |reason: String| Bogus::BadDenial {
            qname: qname.to_string(),
            qtype,
            reason,
        };
        if let Some(own) = nsecs.iter().find(|s| &s.owner == qname) {
            let types = self.nsec_types(own, now, &bad)?.1;
            if types.contains(&qtype) || types.contains(&5) {
                return Err(bad(format!("the NSEC lists type {qtype} (or CNAME)")));
            }
            return Ok(types.contains(&TYPE_NXNAME));
        }
        // Classic NSEC: the name lies in a gap, and so does the wildcard that could have
        // made it; or the gap ends below the name, which then exists as an empty
        // non-terminal without data (RFC 4035 section 3.1.3.2).
        let mut encloser: Option<Name> = None;
        for set in nsecs {
            let (next, _) = self.nsec_types(set, now, &bad)?;
            if covers(&set.owner, &next, qname) {
                if next.is_subdomain_of(qname) {
                    return Ok(false);
                }
                // The closest encloser: the longest ancestor of the name that the gap's
                // ends descend from.
                encloser = qname
                    .suffixes()
                    .skip(1)
                    .map(Name::from_wire_trusted)
                    .find(|a| set.owner.is_subdomain_of(a) || next.is_subdomain_of(a));
            }
        }
        let Some(encloser) = encloser else {
            return Err(bad("no NSEC owned by the name or covering it".into()));
        };
        let wildcard = Name::from_labels([&b"*"[..]], &encloser)
            .map_err(|e| bad(format!("wildcard of {encloser}: {e}")))?;
        for set in nsecs {
            let (next, _) = self.nsec_types(set, now, &bad)?;
            if covers(&set.owner, &next, &wildcard) {
                return Ok(true);
            }
        }
        Err(bad(format!("no NSEC denies the wildcard {wildcard}")))
    }

    /// A verified NSEC set's next name and types.
    fn nsec_types(
        &self,
        nsec: &SignedSet,
        now: u32,
        bad: &dyn Fn(String) -> Bogus,
    ) -> Result<(Name, Vec<u16>), Bogus> {
        if nsec.rtype != TYPE_NSEC {
            return Err(bad(format!("type {} where an NSEC was due", nsec.rtype)));
        }
        if !nsec.owner.is_subdomain_of(&self.zone) {
            return Err(bad(format!(
                "an NSEC owned by {}, outside {}",
                nsec.owner, self.zone
            )));
        }
        self.verify(nsec, now)?;
        let [rdata] = nsec.rdatas.as_slice() else {
            return Err(bad(format!(
                "{} NSEC records at {}",
                nsec.rdatas.len(),
                nsec.owner
            )));
        };
        parse_nsec(rdata).map_err(|e| bad(e.to_string()))
    }

    /// What a referral from this zone to `cut` proves about the child: its DS set
    /// (validated; Some), or that it has none, by a signed NSEC at the cut that lists NS
    /// but neither DS nor SOA (RFC 6840 section 4.4; None: the child is insecure).
    pub fn delegation(
        &self,
        cut: &Name,
        ds: Option<&SignedSet>,
        nsec: Option<&SignedSet>,
        now: u32,
    ) -> Result<Option<Vec<Vec<u8>>>, Bogus> {
        if let Some(ds) = ds.filter(|d| !d.rdatas.is_empty()) {
            return self.child_ds(ds, now).map(Some);
        }
        let unproved = || Bogus::UnprovedDelegation {
            cut: cut.to_string(),
        };
        let nsec = nsec.filter(|n| &n.owner == cut).ok_or_else(unproved)?;
        let bad = |reason: String| Bogus::BadDenial {
            qname: cut.to_string(),
            qtype: TYPE_DS,
            reason,
        };
        let (_, types) = self.nsec_types(nsec, now, &bad)?;
        if types.contains(&TYPE_DS) || types.contains(&6) || !types.contains(&2) {
            return Err(bad(
                "the NSEC at the cut does not show a delegation without DS".into(),
            ));
        }
        Ok(None)
    }
}

/// True when the NSEC gap (`owner`, `next`) holds `name` strictly inside it, in canonical
/// order; the last NSEC of a zone wraps around to the apex.
fn covers(owner: &Name, next: &Name, name: &Name) -> bool {
    if owner < next {
        owner < name && name < next
    } else {
        owner < name || name < next
    }
}

/// The keys of the anchor zone from its DNSKEY set and the configured DS.
pub fn anchor(dnskey: &SignedSet, anchor_ds: &[Vec<u8>], now: u32) -> Result<ZoneKeys, Bogus> {
    debug_assert_eq!(dnskey.rtype, TYPE_DNSKEY);
    ZoneKeys::prove(dnskey, anchor_ds, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::denial::compact_nsec;
    use crate::dnssec::sign::{sign_rrset, SignatureWindow};
    use crate::dnssec::{DnssecKey, FLAGS_CSK};

    const NOW: u32 = 1_800_000_000;

    fn n(s: &str) -> Name {
        Name::parse(s, None).unwrap()
    }

    fn signed(key: &DnssecKey, owner: &str, rtype: u16, rdatas: Vec<Vec<u8>>) -> SignedSet {
        let refs: Vec<&[u8]> = rdatas.iter().map(Vec::as_slice).collect();
        let window = SignatureWindow::starting(u64::from(NOW), 86400);
        let rrsig = sign_rrset(key, &n(owner), rtype, 300, &refs, window);
        SignedSet {
            owner: n(owner),
            rtype,
            rdatas,
            rrsigs: vec![rrsig],
        }
    }

    struct Chain {
        parent: DnssecKey,
        child: DnssecKey,
        parent_dnskey: SignedSet,
        child_dnskey: SignedSet,
        ds: SignedSet,
        answer: SignedSet,
    }

    fn chain() -> Chain {
        let parent = DnssecKey::generate(n("e164.mimi.arpa."), FLAGS_CSK);
        let child = DnssecKey::generate(n("1.e164.mimi.arpa."), FLAGS_CSK);
        Chain {
            parent_dnskey: signed(
                &parent,
                "e164.mimi.arpa.",
                TYPE_DNSKEY,
                vec![parent.dnskey_rdata()],
            ),
            child_dnskey: signed(
                &child,
                "1.e164.mimi.arpa.",
                TYPE_DNSKEY,
                vec![child.dnskey_rdata()],
            ),
            ds: signed(
                &parent,
                "1.e164.mimi.arpa.",
                TYPE_DS,
                vec![child.ds_rdata()],
            ),
            answer: signed(
                &child,
                "2.1.e164.mimi.arpa.",
                65280,
                vec![b"mapping".to_vec()],
            ),
            parent,
            child,
        }
    }

    fn walk(c: &Chain, anchor_ds: &[Vec<u8>], now: u32) -> Result<(), Bogus> {
        let top = anchor(&c.parent_dnskey, anchor_ds, now)?;
        let ds = top.child_ds(&c.ds, now)?;
        let keys = ZoneKeys::prove(&c.child_dnskey, &ds, now)?;
        keys.verify(&c.answer, now)
    }

    #[test]
    fn a_chain_from_the_anchor_validates_and_each_break_is_named() {
        let c = chain();
        let anchor_ds = vec![c.parent.ds_rdata()];
        walk(&c, &anchor_ds, NOW).unwrap();
        // A wrong DS as the anchor.
        let other = DnssecKey::generate(n("e164.mimi.arpa."), FLAGS_CSK);
        assert!(matches!(
            walk(&c, &[other.ds_rdata()], NOW),
            Err(Bogus::NoKeyForDs { .. })
        ));
        // A changed record.
        let mut changed = chain_with(&c, |c| c.answer.rdatas[0][0] ^= 1);
        assert!(matches!(
            walk(&changed, &anchor_ds, NOW),
            Err(Bogus::BadSignature { .. })
        ));
        // A stripped RRSIG.
        changed = chain_with(&c, |c| c.answer.rrsigs.clear());
        assert!(matches!(
            walk(&changed, &anchor_ds, NOW),
            Err(Bogus::MissingRrsig { .. })
        ));
        // A wrong DS at the parent (signed by the parent, for another key).
        changed = chain_with(&c, |c| {
            c.ds = signed(
                &c.parent,
                "1.e164.mimi.arpa.",
                TYPE_DS,
                vec![other.ds_rdata()],
            )
        });
        assert!(matches!(
            walk(&changed, &anchor_ds, NOW),
            Err(Bogus::NoKeyForDs { .. })
        ));
        // Expired signatures.
        let e = walk(&c, &anchor_ds, NOW + 2 * 86400).unwrap_err();
        assert!(e.to_string().contains("not at"), "{e}");
        // A DS set signed by the child, not the parent.
        changed = chain_with(&c, |c| {
            c.ds = signed(
                &c.child,
                "1.e164.mimi.arpa.",
                TYPE_DS,
                vec![c.child.ds_rdata()],
            )
        });
        assert!(matches!(
            walk(&changed, &anchor_ds, NOW),
            Err(Bogus::MissingRrsig { .. })
        ));
    }

    fn chain_with(c: &Chain, f: impl FnOnce(&mut Chain)) -> Chain {
        let mut copy = Chain {
            parent: DnssecKey::from_toml_str(&c.parent.to_toml(), "p").unwrap(),
            child: DnssecKey::from_toml_str(&c.child.to_toml(), "c").unwrap(),
            parent_dnskey: c.parent_dnskey.clone(),
            child_dnskey: c.child_dnskey.clone(),
            ds: c.ds.clone(),
            answer: c.answer.clone(),
        };
        f(&mut copy);
        copy
    }

    #[test]
    fn compact_denials_validate_and_a_denial_of_an_existing_type_is_bogus() {
        let c = chain();
        let keys = ZoneKeys::prove(&c.child_dnskey, &[c.child.ds_rdata()], NOW).unwrap();
        let qname = n("9.1.e164.mimi.arpa.");
        let nx = signed(
            &c.child,
            "9.1.e164.mimi.arpa.",
            TYPE_NSEC,
            vec![compact_nsec(&qname, &[TYPE_NXNAME])],
        );
        assert!(keys
            .denial(&qname, 65280, std::slice::from_ref(&nx), NOW)
            .unwrap());
        let owner = n("2.1.e164.mimi.arpa.");
        let nodata = signed(
            &c.child,
            "2.1.e164.mimi.arpa.",
            TYPE_NSEC,
            vec![compact_nsec(&owner, &[65280])],
        );
        assert!(!keys
            .denial(&owner, 16, std::slice::from_ref(&nodata), NOW)
            .unwrap());
        // Denying a type the name has, or for another name, is bogus.
        assert!(matches!(
            keys.denial(&owner, 65280, std::slice::from_ref(&nodata), NOW),
            Err(Bogus::BadDenial { .. })
        ));
        assert!(matches!(
            keys.denial(&qname, 65280, std::slice::from_ref(&nodata), NOW),
            Err(Bogus::BadDenial { .. })
        ));
    }

    #[test]
    fn a_classic_nsec_chain_denies_a_name_and_its_wildcard() {
        use crate::dnssec::denial::type_bitmap;
        let c = chain();
        let keys = ZoneKeys::prove(&c.child_dnskey, &[c.child.ds_rdata()], NOW).unwrap();
        let nsec = |owner: &str, next: &str, types: &[u16]| {
            let mut rdata = n(next).as_wire().to_vec();
            rdata.extend(type_bitmap(types));
            signed(&c.child, owner, TYPE_NSEC, vec![rdata])
        };
        let apex = nsec(
            "1.e164.mimi.arpa.",
            "2.1.e164.mimi.arpa.",
            &[2, 6, 46, 47, 48],
        );
        let last = nsec("2.1.e164.mimi.arpa.", "1.e164.mimi.arpa.", &[46, 47, 65280]);
        let absent = n("5.1.e164.mimi.arpa.");
        // The last NSEC wraps to the apex and covers the name; the apex's covers *.1.e164.
        assert!(keys
            .denial(&absent, 65280, &[last.clone(), apex.clone()], NOW)
            .unwrap());
        let e = keys
            .denial(&absent, 65280, std::slice::from_ref(&last), NOW)
            .unwrap_err();
        assert!(
            e.to_string().contains("wildcard *.1.e164.mimi.arpa."),
            "{e}"
        );
        // A gap that ends below the name: an empty non-terminal, no data.
        let ent = n("2.1.e164.mimi.arpa.");
        let to_child = nsec(
            "1.e164.mimi.arpa.",
            "3.2.1.e164.mimi.arpa.",
            &[2, 6, 46, 47, 48],
        );
        assert!(!keys
            .denial(&ent, 2, std::slice::from_ref(&to_child), NOW)
            .unwrap());
        // An NSEC signed by another key proves nothing.
        let mut forged = last.clone();
        forged.rdatas[0][0] ^= 1;
        assert!(matches!(
            keys.denial(&absent, 65280, &[forged, apex], NOW),
            Err(Bogus::BadSignature { .. })
        ));
    }

    #[test]
    fn a_referral_proves_the_childs_ds_or_that_it_has_none() {
        let c = chain();
        let top = anchor(&c.parent_dnskey, &[c.parent.ds_rdata()], NOW).unwrap();
        let cut = n("1.e164.mimi.arpa.");
        assert_eq!(
            top.delegation(&cut, Some(&c.ds), None, NOW).unwrap(),
            Some(vec![c.child.ds_rdata()])
        );
        let no_ds = signed(
            &c.parent,
            "1.e164.mimi.arpa.",
            TYPE_NSEC,
            vec![crate::dnssec::denial::compact_nsec(&cut, &[2])],
        );
        assert_eq!(top.delegation(&cut, None, Some(&no_ds), NOW).unwrap(), None);
        // Neither: a stripped referral is bogus, not insecure.
        assert!(matches!(
            top.delegation(&cut, None, None, NOW),
            Err(Bogus::UnprovedDelegation { .. })
        ));
        // An NSEC from the child's apex (it lists SOA) does not prove the parent's side.
        let apex_nsec = signed(
            &c.parent,
            "1.e164.mimi.arpa.",
            TYPE_NSEC,
            vec![crate::dnssec::denial::compact_nsec(&cut, &[2, 6])],
        );
        assert!(top.delegation(&cut, None, Some(&apex_nsec), NOW).is_err());
    }
}
