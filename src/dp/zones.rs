//! Loading the configured zones through the zone checks, and finding the zone for a name.

use std::collections::HashMap;
use std::sync::Arc;

use hickory_proto::rr::Record as WireRecord;
use tracing::{info, warn};

use super::config::{DpConfig, ZoneConfig};
use super::private::{build_zone, PirSettings, ZonePirState};
use crate::name::Name;
use crate::pir::carrier::pir_name;
use crate::record::TrustStore;
use crate::record::TYPE_PIRCFG;
use crate::zone::{check, RData, Severity, ZoneFile, ZoneStore};

/// A zone as served: its store plus the SOA record negative answers carry.
#[derive(Debug)]
pub struct ServedZone {
    pub store: ZoneStore,
    /// The SOA with TTL min(SOA TTL, MINIMUM), for NXDOMAIN and NODATA (RFC 2308).
    pub negative_soa: WireRecord,
    /// The SOA as it stands in the zone, for AXFR.
    pub soa: WireRecord,
    /// Records refused at load (bad signature, expired, ...).
    pub rejected: usize,
    /// The earliest `not_after` of the mappings and keys served: the zone must be checked
    /// again then, so an expired mapping stops being served.
    pub next_expiry: Option<u64>,
    /// The private-lookup database, when the DP offers private lookups.
    pub pir: Option<Arc<ZonePirState>>,
}

/// PIRCFG changes with every epoch (each load): keep clients' copies short-lived.
const PIRCFG_TTL: u32 = 60;

