//! The write side of a zone: a changeset applied to one store version makes the next
//! version and the diff that actually happened.
//!
//! Every source of change (a reloaded file, DNS UPDATE, expiry, release) is a
//! [`Changeset`] of records to remove and to add. [`ZoneStore::apply`] never touches the
//! version it is called on: readers holding it keep a consistent zone, and the caller
//! publishes the new version in one pointer swap. The returned [`Diff`] lists only what
//! changed (removing an absent record or adding a present one is no change), with the SOA
//! before and after, in the shape of an RFC 1995 IXFR step and of a journal entry.

use std::collections::{BTreeSet, HashMap, HashSet};

use hickory_proto::rr::Record as WireRecord;
use thiserror::Error;

use super::rdata::{RData, Soa, TYPE_A, TYPE_AAAA, TYPE_NS, TYPE_SOA};
use super::store::{Node, RRset, ZoneStore};
use super::Record;
use crate::name::Name;

/// Records to take out of a zone and records to put in. The SOA is not part of it: the
/// commit sets the serial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changeset {
    pub remove: Vec<Record>,
    pub add: Vec<Record>,
}

impl Changeset {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Owner names this changeset touches, deduplicated.
    pub fn owners(&self) -> BTreeSet<Name> {
        self.remove
            .iter()
            .chain(&self.add)
            .map(|r| r.name.clone())
            .collect()
    }
}

/// What one commit changed: RFC 1995's "old SOA, removed, new SOA, added".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The SOA before (its serial is where this step starts) and its TTL.
    pub from: (Soa, u32),
    /// The SOA after.
    pub to: (Soa, u32),
    pub removed: Vec<Record>,
    pub added: Vec<Record>,
}

impl Diff {
    pub fn from_serial(&self) -> u32 {
        self.from.0.serial
    }

    pub fn to_serial(&self) -> u32 {
        self.to.0.serial
    }

    /// Owner names whose data changed.
    pub fn owners(&self) -> BTreeSet<Name> {
        self.removed
            .iter()
            .chain(&self.added)
            .map(|r| r.name.clone())
            .collect()
    }

