//! The in-memory zone store: nodes indexed by owner name for the server.
//!
//! Every ancestor of every owner (up to the apex) exists as a node, so "does this name or
//! anything below it exist" is one hash lookup: a missing node is NXDOMAIN, a node with no
//! RRset of the asked type (including an empty non-terminal) is NODATA. Delegations are
//! found by probing the query name's ancestors from the apex down, so no lookup ever scans
//! the zone. Glue for each delegation is collected once at build time.
//!
//! RRsets are kept as the answer a query for them gets, encoded once when the version is
//! made ([`Prebuilt`]): answering copies bytes, and the encoded form is also the compact
//! copy of the records (decoded only by the general path, transfers and the write path).
//! Each delegation point keeps its referral the same way.
//!
//! The node index ([`NodeIndex`]) is shared between versions: a new version made by the
//! write path (`zone::update`) shares every untouched node with the version it came from,
//! so making a version costs what changed, not the size of the zone, and readers keep the
//! old one.

use std::collections::HashMap;
use std::sync::Arc;

use hickory_proto::rr::Record as WireRecord;
use smallvec::SmallVec;

use super::index::NodeIndex;
use super::prebuilt::{Prebuilt, PrebuiltError};
use super::rdata::{RData, Soa, TYPE_A, TYPE_AAAA, TYPE_NS};
use super::Record;
use crate::dnssec::{ZoneSigner, TYPE_DNSKEY, TYPE_DS, TYPE_RRSIG};
use crate::name::Name;

/// All records of one type at one owner, with one TTL (RFC 2181 section 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRset {
    /// Type and TTL are also inside `answer`; kept here so the write path (TTL checks of
    /// RFC 2181 section 5.2, re-encoding) reads them without decoding the records.
    pub rtype: u16,
    pub ttl: u32,
    /// The response sections for a query of this owner and type: the records, and for NS
    /// the addresses of in-zone name servers (RFC 1035 section 3.3.11).
    pub answer: Prebuilt,
    /// The RRSIG RDATA over the set, in a signed zone (none for a delegation's NS and for
    /// glue, which the parent does not sign).
    pub rrsig: Option<Box<[u8]>>,
    /// With `rrsig`: the answer to a DO query, the records and their RRSIG, prebuilt as
    /// `answer` is, for the fast path.
    pub signed_answer: Option<Prebuilt>,
}

impl RRset {
    /// Encodes `records` (one owner, one type, TTL `ttl`) with `additional`.
    pub fn new(
        owner: &[u8],
        rtype: u16,
        ttl: u32,
        records: &[WireRecord],
        additional: &[WireRecord],
    ) -> Result<RRset, PrebuiltError> {
        Ok(RRset {
            rtype,
            ttl,
            answer: Prebuilt::encode(owner, rtype, records, &[], additional)?,
            rrsig: None,
            signed_answer: None,
        })
    }

    /// The set's records, decoded.
    pub fn records(&self) -> Vec<WireRecord> {
        self.answer.answers()
    }

