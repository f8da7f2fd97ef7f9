//! Loading the configured zones through the zone checks, and finding the zone for a name.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use hickory_proto::rr::Record as WireRecord;
use tracing::{info, warn};

use super::config::ZoneConfig;
use super::private::{build_zone, PirSettings, ZonePirState};
use crate::name::Name;
use crate::pir::carrier::pir_name;
use crate::record::TrustStore;
use crate::record::TYPE_PIRCFG;
use crate::zone::release::{self, Releases};
use crate::zone::{check, Diff, RData, Severity, ZoneFile, ZoneStore};

/// A zone as served: one version of its store plus what answers need besides.
#[derive(Debug)]
pub struct ServedZone {
    pub store: ZoneStore,
    /// The SOA with TTL min(SOA TTL, MINIMUM), for NXDOMAIN and NODATA (RFC 2308).
    pub negative_soa: WireRecord,
    /// The SOA as it stands in the zone, for AXFR.
    pub soa: WireRecord,
    /// `negative_soa` in the authority section, prebuilt for NXDOMAIN and NODATA; None
    /// only if it could not be encoded (the general path then answers).
    pub negative: Option<crate::zone::Prebuilt>,
    /// Records refused at load (bad signature, expired, ...).
    pub rejected: usize,
    /// The private-lookup database, when the DP offers private lookups. It follows the
    /// zone's changes in place within its epoch.
    pub pir: Option<Arc<ZonePirState>>,
    /// The latest diffs, oldest first, ending at this version's serial: IXFR's source.
    pub history: Arc<Vec<Arc<Diff>>>,
}

impl ServedZone {
    pub fn new(
        store: ZoneStore,
        rejected: usize,
        pir: Option<Arc<ZonePirState>>,
        history: Arc<Vec<Arc<Diff>>>,
    ) -> ServedZone {
        let soa = crate::zone::Record {
            name: store.origin().clone(),
            ttl: store.soa_ttl(),
            data: RData::Soa(Box::new(store.soa().clone())),
            line: 0,
        }
        .to_wire_record();
        let mut negative_soa = soa.clone();
        negative_soa.ttl = store.negative_ttl();
        let negative = crate::zone::Prebuilt::encode(
            store.origin().as_wire(),
            u16::from(hickory_proto::rr::RecordType::SOA),
            &[],
            std::slice::from_ref(&negative_soa),
            &[],
        )
        .map_err(|e| warn!(zone = %store.origin(), "negative answers not prebuilt: {e}"))
        .ok();
        ServedZone {
            store,
            negative_soa,
            negative,
            soa,
            rejected,
            pir,
            history,
        }
    }

    /// The diffs from `serial` to the current version, if the history reaches back that
    /// far (IXFR); an empty list when `serial` is current.
    pub fn diffs_since(&self, serial: u32) -> Option<&[Arc<Diff>]> {
        if serial == self.store.soa().serial {
            return Some(&[]);
        }
        let i = self
            .history
            .iter()
            .position(|d| d.from_serial() == serial)?;
        Some(&self.history[i..])
    }
}

/// PIRCFG changes with every epoch: keep clients' copies short-lived.
pub const PIRCFG_TTL: u32 = 60;

/// Record types the server derives itself: never journaled, diffed against a file,
/// transferred or written to the zone file. DNSKEY comes from the zone's key
/// (`dnssec_key`), not from the file.
pub const DERIVED_TYPES: &[u16] = &[TYPE_PIRCFG, crate::dnssec::TYPE_DNSKEY];

/// One identifier of the private-lookup database: OPRF input (the owner name) and its SSI
/// records in wire form.
pub type PrivateEntry = (String, Vec<Vec<u8>>);

/// The zone's mappings as the private-lookup database takes them: one entry per owner
/// name (the OPRF input) with its SSI records; mappings below a delegation belong to the
/// child zone, whose names are the PIRCFG's child list.
pub fn private_entries(store: &ZoneStore) -> (Vec<PrivateEntry>, Vec<Name>) {
    let origin = store.origin();
    let mut children = std::collections::BTreeSet::new();
    let mut groups: std::collections::BTreeMap<Name, Vec<Vec<u8>>> = Default::default();
    for r in store.zone_records() {
        match &r.data {
            RData::Ns(_) if r.name != *origin => {
                children.insert(r.name);
            }
            RData::Ssi(s) => groups.entry(r.name).or_default().push(s.to_wire()),
            _ => {}
        }
    }
    let entries = groups
        .into_iter()
        .filter(|(n, _)| !children.iter().any(|c| n.is_subdomain_of(c)))
        .map(|(n, w)| (n.to_string(), w))
        .collect();
    (entries, children.into_iter().collect())
}