/// The private-lookup database of a zone's served mappings: one entry per owner name
/// (the OPRF input) with its SSI records; mappings below a delegation belong to the child.
fn build_private(
    origin: &Name,
    records: &[crate::zone::Record],
    settings: &PirSettings,
    secret: &[u8],
) -> Result<ZonePirState, String> {
    let children: Vec<Name> = records
        .iter()
        .filter(|r| matches!(r.data, RData::Ns(_)) && r.name != *origin)
        .map(|r| r.name.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut groups: std::collections::BTreeMap<&Name, Vec<Vec<u8>>> = Default::default();
    for r in records {
        if let RData::Ssi(s) = &r.data {
            if !children.iter().any(|c| r.name.is_subdomain_of(c)) {
                groups.entry(&r.name).or_default().push(s.to_wire());
            }
        }
    }
    let entries = groups
        .into_iter()
        .map(|(n, w)| (n.to_string(), w))
        .collect();
    let pir = build_zone(origin, secret, settings, entries, children)?;
    Ok(ZonePirState {
        origin: origin.clone(),
        pir,
    })
}

/// Every zone this server answers for, keyed by origin (wire form).
#[derive(Debug, Default)]
pub struct ZoneSet {
    zones: HashMap<Box<[u8]>, Arc<ServedZone>>,
}

impl ZoneSet {
    /// The most specific zone containing `qname` (lowercase wire form).
    pub fn find(&self, qname: &[u8]) -> Option<&Arc<ServedZone>> {
        let mut rest = qname;
        loop {
            if let Some(z) = self.zones.get(rest) {
                return Some(z);
            }
            let len = *rest.first()? as usize;
            if len == 0 {
                return None;
            }
            rest = rest.get(1 + len..)?;
        }
    }

    pub fn get(&self, origin: &Name) -> Option<&Arc<ServedZone>> {
        self.zones.get(origin.as_wire())
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The earliest time any served mapping expires.
    pub fn next_expiry(&self) -> Option<u64> {
        self.zones.values().filter_map(|z| z.next_expiry).min()
    }

    /// Origin and SOA serial of every zone.
    pub fn serials(&self) -> Vec<(Name, u32)> {
        self.zones
            .values()
            .map(|z| (z.store.origin().clone(), z.store.soa().serial))
            .collect()
    }

    pub fn insert(&mut self, zone: Arc<ServedZone>) {
        self.zones
            .insert(zone.store.origin().as_wire().into(), zone);
    }
}

/// Reads, checks and indexes one zone. Records with errors (bad signature, expired,
/// untrusted provider, ...) are refused and logged with their line; the rest is served.
/// A zone-level problem (unreadable, no SOA, wrong origin) fails the whole zone.
pub fn load_zone(
    zc: &ZoneConfig,
    trust: &TrustStore,
    apex: &Name,
    now: u64,
    serve_invalid: bool,
    pir: Option<(&PirSettings, &[u8])>,
) -> Result<ServedZone, String> {
    let file = zc.file.display().to_string();
    let zone = ZoneFile::load(&zc.file).map_err(|e| e.to_string())?;
    if zone.origin != zc.origin {
        return Err(format!(
            "{file}: the file's origin is {} but the config says {}",
            zone.origin, zc.origin
        ));
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
        return Err(fatal.join("; "));
    }
    let rejected = if serve_invalid {
        Default::default()
    } else {
        report.rejected_records()
    };
    let next_expiry = zone
        .records
        .iter()
        .enumerate()
        .filter(|(i, _)| !rejected.contains(i))
        .filter_map(|(_, r)| match &r.data {
            RData::Ssi(s) => Some(s.not_after),
            RData::ApKey(k) => Some(k.not_after),
            _ => None,
        })
        .filter(|&t| t >= now)
        .min();
    let mut records: Vec<crate::zone::Record> = zone
        .records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !rejected.contains(i))
        .map(|(_, r)| r)
        .collect();
    let pir = match pir {
        Some((settings, secret)) => {
            let state = build_private(&zc.origin, &records, settings, secret)?;
            records.push(crate::zone::Record {
                name: pir_name(&zc.origin).map_err(|e| format!("{file}: {e}"))?,
                ttl: PIRCFG_TTL,
                data: RData::Unknown {
                    rtype: TYPE_PIRCFG,
                    data: state.pir.record.encode().into(),
                },
                line: 0,
            });
            Some(Arc::new(state))
        }
        None => None,
    };
    let store = ZoneStore::build(zc.origin.clone(), records).map_err(|e| format!("{file}: {e}"))?;
    let soa_record = crate::zone::Record {
        name: zc.origin.clone(),
        ttl: store.soa_ttl(),
        data: RData::Soa(Box::new(store.soa().clone())),
        line: 0,
    };
    let soa = soa_record.to_wire_record();
    let mut negative_soa = soa.clone();
    negative_soa.ttl = store.negative_ttl();
    info!(
        zone = %zc.origin,
        records = store.record_count(),
        refused = rejected.len(),
        serial = store.soa().serial,
        "zone loaded from {file}"
    );
    Ok(ServedZone {
        store,
        negative_soa,
        soa,
        rejected: rejected.len(),
        next_expiry,
        pir,
    })
}

/// Loads every configured zone. On a reload (`previous` given) a zone that fails keeps
/// its previous version; at start-up any failure is an error.
pub fn load_all(
    config: &DpConfig,
    previous: Option<&ZoneSet>,
    now: u64,
    pir_secret: &[u8],
) -> Result<(ZoneSet, Vec<String>), String> {
    let trust = TrustStore::load(&config.trust).map_err(|e| e.to_string())?;
    let mut set = ZoneSet::default();
    let mut failures = Vec::new();
    for zc in &config.zones {
        let pir = config.pir.as_ref().map(|s| (s, pir_secret));
        match load_zone(
            zc,
            &trust,
            &config.apex,
            now,
            config.serve_invalid_records,
            pir,
        ) {
            Ok(z) => set.insert(Arc::new(z)),
            Err(e) => match previous.and_then(|p| p.get(&zc.origin)) {
                Some(old) => {
                    warn!(zone = %zc.origin, "reload failed, still serving the previous version: {e}");
                    failures.push(e);
                    set.insert(old.clone());
                }
                None => {
                    if previous.is_none() {
                        return Err(format!(
                            "{} (zone {} at {}:{})",
                            e,
                            zc.origin,
                            config.path.display(),
                            zc.line
                        ));
                    }
                    warn!(zone = %zc.origin, "zone not loaded: {e}");
                    failures.push(e);
                }
            },
        }
    }
    release_freed_memory();
    Ok((set, failures))
}

/// Loading a zone parses and checks a whole file and then drops it; glibc keeps the freed
/// heap for reuse, so give it back to the system or the server would sit at its peak.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