    pub fn len(&self) -> usize {
        usize::from(self.answer.counts()[0])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A node's RRsets: nearly every node holds one (its mappings) or none (an empty
/// non-terminal), so one is kept inline, saving an allocation per owner.
pub type RRsets = SmallVec<[RRset; 1]>;

#[derive(Debug, Default, Clone)]
pub struct Node {
    pub rrsets: RRsets,
    /// At the apex and delegation points (few nodes: boxed to keep every node small).
    pub delegation: Option<Box<Delegation>>,
    /// True for a zone cut (NS records below the apex).
    pub is_cut: bool,
    /// Nodes one label below this one: a node without RRsets stays (an empty
    /// non-terminal) while it has children.
    pub children: u32,
}

/// What a node with NS records holds besides its RRsets.
#[derive(Debug, Default, Clone)]
pub struct Delegation {
    /// The address records of the in-zone NS targets.
    pub glue: Vec<WireRecord>,
    /// Below the apex: the referral (NS in authority, glue in additional).
    pub referral: Option<Prebuilt>,
}

impl Node {
    pub fn rrset(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }

    pub fn glue(&self) -> &[WireRecord] {
        self.delegation.as_ref().map_or(&[], |d| &d.glue)
    }

    pub fn referral(&self) -> Option<&Prebuilt> {
        self.delegation.as_ref()?.referral.as_ref()
    }
}

/// What the store says about a query name.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The name exists in this zone (it may lack the asked type: NODATA).
    Exact(&'a Node),
    /// The name is at or below a delegation; `cut` is the delegated name's wire form.
    Referral { cut: &'a [u8], node: &'a Node },
    /// Neither the name nor anything below it exists.
    NxDomain,
    /// The name is not in this zone.
    OutOfZone,
}

#[derive(Debug, Clone)]
pub struct ZoneStore {
    pub(super) origin: Name,
    pub(super) soa: Soa,
    pub(super) soa_ttl: u32,
    pub(super) nodes: NodeIndex,
    pub(super) records: usize,
    /// The delegation points below the apex (set with the index, which any change to NS
    /// records rebuilds): with few of them, a lookup checks them and then probes the name
    /// alone instead of every ancestor.
    pub(super) cuts: Arc<[Box<[u8]>]>,
    /// In a signed zone, what signs each set made or changed in this version and the ones
    /// made from it ([`ZoneStore::sign_with`]).
    pub(super) signer: Option<Arc<ZoneSigner>>,
}

/// New RRSIG RDATA for the sets of one node, by type, with the signed answer.
type Signatures = Vec<(u16, Box<[u8]>, Prebuilt)>;

/// A record of a type the zone layer keeps opaque (RRSIG, NSEC), for answers.
pub fn opaque_record(owner: &Name, ttl: u32, rtype: u16, rdata: &[u8]) -> WireRecord {
    use hickory_proto::rr::rdata::NULL;
    WireRecord::from_rdata(
        owner.to_hickory(),
        ttl,
        hickory_proto::rr::RData::Unknown {
            code: hickory_proto::rr::RecordType::from(rtype),
            rdata: NULL::with(rdata.to_vec()),
        },
    )
}

/// The answer to a DO query for `set`: its sections with the RRSIG after the records.
fn signed_answer(owner: &Name, set: &RRset, rrsig: &[u8]) -> Result<Prebuilt, PrebuiltError> {
    let [mut answers, authority, additional] = set.answer.decode()?;
    answers.push(opaque_record(owner, set.ttl, TYPE_RRSIG, rrsig));
    Prebuilt::encode(
        owner.as_wire(),
        set.rtype,
        &answers,
        &authority,
        &additional,
    )
}

/// Up to this many cuts, `lookup` compares the name with each cut rather than probing
/// the name's ancestors.
const FEW_CUTS: usize = 8;

impl ZoneStore {
    /// Indexes records. The zone must have an SOA at `origin`; records outside the zone
    /// are skipped (the zone check reports them).
    pub fn build(
        origin: Name,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<ZoneStore, String> {
        /// A node while the index is built: its records not yet encoded.
        #[derive(Default)]
        struct Draft {
            sets: Vec<(u16, u32, Vec<WireRecord>)>,
            children: u32,
        }
        let mut nodes: HashMap<Box<[u8]>, Draft> = HashMap::new();
        let mut count = 0;
        let origin_len = origin.as_wire().len();
        let mut soa: Option<(Soa, u32)> = None;
        let mut ns_targets: Vec<(Box<[u8]>, Name)> = Vec::new();
        for r in records {
            if !r.name.is_subdomain_of(&origin) {
                continue;
            }
            count += 1;
            // Empty non-terminals: make sure every ancestor down from the apex exists.
            for suffix in r.name.suffixes().skip(1) {
                if suffix.len() < origin_len || nodes.contains_key(suffix) {
                    break;
                }
                nodes.insert(suffix.into(), Draft::default());
            }
            if !nodes.contains_key(r.name.as_wire()) {
                nodes.insert(r.name.as_wire().into(), Draft::default());
            }
            match &r.data {
                RData::Soa(s)
                    if r.name == origin && soa.replace(((**s).clone(), r.ttl)).is_some() =>
                {
                    return Err(format!("zone {origin} must have exactly one SOA record"));
                }
                RData::Ns(target) if target.is_subdomain_of(&origin) => {
                    ns_targets.push((r.name.as_wire().into(), target.clone()));
                }
                _ => {}
            }
            let rtype = r.data.rtype();
            let wire = r.to_wire_record();
            let node = nodes.entry(r.name.as_wire().into()).or_default();
            match node.sets.iter_mut().find(|s| s.0 == rtype) {
                Some((_, ttl, set)) => {
                    if !set.iter().any(|x| x.data == wire.data) {
                        set.push(wire);
                    }
                    *ttl = (*ttl).min(r.ttl);
                    let ttl = *ttl;
                    set.iter_mut().for_each(|x| x.ttl = ttl);
                }
                None => node.sets.push((rtype, r.ttl, vec![wire])),
            }
        }
        let (soa, soa_ttl) =
            soa.ok_or_else(|| format!("zone {origin} has no SOA record at its apex"))?;
        let apex = nodes
            .get(origin.as_wire())
            .ok_or_else(|| format!("zone {origin} has no records at its apex"))?;
        if !apex.sets.iter().any(|s| s.0 == TYPE_NS) {
            return Err(format!("zone {origin} has no NS records at its apex"));
        }
        // Child counts, for removing nodes that become empty later.
        let keys: Vec<Box<[u8]>> = nodes.keys().cloned().collect();
        for k in &keys {
            if k.len() > origin_len {
                let parent = &k[1 + k[0] as usize..];
                if let Some(p) = nodes.get_mut(parent) {
                    p.children += 1;
                }
            }
        }
        // The addresses of in-zone name servers, by the owner of the NS records: glue for
        // referrals, and at the apex the additional data of NS answers.
        let mut glue_of: HashMap<Box<[u8]>, Vec<WireRecord>> = HashMap::new();
        for (owner, target) in &ns_targets {
            let glue = glue_of.entry(owner.clone()).or_default();
            if let Some(t) = nodes.get(target.as_wire()) {
                for (rtype, _, set) in &t.sets {
                    if *rtype == TYPE_A || *rtype == TYPE_AAAA {
                        glue.extend(set.iter().cloned());
                    }
                }
            }
        }
        let encode_err = |e: PrebuiltError| format!("zone {origin}: {e}");
        let mut index = NodeIndex::with_capacity(nodes.len());
        let mut cuts = Vec::new();
        for (key, draft) in nodes {
            let glue = glue_of.remove(&key).unwrap_or_default();
            let is_cut = key.len() != origin_len && draft.sets.iter().any(|s| s.0 == TYPE_NS);
            let mut node = Node {
                rrsets: RRsets::with_capacity(draft.sets.len()),
                delegation: None,
                is_cut,
                children: draft.children,
            };
            for (rtype, ttl, set) in &draft.sets {
                let additional = if *rtype == TYPE_NS { &glue[..] } else { &[] };
                node.rrsets
                    .push(RRset::new(&key, *rtype, *ttl, set, additional).map_err(encode_err)?);
            }
            let referral = match draft.sets.iter().find(|s| s.0 == TYPE_NS) {
                Some((_, _, ns)) if is_cut => {
                    Some(Prebuilt::encode(&key, TYPE_NS, &[], ns, &glue).map_err(encode_err)?)
                }
                _ => None,
            };
            if is_cut {
                cuts.push(key.clone());
            }
            if !glue.is_empty() || referral.is_some() {
                node.delegation = Some(Box::new(Delegation { glue, referral }));
            }
            index.insert(&key, node);
        }
        Ok(ZoneStore {
            origin,
            soa,
            soa_ttl,
            nodes: index,
            records: count,
            cuts: cuts.into(),
            signer: None,
        })
    }

    /// This zone signed by `signer` (DNSSEC, docs/dnssec.md): the signer's DNSKEY set at
    /// the apex, an RRSIG on every authoritative set, and every version made from this one
    /// signs the sets it changes at commit. Signing is spread over the cores; the zone's
    /// records are not otherwise touched. A signed zone given another signer (a rollover
    /// step) is signed again whole with it.
    pub fn sign_with(
        mut self,
        signer: Arc<ZoneSigner>,
        now: u64,
    ) -> Result<ZoneStore, PrebuiltError> {
        use rayon::prelude::*;
        let apex: Box<[u8]> = self.origin.as_wire().into();
        let dnskeys: Vec<_> = signer
            .dnskey_rdatas()
            .into_iter()
            .map(|rdata| {
                Record {
                    name: self.origin.clone(),
                    ttl: self.soa_ttl,
                    data: RData::Unknown {
                        rtype: TYPE_DNSKEY,
                        data: rdata.into_boxed_slice(),
                    },
                    line: 0,
                }
                .to_wire_record()
            })
            .collect();
        if let Some(node) = self.nodes.get_mut(&apex) {
            node.rrsets.retain(|s| s.rtype != TYPE_DNSKEY);
            node.rrsets
                .push(RRset::new(&apex, TYPE_DNSKEY, self.soa_ttl, &dnskeys, &[])?);
        }
        self.signer = Some(signer.clone());
        // Signatures made in parallel from the read-only index, then stored.
        let owners: Vec<Box<[u8]>> = self.nodes.iter().map(|(o, _)| o.into()).collect();
        let signed: Vec<(Box<[u8]>, Signatures)> = owners
            .into_par_iter()
            .map(|owner| {
                let sigs = self.signatures_at(&owner, &signer, now, |_| true)?;
                Ok((owner, sigs))
            })
            .collect::<Result<_, PrebuiltError>>()?;
        for (owner, sigs) in signed {
            self.store_signatures(&owner, sigs);
        }
        Ok(self)
    }

    /// Signs the sets at `owner` that have no signature (those a change just made).
    pub(super) fn sign_node(&mut self, owner: &[u8], now: u64) -> Result<(), PrebuiltError> {
        let Some(signer) = self.signer.clone() else {
            return Ok(());
        };
        let sigs = self.signatures_at(owner, &signer, now, |s| s.rrsig.is_none())?;
        self.store_signatures(owner, sigs);
        Ok(())
    }

    /// A version with every signature that is near its expiry (or by another key) made
    /// again; None when there is none. Scans the whole zone: the DP calls it at intervals
    /// far shorter than the signature lifetime (`dp::writer`).
    pub fn resigned(&self, now: u64) -> Result<Option<ZoneStore>, PrebuiltError> {
        let Some(signer) = self.signer.clone() else {
            return Ok(None);
        };
        let stale: Vec<Box<[u8]>> = self
            .nodes
            .iter()
            .filter(|(_, node)| {
                node.rrsets.iter().any(|s| {
                    s.rrsig
                        .as_deref()
                        .is_some_and(|sig| signer.is_stale(sig, now))
                })
            })
            .map(|(owner, _)| owner.into())
            .collect();
        if stale.is_empty() {
            return Ok(None);
        }
        let mut next = self.clone();
        for owner in &stale {
            if let Some(node) = next.nodes.get_mut(owner) {
                for set in node.rrsets.iter_mut() {
                    set.rrsig = None;
                    set.signed_answer = None;
                }
            }
            next.sign_node(owner, now)?;
        }
        Ok(Some(next))
    }

    /// Bytes of RRSIG RDATA held (the memory signing adds, besides allocation overhead).
    pub fn signature_bytes(&self) -> usize {
        self.nodes
            .values()
            .flat_map(|n| n.rrsets.iter())
            .filter_map(|s| s.rrsig.as_ref().map(|r| r.len()))
            .sum()
    }

    /// The signer, in a signed zone.
    pub fn signer(&self) -> Option<&Arc<ZoneSigner>> {
        self.signer.as_ref()
    }

    /// New RRSIGs for the sets at `owner` that `pick` selects and the zone signs there.
    fn signatures_at(
        &self,
        owner: &[u8],
        signer: &ZoneSigner,
        now: u64,
        pick: impl Fn(&RRset) -> bool,
    ) -> Result<Signatures, PrebuiltError> {
        let Some(node) = self.nodes.get(owner) else {
            return Ok(Vec::new());
        };
        if node.rrsets.is_empty() || self.below_cut(owner) {
            return Ok(Vec::new());
        }
        let name = Name::from_wire_trusted(owner);
        let mut out = Vec::new();
        for set in node.rrsets.iter().filter(|s| pick(s)) {
            // At a delegation the parent signs only its DS (RFC 4035 section 2.2).
            if node.is_cut && set.rtype != TYPE_DS {
                continue;
            }
            let records = set.records();
            let rdatas: Vec<Vec<u8>> = records
                .iter()
                .map(|r| {
                    super::update::canonical_rdata(r).ok_or_else(|| PrebuiltError::Encode {
                        owner: name.to_string(),
                        reason: format!("type {} RDATA has no canonical form", set.rtype),
                    })
                })
                .collect::<Result<_, _>>()?;
            let refs: Vec<&[u8]> = rdatas.iter().map(Vec::as_slice).collect();
            let rrsig = signer.sign(&name, set.rtype, set.ttl, &refs, now);
            let answer = signed_answer(&name, set, &rrsig)?;
            out.push((set.rtype, rrsig, answer));
        }
        Ok(out)
    }

    fn store_signatures(&mut self, owner: &[u8], sigs: Signatures) {
        if sigs.is_empty() {
            return;
        }
        if let Some(node) = self.nodes.get_mut(owner) {
            for (rtype, sig, answer) in sigs {
                if let Some(set) = node.rrsets.iter_mut().find(|s| s.rtype == rtype) {
                    set.rrsig = Some(sig);
                    set.signed_answer = Some(answer);
                }
            }
        }
    }

    /// True when a proper ancestor of `owner` below the apex is a delegation point: the
    /// name is glue or occluded, not this zone's data.
    fn below_cut(&self, owner: &[u8]) -> bool {
        let origin_len = self.origin.as_wire().len();
        let mut name = owner;
        while name.len() > origin_len {
            name = &name[1 + name[0] as usize..];
            if name.len() > origin_len && self.nodes.get(name).is_some_and(|n| n.is_cut) {
                return true;
            }
        }
        false
    }

    /// This version again in fresh allocations, sharing nothing with it. Made once a
    /// zone is loaded, on a thread of its own (so in an allocator arena of its own): the
    /// served version then sits in memory of its own instead of scattered among the holes
    /// that reading, checking and indexing the file left, which the allocator can then
    /// give back. At 1,000,000 mappings this took resident memory from 785 MiB to 537
    /// (README, `tools/bench/dp.sh`).
    pub fn compacted(&self) -> ZoneStore {
        let copy = || ZoneStore {
            nodes: self.nodes.deep_copy(),
            ..self.clone()
        };
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("zone-compact".into())
                .spawn_scoped(s, copy)
                .ok()
                .and_then(|t| t.join().ok())
        })
        // Without a thread of its own the copy would land in the same holes: keep this one.
        .unwrap_or_else(|| self.clone())
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    pub fn soa(&self) -> &Soa {
        &self.soa
    }

    /// TTL for the SOA in negative answers: min(SOA TTL, MINIMUM) (RFC 2308 section 3).
    pub fn negative_ttl(&self) -> u32 {
        self.soa_ttl.min(self.soa.minimum)
    }

    pub fn soa_ttl(&self) -> u32 {
        self.soa_ttl
    }

    pub fn record_count(&self) -> usize {
        self.records
    }

    /// Every record of the zone, glue included, in no particular order (for AXFR),
    /// decoded from the stored answers.
    pub fn records(&self) -> impl Iterator<Item = WireRecord> + '_ {
        self.nodes
            .values()
            .flat_map(|n| n.rrsets.iter().flat_map(|s| s.records()))
    }

    /// Every record as a zone record, for diffs, files and the private-lookup database.
    pub fn zone_records(&self) -> impl Iterator<Item = Record> + '_ {
        self.records()
            .filter_map(|r| super::update::record_from_wire(&r))
    }