/// The current SSI records at one owner, for the private-lookup database; none when the
/// owner lies at or below a delegation.
pub fn private_entry(store: &ZoneStore, owner: &Name) -> Vec<Vec<u8>> {
    use crate::record::TYPE_SSI;
    match store.lookup(owner.as_wire()) {
        crate::zone::Lookup::Exact(node) => node
            .rrset(TYPE_SSI)
            .map(|set| {
                set.records()
                    .iter()
                    .filter_map(crate::zone::update::record_from_wire)
                    .filter_map(|r| match r.data {
                        RData::Ssi(s) => Some(s.to_wire()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Builds the private-lookup database of a store for a new epoch.
pub fn build_private(
    store: &ZoneStore,
    settings: &PirSettings,
    secret: &[u8],
) -> Result<ZonePirState, String> {
    let (entries, children) = private_entries(store);
    let pir = build_zone(store.origin(), secret, settings, entries, children)?;
    Ok(ZonePirState::new(
        store.origin().clone(),
        pir,
        store.soa().serial,
    ))
}

/// `store` with its PIRCFG record replaced by the one of `state`, same serial: derived
/// data is not a change of the zone's content.
pub fn with_pircfg(store: &ZoneStore, state: &ZonePirState) -> Result<ZoneStore, String> {
    let origin = store.origin();
    let name = pir_name(origin).map_err(|e| format!("zone {origin}: {e}"))?;
    let mut cs = crate::zone::Changeset::default();
    if let crate::zone::Lookup::Exact(node) = store.lookup(name.as_wire()) {
        if let Some(set) = node.rrset(TYPE_PIRCFG) {
            cs.remove.extend(
                set.records()
                    .iter()
                    .filter_map(crate::zone::update::record_from_wire),
            );
        }
    }
    cs.add.push(crate::zone::Record {
        name,
        ttl: PIRCFG_TTL,
        data: RData::Unknown {
            rtype: TYPE_PIRCFG,
            data: state.pir.record.encode().into(),
        },
        line: 0,
    });
    let (next, _) = store
        .apply(&cs, store.soa().clone(), store.soa_ttl())
        .map_err(|e| e.to_string())?;
    Ok(next)
}

/// Every zone this server answers for, keyed by origin (wire form). Each zone sits in its
/// own slot: a commit swaps its zone's slot and leaves the set alone, so the cost of a
/// commit does not grow with the number of zones (a DP may serve thousands of one-number
/// zones); only adding or removing a zone makes a new set.
#[derive(Debug, Default, Clone)]
pub struct ZoneSet {
    /// Shared keys: adding a zone copies the map, which then costs no allocation per zone.
    zones: HashMap<Arc<[u8]>, Arc<ArcSwap<ServedZone>>, foldhash::fast::RandomState>,
    /// Bit `l` set: some origin is `l` bytes long in wire form (at most 255). A query name
    /// is looked up only at the suffixes of those lengths: one hash probe per query for a
    /// DP with one zone, not one per label.
    origin_lengths: [u64; 4],
}

impl ZoneSet {
    /// Every zone served, as it stands now (for metrics and status).
    pub fn served(&self) -> Vec<Arc<ServedZone>> {
        self.zones.values().map(|z| z.load_full()).collect()
    }

    /// The most specific zone containing `qname` (lowercase wire form).
    pub fn find(&self, qname: &[u8]) -> Option<Arc<ServedZone>> {
        let mut rest = qname;
        loop {
            if self.has_origin_length(rest.len()) {
                if let Some(z) = self.zones.get(rest) {
                    return Some(z.load_full());
                }
            }
            let len = *rest.first()? as usize;
            if len == 0 {
                return None;
            }
            rest = rest.get(1 + len..)?;
        }
    }

    /// The zone that answers `qtype` at `qname`: the closest enclosing one, except that a
    /// DS set at a zone's apex belongs to the parent (RFC 4035 section 3.1.4.1), so when
    /// the parent is served here too it answers.
    pub fn find_for(&self, qname: &[u8], qtype: u16) -> Option<Arc<ServedZone>> {
        let zone = self.find(qname)?;
        if qtype == crate::dnssec::TYPE_DS && zone.store.origin().as_wire() == qname {
            let parent = qname.get(1 + usize::from(*qname.first()?)..)?;
            if let Some(p) = self.find(parent) {
                return Some(p);
            }
        }
        Some(zone)
    }

    fn has_origin_length(&self, len: usize) -> bool {
        len < 256 && self.origin_lengths[len / 64] & (1 << (len % 64)) != 0
    }

    fn note_origin_lengths(&mut self) {
        self.origin_lengths = [0; 4];
        for len in self.zones.keys().map(|k| k.len()).filter(|&l| l < 256) {
            self.origin_lengths[len / 64] |= 1 << (len % 64);
        }
    }

    /// The private-lookup state of the zone whose `_pir.<zone>` is `qname`, if it offers
    /// private lookups (PIR requests and replicas are asked there and nowhere else).
    pub fn pir_at(&self, qname: &[u8]) -> Option<Arc<super::private::ZonePirState>> {
        self.find(qname)
            .and_then(|z| z.pir.clone())
            .filter(|st| pir_name(&st.origin).is_ok_and(|n| n.as_wire() == qname))
    }

    pub fn get(&self, origin: &Name) -> Option<Arc<ServedZone>> {
        self.zones.get(origin.as_wire()).map(|z| z.load_full())
    }

    /// The slot of a zone, to publish a new version of it in place.
    pub fn slot(&self, origin: &Name) -> Option<&Arc<ArcSwap<ServedZone>>> {
        self.zones.get(origin.as_wire())
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// Origin and SOA serial of every zone.
    pub fn serials(&self) -> Vec<(Name, u32)> {
        self.zones
            .values()
            .map(|z| {
                let z = z.load();
                (z.store.origin().clone(), z.store.soa().serial)
            })
            .collect()
    }

    pub fn remove(&mut self, origin: &Name) {
        self.zones.remove(origin.as_wire());
        self.note_origin_lengths();
    }

    pub fn origins(&self) -> Vec<Name> {
        self.zones
            .values()
            .map(|z| z.load().store.origin().clone())
            .collect()
    }

    /// Adds a zone in a new slot (or replaces the slot of one with the same origin).
    pub fn insert(&mut self, zone: Arc<ServedZone>) {
        let len = zone.store.origin().as_wire().len();
        self.zones.insert(
            zone.store.origin().as_wire().into(),
            Arc::new(ArcSwap::new(zone)),
        );
        if len < 256 {
            self.origin_lengths[len / 64] |= 1 << (len % 64);
        }
    }
}

/// A zone file read and checked: the records to serve and how many were refused.
pub struct CheckedZone {
    pub records: Vec<crate::zone::Record>,
    pub rejected: usize,
    /// The zone's release markers (`<zone file>.releases`).
    pub releases: Releases,
}

/// Why a zone file cannot be served at all (problems of single records only refuse
/// those records).
#[derive(Debug, thiserror::Error)]
pub enum ZoneLoadError {
    #[error(transparent)]
    File(#[from] crate::zone::ZoneError),
    #[error("{file}: the file's origin is {found} but the config says {configured}")]
    OriginMismatch {
        file: String,
        found: Name,
        configured: Name,
    },
    /// Zone-level check errors (no SOA, ...), each `file:line: message`.
    #[error("{}", .0.join("; "))]
    Check(Vec<String>),
    #[error(transparent)]
    Releases(#[from] release::ReleaseError),
}

/// Reads and checks one zone file. Records with errors (bad signature, expired,
/// untrusted provider, ...) are refused and logged with their line; the rest is kept.
/// A zone-level problem (unreadable, no SOA, wrong origin) fails the whole zone.
pub fn read_zone(
    zc: &ZoneConfig,
    trust: &TrustStore,
    apex: &Name,
    now: u64,
    serve_invalid: bool,
) -> Result<CheckedZone, ZoneLoadError> {
    let file = zc.file.display().to_string();
    let zone = ZoneFile::load(&zc.file)?;
    if zone.origin != zc.origin {
        return Err(ZoneLoadError::OriginMismatch {
            file,
            found: zone.origin,
            configured: zc.origin.clone(),
        });
    }
    let report = check(&zone, trust, apex, now);
    let mut fatal = Vec::new();
    for p in &report.problems {
        match (p.severity, p.record) {
            (Severity::Error, Some(_)) if serve_invalid => {
                warn!(zone = %zc.origin, "{file}:{}: INVALID record served (serve_invalid_records): {}", p.line, p.message)
            }
            (Severity::Error, Some(_)) => {
                warn!(zone = %zc.origin, "{file}:{}: record refused: {}", p.line, p.message)
            }
            (Severity::Error, None) => fatal.push(format!("{file}:{}: {}", p.line, p.message)),
            (Severity::Warning, _) => warn!(zone = %zc.origin, "{file}:{}: {}", p.line, p.message),
        }
    }
    if !fatal.is_empty() {
        return Err(ZoneLoadError::Check(fatal));
    }
    let releases = Releases::load(&release::path_for(&zc.file))?;
    let mut rejected = if serve_invalid {
        Default::default()
    } else {
        report.rejected_records()
    };
    for (i, r) in zone.records.iter().enumerate() {
        if let RData::Ssi(s) = &r.data {
            if let Some(t) = releases.refuses(&r.name, s.verified_at) {
                warn!(zone = %zc.origin, "{file}:{}: record refused: {} was released at {} and this mapping was verified before that", r.line, r.name, crate::record::format_time(t));
                rejected.insert(i);
            }
        }
    }
    let records = zone
        .records
        .into_iter()
        .enumerate()
        .filter(|(i, r)| !rejected.contains(i) && !DERIVED_TYPES.contains(&r.data.rtype()))
        .map(|(_, r)| r)
        .collect();
    info!(zone = %zc.origin, refused = rejected.len(), "zone file {file} read");
    Ok(CheckedZone {
        records,
        rejected: rejected.len(),
        releases,
    })
}

/// Loading a zone parses and checks a whole file and then drops it; glibc keeps the freed
/// heap for reuse, so give it back to the system or the server would sit at its peak.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(origin: &str) -> Arc<ServedZone> {
        let text = format!("$ORIGIN {origin}\n$TTL 3600\n@ SOA ns1 host 1 2 3 4 300\n@ NS ns1\n");
        let z = ZoneFile::from_str_named(&text, "t", None).unwrap();
        let store = ZoneStore::build(z.origin.clone(), z.records).unwrap();
        Arc::new(ServedZone::new(store, 0, None, Arc::default()))
    }

    fn found(set: &ZoneSet, qname: &str) -> Option<String> {
        let n: Name = qname.parse().unwrap();
        set.find(n.as_wire()).map(|z| z.store.origin().to_string())
    }

    #[test]
    fn find_picks_the_most_specific_zone_and_follows_removals() {
        let mut set = ZoneSet::default();
        for o in ["mimi.arpa.", "e164.mimi.arpa.", "5.5.5.1.e164.mimi.arpa."] {
            set.insert(zone(o));
        }
        let number = "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.";
        assert_eq!(
            found(&set, number).as_deref(),
            Some("5.5.5.1.e164.mimi.arpa.")
        );
        assert_eq!(
            found(&set, "5.5.5.1.e164.mimi.arpa.").as_deref(),
            Some("5.5.5.1.e164.mimi.arpa.")
        );
        assert_eq!(
            found(&set, "4.5.5.1.e164.mimi.arpa.").as_deref(),
            Some("e164.mimi.arpa.")
        );
        assert_eq!(
            found(&set, "email.mimi.arpa.").as_deref(),
            Some("mimi.arpa.")
        );
        // Same length as an origin, different name; and names outside every zone.
        assert_eq!(
            found(&set, "6.5.5.1.e164.mimi.arpa.").as_deref(),
            Some("e164.mimi.arpa.")
        );
        assert_eq!(found(&set, "example.com."), None);
        assert_eq!(found(&set, "."), None);
        set.remove(&"5.5.5.1.e164.mimi.arpa.".parse().unwrap());
        assert_eq!(found(&set, number).as_deref(), Some("e164.mimi.arpa."));
        set.remove(&"mimi.arpa.".parse().unwrap());
        assert_eq!(found(&set, "email.mimi.arpa."), None);
    }
}