    /// True when a delegation or an address that may be glue changed: then the cuts and
    /// glue of the zone are recomputed.
    fn touches_structure(&self, origin: &Name) -> bool {
        self.removed.iter().chain(&self.added).any(|r| {
            matches!(r.data.rtype(), TYPE_NS | TYPE_A | TYPE_AAAA)
                || (r.data.rtype() == TYPE_SOA && r.name == *origin)
        })
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UpdateError {
    #[error("{name} is outside the zone {origin}")]
    OutOfZone { name: Name, origin: Name },
    #[error("the SOA is set by the commit, not by a changeset ({name})")]
    SoaInChangeset { name: Name },
    #[error("zone {origin}: {message}")]
    Structure { origin: Name, message: String },
    #[error(transparent)]
    Encode(#[from] super::prebuilt::PrebuiltError),
}

/// The next serial after `serial` in RFC 1982 arithmetic, never 0 (RFC 2136 section 3.6
/// asks an incremented serial; some secondaries treat 0 as "unset").
pub fn next_serial(serial: u32) -> u32 {
    match serial.wrapping_add(1) {
        0 => 1,
        s => s,
    }
}

/// True when `a` is newer than `b` in RFC 1982 serial arithmetic.
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// Converts a stored (hickory) record back into a zone record, for diffs, files and the
/// journal. Every stored record came from a zone record, so this only fails on a type the
/// zone layer cannot hold, which it then skips.
pub fn record_from_wire(r: &WireRecord) -> Option<Record> {
    let name = Name::from_hickory(&r.name).ok()?;
    let rdata = canonical_rdata(r)?;
    let data = RData::from_wire(u16::from(r.record_type()), &rdata).ok()?;
    Some(Record {
        name,
        ttl: r.ttl,
        data,
        line: 0,
    })
}

/// The record's RDATA in canonical form (RFC 4034 section 6.2): no name compression inside
/// it (SOA's and NS's names; the store's names are lowercase already). What a DNSSEC
/// signature covers.
pub fn canonical_rdata(r: &WireRecord) -> Option<Vec<u8>> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
    let mut rdata = Vec::with_capacity(64);
    {
        let mut encoder = BinEncoder::new(&mut rdata);
        encoder.set_canonical_form(true);
        r.data.emit(&mut encoder).ok()?;
    }
    Some(rdata)
}

/// The identity of a record in a set: owner, type and RDATA (the TTL is an attribute).
type RecordKey = (Box<[u8]>, u16, Vec<u8>);

fn key_of(r: &Record) -> RecordKey {
    (r.name.as_wire().into(), r.data.rtype(), r.data.to_wire())
}

/// The changeset that turns `current` into a zone holding exactly `records` (a re-read
/// zone file): what `current` has and `records` lacks is removed, the reverse added.
/// SOA records and the types in `derived` (data the server makes, such as PIRCFG) are
/// left out on both sides. A record whose TTL changed is removed and added again.
pub fn diff_against(current: &ZoneStore, records: &[Record], derived: &[u16]) -> Changeset {
    let keep = |rtype: u16| rtype != TYPE_SOA && !derived.contains(&rtype);
    let mut old: HashMap<RecordKey, Record> = HashMap::new();
    for r in current.zone_records() {
        if keep(r.data.rtype()) {
            old.insert(key_of(&r), r);
        }
    }
    let mut seen = HashSet::new();
    let mut cs = Changeset::default();
    for r in records {
        if !keep(r.data.rtype()) || !r.name.is_subdomain_of(current.origin()) {
            continue;
        }
        let k = key_of(r);
        if !seen.insert(k.clone()) {
            continue;
        }
        match old.remove(&k) {
            Some(o) if o.ttl == r.ttl => {}
            Some(o) => {
                cs.remove.push(o);
                cs.add.push(Record {
                    line: 0,
                    ..r.clone()
                });
            }
            None => cs.add.push(Record {
                line: 0,
                ..r.clone()
            }),
        }
    }
    let mut removed: Vec<Record> = old.into_values().collect();
    removed.sort_by_key(key_of);
    cs.remove.splice(0..0, removed);
    cs
}

impl ZoneStore {
    /// Makes the next version: `changes` applied and the SOA replaced by `soa` (with TTL
    /// `soa_ttl`). This version is left as it was. Removing a record that is not there and
    /// adding one that is are no-ops and do not appear in the diff; an added record whose
    /// owner/type/RDATA exists with another TTL replaces it.
    pub fn apply(
        &self,
        changes: &Changeset,
        soa: Soa,
        soa_ttl: u32,
    ) -> Result<(ZoneStore, Diff), UpdateError> {
        let origin = self.origin.clone();
        for r in changes.remove.iter().chain(&changes.add) {
            if !r.name.is_subdomain_of(&origin) {
                return Err(UpdateError::OutOfZone {
                    name: r.name.clone(),
                    origin,
                });
            }
            if r.data.rtype() == TYPE_SOA {
                return Err(UpdateError::SoaInChangeset {
                    name: r.name.clone(),
                });
            }
        }
        let mut next = self.clone();
        let mut removed = Vec::new();
        let mut added = Vec::new();
        for r in &changes.remove {
            let wire = r.to_wire_record();
            if let Some(old) = next.remove_record(r.name.as_wire(), r.data.rtype(), &wire)? {
                removed.push(Record {
                    ttl: old.ttl,
                    line: 0,
                    ..r.clone()
                });
            }
        }
        for r in &changes.add {
            let wire = r.to_wire_record();
            // One TTL per RRset: the others of the set take the new record's TTL, and the
            // diff says so, so secondaries following by IXFR hold the same TTLs.
            let others: Vec<Record> = match next
                .node(r.name.as_wire())
                .and_then(|n| n.rrset(r.data.rtype()))
            {
                Some(set) if set.ttl != r.ttl => set
                    .records()
                    .iter()
                    .filter(|x| x.data != wire.data)
                    .filter_map(record_from_wire)
                    .collect(),
                _ => Vec::new(),
            };
            for o in others {
                added.push(Record {
                    ttl: r.ttl,
                    ..o.clone()
                });
                removed.push(o);
            }
            match next.add_record(r.name.as_wire(), r.data.rtype(), wire)? {
                Added::New => added.push(Record {
                    line: 0,
                    ..r.clone()
                }),
                Added::Retimed(old_ttl) => {
                    removed.push(Record {
                        ttl: old_ttl,
                        line: 0,
                        ..r.clone()
                    });
                    added.push(Record {
                        line: 0,
                        ..r.clone()
                    });
                }
                Added::Present => {}
            }
        }
        let diff = Diff {
            from: (self.soa.clone(), self.soa_ttl),
            to: (soa.clone(), soa_ttl),
            removed,
            added,
        };
        next.set_soa(soa, soa_ttl)?;
        if diff.touches_structure(&origin) {
            // Cuts and glue depend on NS records and in-zone addresses anywhere in the
            // zone: index the new content afresh (rare: delegations change seldom).
            let records: Vec<Record> = next.zone_records().collect();
            let signer = next.signer.clone();
            next = ZoneStore::build(origin.clone(), records).map_err(|message| {
                UpdateError::Structure {
                    origin: origin.clone(),
                    message,
                }
            })?;
            if let Some(signer) = signer {
                next = next.sign_with(signer, crate::sys::unix_now())?;
            }
        } else if next.signer.is_some() {
            // The sets the changes made, and the SOA: each signed once here, at commit.
            let now = crate::sys::unix_now();
            next.sign_node(origin.as_wire(), now)?;
            for owner in changes.owners() {
                next.sign_node(owner.as_wire(), now)?;
            }
        }
        Ok((next, diff))
    }

    fn set_soa(&mut self, soa: Soa, ttl: u32) -> Result<(), UpdateError> {
        let record = Record {
            name: self.origin.clone(),
            ttl,
            data: RData::Soa(Box::new(soa.clone())),
            line: 0,
        }
        .to_wire_record();
        let key: Box<[u8]> = self.origin.as_wire().into();
        if let Some(apex) = self.nodes.get_mut(&key) {
            apex.rrsets.retain(|s| s.rtype != TYPE_SOA);
            apex.rrsets
                .insert(0, RRset::new(&key, TYPE_SOA, ttl, &[record], &[])?);
        }
        self.soa = soa;
        self.soa_ttl = ttl;
        Ok(())
    }

    /// Takes one record out; drops nodes left without data or children.
    fn remove_record(
        &mut self,
        owner: &[u8],
        rtype: u16,
        wire: &WireRecord,
    ) -> Result<Option<WireRecord>, UpdateError> {
        let Some(node) = self.nodes.get(owner) else {
            return Ok(None);
        };
        let Some(set_index) = node.rrsets.iter().position(|s| s.rtype == rtype) else {
            return Ok(None);
        };
        let mut records = node.rrsets[set_index].records();
        let Some(pos) = records.iter().position(|x| x.data == wire.data) else {
            return Ok(None);
        };
        let Some(node) = self.nodes.get_mut(owner) else {
            return Ok(None);
        };
        let old = records.remove(pos);
        if records.is_empty() {
            node.rrsets.remove(set_index);
        } else {
            let set = &node.rrsets[set_index];
            node.rrsets[set_index] = reencode(owner, set.rtype, set.ttl, &records, node.glue())?;
        }
        self.records -= 1;
        self.prune(owner);
        Ok(Some(old))
    }

    /// Removes `owner` and then its ancestors while they hold nothing.
    fn prune(&mut self, owner: &[u8]) {
        let origin_len = self.origin.as_wire().len();
        let mut name = owner;
        while name.len() > origin_len {
            let empty = self
                .nodes
                .get(name)
                .is_some_and(|n| n.rrsets.is_empty() && n.children == 0);
            if !empty {
                return;
            }
            self.nodes.remove(name);
            name = &name[1 + name[0] as usize..];
            if let Some(parent) = self.nodes.get_mut(name) {
                parent.children = parent.children.saturating_sub(1);
            }
        }
    }

    fn add_record(
        &mut self,
        owner: &[u8],
        rtype: u16,
        wire: WireRecord,
    ) -> Result<Added, UpdateError> {
        self.ensure_node(owner);
        let Some(node) = self.nodes.get(owner) else {
            return Ok(Added::Present);
        };
        let existing = node.rrsets.iter().position(|s| s.rtype == rtype);
        let mut records = existing.map_or_else(Vec::new, |i| node.rrsets[i].records());
        let old = records.iter().position(|x| x.data == wire.data);
        if old.is_some_and(|i| records[i].ttl == wire.ttl) {
            return Ok(Added::Present);
        }
        // One TTL per RRset (RFC 2181 section 5.2): the newest record's TTL wins.
        let result = match old {
            Some(i) => {
                let t = records.remove(i).ttl;
                self.records -= 1;
                Added::Retimed(t)
            }
            None => Added::New,
        };
        let ttl = wire.ttl;
        records.iter_mut().for_each(|x| x.ttl = ttl);
        records.push(wire);
        self.records += 1;
        let Some(node) = self.nodes.get_mut(owner) else {
            return Ok(Added::Present);
        };
        let set = reencode(owner, rtype, ttl, &records, node.glue())?;
        match existing {
            Some(i) => node.rrsets[i] = set,
            None => node.rrsets.push(set),
        }
        Ok(result)
    }

    /// Creates the node for `owner` and any missing ancestors (empty non-terminals),
    /// keeping the parents' child counts.
    fn ensure_node(&mut self, owner: &[u8]) {
        if self.nodes.contains_key(owner) {
            return;
        }
        let origin_len = self.origin.as_wire().len();
        self.nodes.insert(owner, Node::default());
        let mut name = owner;
        while name.len() > origin_len {
            name = &name[1 + name[0] as usize..];
            match self.nodes.get_mut(name) {
                Some(parent) => {
                    parent.children += 1;
                    return;
                }
                None => {
                    let node = Node {
                        children: 1,
                        ..Node::default()
                    };
                    self.nodes.insert(name, node);
                }
            }
        }
    }
}

/// The set encoded again after a change; an NS set keeps its node's glue as additional
/// data (a change to NS or addresses rebuilds the whole index anyway).
fn reencode(
    owner: &[u8],
    rtype: u16,
    ttl: u32,
    records: &[WireRecord],
    glue: &[WireRecord],
) -> Result<RRset, UpdateError> {
    let additional = if rtype == TYPE_NS { glue } else { &[] };
    Ok(RRset::new(owner, rtype, ttl, records, additional)?)
}

enum Added {
    New,
    /// The record was there with another TTL (given), now replaced.
    Retimed(u32),
    Present,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{Lookup, ZoneFile};

    const ZONE: &str = "$ORIGIN 5.5.5.1.e164.mimi.arpa.\n$TTL 3600\n\
        @ SOA ns1 host 7 2 3 4 300\n@ NS ns1\nns1 A 127.0.0.1\n\
        2.2.2.2.1.1.1 TXT \"a\"\n";

    fn zone() -> ZoneStore {
        let z = ZoneFile::from_str_named(ZONE, "t", None).unwrap();
        ZoneStore::build(z.origin.clone(), z.records).unwrap()
    }

    fn txt(name: &str, text: &str, ttl: u32) -> Record {
        Record {
            name: name.parse().unwrap(),
            ttl,
            data: RData::Txt(vec![text.as_bytes().into()]),
            line: 0,
        }
    }

    fn w(s: &str) -> Vec<u8> {
        s.parse::<Name>().unwrap().as_wire().to_vec()
    }

    fn bumped(z: &ZoneStore) -> Soa {
        let mut soa = z.soa().clone();
        soa.serial = next_serial(soa.serial);
        soa
    }

    const A: &str = "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.";
    const B: &str = "3.3.3.3.1.1.1.5.5.5.1.e164.mimi.arpa.";

    /// Every authoritative set of a signed version verifies with the zone key; glue and
    /// the delegation's NS carry none.
    fn assert_all_signed(z: &ZoneStore, key: &crate::dnssec::DnssecKey) {
        use crate::dnssec::sign::{verify_rrset, RrsigFields};
        let now = crate::sys::unix_now() as u32;
        for (owner, node) in z.nodes.iter() {
            let name = Name::from_wire_trusted(owner);
            let delegated = node.is_cut || name.to_string().contains(".7.7.5.5.5.1.");
            for set in &node.rrsets {
                let Some(sig) = &set.rrsig else {
                    assert!(delegated, "{name} type {} is unsigned", set.rtype);
                    continue;
                };
                assert!(!delegated || set.rtype == crate::dnssec::TYPE_DS, "{name}");
                let rdatas: Vec<Vec<u8>> = set
                    .records()
                    .iter()
                    .map(|r| canonical_rdata(r).unwrap())
                    .collect();
                let refs: Vec<&[u8]> = rdatas.iter().map(Vec::as_slice).collect();
                let f = RrsigFields::parse(sig).unwrap();
                verify_rrset(
                    &key.public_key(),
                    key.key_tag(),
                    &name,
                    set.rtype,
                    &refs,
                    &f,
                    now,
                )
                .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    #[test]
    fn a_signed_zone_signs_at_commit_what_changed_and_only_that() {
        use crate::dnssec::{DnssecKey, ZoneSigner, FLAGS_CSK};
        let key = DnssecKey::generate("5.5.5.1.e164.mimi.arpa.".parse().unwrap(), FLAGS_CSK);
        let signer = std::sync::Arc::new(ZoneSigner::new(
            DnssecKey::from_toml_str(&key.to_toml(), "k").unwrap(),
            86400,
            3600,
        ));
        let v1 = zone().sign_with(signer, crate::sys::unix_now()).unwrap();
        assert!(v1.apex().rrset(crate::dnssec::TYPE_DNSKEY).is_some());
        assert_all_signed(&v1, &key);
        let sig_of = |z: &ZoneStore, name: &str, rtype: u16| {
            z.node(&w(name))
                .and_then(|n| n.rrset(rtype))
                .and_then(|s| s.rrsig.clone())
        };
        let ns1 = "ns1.5.5.5.1.e164.mimi.arpa.";
        // A change: the new set and the SOA are signed anew, the rest kept as they were.
        let cs = Changeset {
            remove: vec![],
            add: vec![txt(B, "b", 60), txt(A, "a2", 3600)],
        };
        let (v2, _) = v1.apply(&cs, bumped(&v1), 3600).unwrap();
        assert_all_signed(&v2, &key);
        assert_ne!(sig_of(&v1, A, 16), sig_of(&v2, A, 16));
        assert_ne!(
            sig_of(&v1, "5.5.5.1.e164.mimi.arpa.", 6),
            sig_of(&v2, "5.5.5.1.e164.mimi.arpa.", 6)
        );
        assert_eq!(
            sig_of(&v1, ns1, 1),
            sig_of(&v2, ns1, 1),
            "untouched: not signed again"
        );
        // A delegation rebuilds the index: everything is signed again, glue and the cut's
        // NS are not, a DS at the cut is.
        let child = "7.7.5.5.5.1.e164.mimi.arpa.";
        let ns = |target: &str| Record {
            name: child.parse().unwrap(),
            ttl: 3600,
            data: RData::Ns(target.parse().unwrap()),
            line: 0,
        };
        let glue = Record {
            name: "ns.7.7.5.5.5.1.e164.mimi.arpa.".parse().unwrap(),
            ttl: 3600,
            data: RData::A(std::net::Ipv4Addr::new(192, 0, 2, 1)),
            line: 0,
        };
        let ds = Record {
            name: child.parse().unwrap(),
            ttl: 3600,
            data: RData::Unknown {
                rtype: crate::dnssec::TYPE_DS,
                data: vec![1u8; 36].into_boxed_slice(),
            },
            line: 0,
        };
        let cs = Changeset {
            remove: vec![],
            add: vec![ns("ns.7.7.5.5.5.1.e164.mimi.arpa."), glue, ds],
        };
        let (v3, _) = v2.apply(&cs, bumped(&v2), 3600).unwrap();
        assert_all_signed(&v3, &key);
        assert!(sig_of(&v3, child, crate::dnssec::TYPE_DS).is_some());
        assert!(sig_of(&v3, child, 2).is_none());
        assert!(sig_of(&v3, "ns.7.7.5.5.5.1.e164.mimi.arpa.", 1).is_none());
        // Signatures near expiry are made again, and only those.
        let later = crate::sys::unix_now() + 86400 - 1800;
        assert!(v3.resigned(crate::sys::unix_now()).unwrap().is_none());
        let v4 = v3.resigned(later).unwrap().expect("stale signatures");
        assert_ne!(sig_of(&v3, ns1, 1), sig_of(&v4, ns1, 1));
        let expiring = |z: &ZoneStore| {
            let sig = sig_of(z, ns1, 1).unwrap();
            crate::dnssec::RrsigFields::parse(&sig)
                .unwrap()
                .window
                .expiration
        };
        assert!(u64::from(expiring(&v4)) > later + 86400 - 3600);
        assert!(
            sig_of(&v4, child, 2).is_none(),
            "the cut's NS stays unsigned"
        );
        // An unsigned zone stays unsigned.
        let (plain, _) = zone().apply(&cs, bumped(&v2), 3600).unwrap();
        assert!(plain
            .nodes
            .values()
            .all(|n| n.rrsets.iter().all(|s| s.rrsig.is_none())));
    }

    #[test]
    fn add_and_remove_make_new_versions_and_leave_the_old_one() {
        let v1 = zone();
        let cs = Changeset {
            remove: vec![txt(A, "a", 3600)],
            add: vec![txt(B, "b", 60)],
        };
        let (v2, diff) = v1.apply(&cs, bumped(&v1), 3600).unwrap();
        assert_eq!(diff.from_serial(), 7);
        assert_eq!(diff.to_serial(), 8);
        assert_eq!(diff.removed.len(), 1);
        assert_eq!(diff.added.len(), 1);
        // The old version is untouched.
        assert!(matches!(v1.lookup(&w(A)), Lookup::Exact(n) if !n.rrsets.is_empty()));
        assert!(matches!(v1.lookup(&w(B)), Lookup::NxDomain));
        // The new one has the change, and the emptied branch is gone (no stale ENTs).
        assert!(matches!(v2.lookup(&w(A)), Lookup::NxDomain));
        assert!(matches!(
            v2.lookup(&w("2.1.1.1.5.5.5.1.e164.mimi.arpa.")),
            Lookup::NxDomain
        ));
        assert!(matches!(v2.lookup(&w(B)), Lookup::Exact(n) if n.rrsets.len() == 1));
        assert!(
            matches!(v2.lookup(&w("3.1.1.1.5.5.5.1.e164.mimi.arpa.")), Lookup::Exact(n) if n.rrsets.is_empty())
        );
        assert!(matches!(
            v2.lookup(&w("1.1.5.5.5.1.e164.mimi.arpa.")),
            Lookup::Exact(_)
        ));
        assert_eq!(v2.soa().serial, 8);
        assert_eq!(v2.record_count(), v1.record_count());
    }

    #[test]
    fn an_rrset_takes_the_newest_ttl_and_the_diff_says_so() {
        let v1 = zone();
        let cs = Changeset {
            remove: vec![],
            add: vec![txt(A, "b", 60)],
        };
        let (v2, diff) = v1.apply(&cs, bumped(&v1), 3600).unwrap();
        assert_eq!(diff.removed, vec![txt(A, "a", 3600)]);
        assert_eq!(diff.added, vec![txt(A, "a", 60), txt(A, "b", 60)]);
        assert!(
            matches!(v2.lookup(&w(A)), Lookup::Exact(n) if n.rrsets[0].records().iter().all(|r| r.ttl == 60))
        );
    }

    #[test]
    fn no_ops_are_not_in_the_diff() {
        let v1 = zone();
        let cs = Changeset {
            remove: vec![txt(B, "absent", 3600)],
            add: vec![txt(A, "a", 3600)],
        };
        let (v2, diff) = v1.apply(&cs, bumped(&v1), 3600).unwrap();
        assert!(diff.removed.is_empty() && diff.added.is_empty());
        assert_eq!(v2.record_count(), v1.record_count());
    }

    #[test]
    fn ttl_change_is_remove_and_add() {
        let v1 = zone();
        let cs = Changeset {
            remove: vec![],
            add: vec![txt(A, "a", 60)],
        };
        let (v2, diff) = v1.apply(&cs, bumped(&v1), 3600).unwrap();
        assert_eq!(diff.removed[0].ttl, 3600);
        assert_eq!(diff.added[0].ttl, 60);
        assert!(
            matches!(v2.lookup(&w(A)), Lookup::Exact(n) if n.rrsets[0].ttl == 60 && n.rrsets[0].len() == 1)
        );
    }

    #[test]
    fn apply_then_rebuild_agree() {
        // Random adds and removes: the incremental version equals a fresh index of the
        // same records, node for node.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut v = zone();
        for _ in 0..300 {
            let n = format!(
                "{}.{}.1.1.1.5.5.5.1.e164.mimi.arpa.",
                rng.gen_range(0..4),
                rng.gen_range(0..4)
            );
            let t = format!("{}", rng.gen_range(0..3));
            let r = txt(&n, &t, 3600);
            let cs = if rng.gen_bool(0.5) {
                Changeset {
                    remove: vec![],
                    add: vec![r],
                }
            } else {
                Changeset {
                    remove: vec![r],
                    add: vec![],
                }
            };
            v = v.apply(&cs, bumped(&v), 3600).unwrap().0;
        }
        let fresh =
            ZoneStore::build(v.origin().clone(), v.zone_records().collect::<Vec<_>>()).unwrap();
        assert_eq!(v.record_count(), fresh.record_count());
        let mut a: Vec<_> = v
            .nodes
            .iter()
            .map(|(k, n)| (k.to_vec(), n.rrsets.len(), n.children))
            .collect();
        let mut b: Vec<_> = fresh
            .nodes
            .iter()
            .map(|(k, n)| (k.to_vec(), n.rrsets.len(), n.children))
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn delegation_changes_recompute_cuts() {
        let v1 = zone();
        let cut = "9.5.5.5.1.e164.mimi.arpa.";
        let ns = Record {
            name: cut.parse().unwrap(),
            ttl: 3600,
            data: RData::Ns("ns1.5.5.5.1.e164.mimi.arpa.".parse().unwrap()),
            line: 0,
        };
        let cs = Changeset {
            remove: vec![],
            add: vec![ns],
        };
        let (v2, _) = v1.apply(&cs, bumped(&v1), 3600).unwrap();
        match v2.lookup(&w(&format!("1.{cut}"))) {
            Lookup::Referral { node, .. } => assert_eq!(node.glue().len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn file_diff() {
        let v1 = zone();
        let mut records = ZoneFile::from_str_named(ZONE, "t", None).unwrap().records;
        records.retain(|r| r.data.rtype() != crate::zone::rdata::TYPE_TXT);
        records.push(txt(B, "b", 3600));
        let cs = diff_against(&v1, &records, &[]);
        assert_eq!(cs.remove, vec![txt(A, "a", 3600)]);
        assert_eq!(cs.add, vec![txt(B, "b", 3600)]);
        assert!(diff_against(
            &v1,
            &ZoneFile::from_str_named(ZONE, "t", None).unwrap().records,
            &[]
        )
        .is_empty());
    }

    #[test]
    fn serials() {
        assert_eq!(next_serial(u32::MAX), 1);
        assert!(serial_newer(1, u32::MAX));
        assert!(serial_newer(8, 7));
        assert!(!serial_newer(7, 7));
        assert!(!serial_newer(7, 8));
    }
}