    /// The node at exactly this name, if any (no delegation logic).
    pub fn node(&self, wire: &[u8]) -> Option<&Node> {
        self.nodes.get(wire)
    }

    pub fn apex(&self) -> &Node {
        // build() guarantees the apex node exists; an empty node stands in otherwise.
        static EMPTY: Node = Node {
            rrsets: RRsets::new_const(),
            delegation: None,
            is_cut: false,
            children: 0,
        };
        self.nodes.get(self.origin.as_wire()).unwrap_or(&EMPTY)
    }

    /// Looks a name up (lowercase wire form). Probes the name's ancestors from the apex
    /// down: at most one hash lookup per label, never a scan.
    pub fn lookup(&self, qname: &[u8]) -> Lookup<'_> {
        let origin = self.origin.as_wire();
        if qname.len() < origin.len() || &qname[qname.len() - origin.len()..] != origin {
            return Lookup::OutOfZone;
        }
        // Label start offsets of qname above the apex, most specific first.
        let mut starts = [0usize; 128];
        let mut n = 0;
        let mut i = 0;
        let end = qname.len() - origin.len();
        while i < end {
            starts[n] = i;
            n += 1;
            i += 1 + qname[i] as usize;
        }
        if i != end {
            // The suffix matched by bytes but not on a label boundary.
            return Lookup::OutOfZone;
        }
        if self.cuts.len() <= FEW_CUTS {
            // The highest cut above the name wins, as the probe from the apex down finds.
            let on_boundary = |at: usize| at == 0 || starts[..n].contains(&at);
            let cut = self
                .cuts
                .iter()
                .filter(|c| qname.ends_with(c) && on_boundary(qname.len() - c.len()))
                .min_by_key(|c| c.len());
            if let Some(cut) = cut {
                if let Some((cut, node)) = self.nodes.get_key_value(&cut[..]) {
                    return Lookup::Referral { cut, node };
                }
            }
            return match self.nodes.get(qname) {
                Some(node) => Lookup::Exact(node),
                None if n == 0 => Lookup::Exact(self.apex()),
                None => Lookup::NxDomain,
            };
        }
        for k in (0..n).rev() {
            let suffix = &qname[starts[k]..];
            let Some((cut, node)) = self.nodes.get_key_value(suffix) else {
                return Lookup::NxDomain;
            };
            if node.is_cut {
                return Lookup::Referral { cut, node };
            }
            if k == 0 {
                return Lookup::Exact(node);
            }
        }
        Lookup::Exact(self.apex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::rdata::TYPE_SOA;
    use crate::zone::ZoneFile;

    fn store() -> ZoneStore {
        let text = "$ORIGIN mimi.arpa.\n$TTL 3600\n@ SOA ns1 host 1 2 3 4 300\n@ NS ns1\nns1 A 127.0.0.1\n\
                    e164 NS ns.e164\nns.e164 A 127.0.0.2\nns.e164 AAAA ::2\n\
                    2.2.1.email TXT \"x\"\n";
        let z = ZoneFile::from_str_named(text, "t", None).unwrap();
        ZoneStore::build(z.origin.clone(), z.records).unwrap()
    }

    fn w(s: &str) -> Vec<u8> {
        s.parse::<Name>().unwrap().as_wire().to_vec()
    }

    #[test]
    fn exact_nodata_nxdomain() {
        let s = store();
        assert!(
            matches!(s.lookup(&w("mimi.arpa.")), Lookup::Exact(n) if n.rrset(TYPE_SOA).is_some())
        );
        assert!(
            matches!(s.lookup(&w("ns1.mimi.arpa.")), Lookup::Exact(n) if n.rrset(TYPE_A).is_some())
        );
        // Empty non-terminals exist.
        assert!(
            matches!(s.lookup(&w("email.mimi.arpa.")), Lookup::Exact(n) if n.rrsets.is_empty())
        );
        assert!(matches!(
            s.lookup(&w("1.email.mimi.arpa.")),
            Lookup::Exact(_)
        ));
        assert!(matches!(
            s.lookup(&w("3.email.mimi.arpa.")),
            Lookup::NxDomain
        ));
        assert!(matches!(
            s.lookup(&w("9.2.2.1.email.mimi.arpa.")),
            Lookup::NxDomain
        ));
        assert!(matches!(s.lookup(&w("example.org.")), Lookup::OutOfZone));
        assert!(matches!(s.lookup(&w("xmimi.arpa.")), Lookup::OutOfZone));
        assert_eq!(s.negative_ttl(), 300);
    }

    /// What a lookup found, comparable across stores.
    fn kind(l: Lookup<'_>) -> String {
        match l {
            Lookup::Exact(n) => format!("exact {}", n.rrsets.len()),
            Lookup::Referral { cut, .. } => format!("referral {cut:?}"),
            Lookup::NxDomain => "nxdomain".into(),
            Lookup::OutOfZone => "out".into(),
        }
    }

    #[test]
    fn few_and_many_cuts_are_looked_up_alike() {
        use rand::{Rng, SeedableRng};
        let base = "$ORIGIN mimi.arpa.\n@ 60 SOA ns1 host 1 2 3 4 5\n@ 60 NS ns1\nns1 60 A 127.0.0.1\n\
                    1 60 NS ns.1\nns.1 60 A 127.0.0.2\n2.2 60 NS ns1\n3.3.3 60 TXT \"x\"\n4.3.3 60 TXT \"y\"\n";
        let many: String = (0..10).map(|i| format!("{i}.9 60 NS ns1\n")).collect();
        let build = |text: &str| {
            let z = ZoneFile::from_str_named(text, "t", None).unwrap();
            ZoneStore::build(z.origin.clone(), z.records).unwrap()
        };
        let few = build(base);
        let lots = build(&format!("{base}{many}"));
        assert!(few.cuts.len() <= FEW_CUTS && lots.cuts.len() > FEW_CUTS);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..2000 {
            let labels: Vec<String> = (0..rng.gen_range(0..5))
                .map(|_| rng.gen_range(1..5).to_string())
                .collect();
            let mut name = labels.join(".");
            name.push_str(if rng.gen_bool(0.9) {
                ".mimi.arpa."
            } else {
                ".arpa."
            });
            let name = name.trim_start_matches('.');
            let q = w(name);
            // The names under 9. differ between the two stores by construction.
            if name.ends_with("9.mimi.arpa.") {
                continue;
            }
            assert_eq!(kind(few.lookup(&q)), kind(lots.lookup(&q)), "{name}");
        }
        assert!(matches!(
            few.lookup(&w("x.ns.1.mimi.arpa.")),
            Lookup::Referral { .. }
        ));
        assert!(matches!(
            few.lookup(&w("5.2.2.mimi.arpa.")),
            Lookup::Referral { .. }
        ));
        assert!(matches!(few.lookup(&w("12.mimi.arpa.")), Lookup::NxDomain));
    }

    #[test]
    fn referral_with_glue() {
        let s = store();
        for q in ["e164.mimi.arpa.", "1.e164.mimi.arpa.", "ns.e164.mimi.arpa."] {
            match s.lookup(&w(q)) {
                Lookup::Referral { cut, node } => {
                    assert_eq!(cut, w("e164.mimi.arpa.").as_slice());
                    assert_eq!(node.glue().len(), 2);
                }
                other => panic!("{q}: {other:?}"),
            }
        }
    }
}
