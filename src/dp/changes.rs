//! Invalidation for subscribed resolvers (DESIGN 8.3): who is subscribed, and the
//! CHANGES answer at `_changes.<zone>` - the digest prefixes of every name whose answer
//! changed since the serial the resolver last saw, from the zone's diff history.
//! Protocol: docs/invalidation.md.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use thiserror::Error;
use tracing::{debug, warn};

use super::config::DpConfig;
use super::handler::DpHandler;
use super::signed::WireError;
use super::update::ede;
use super::zones::{ServedZone, ZoneSet, DERIVED_TYPES};
use crate::changes::{Changes, SERIAL_OPTION, TYPE_CHANGES};
use crate::name::Name;
use crate::record::KeyError;
use crate::sys::unix_now;
use crate::tsig::{TsigFailure, TsigKey};

/// The subscribed resolvers: where NOTIFY goes and the keys that sign it and
/// authenticate CHANGES requests (`keys[targets[i].1]` for `targets[i].0`).
#[derive(Debug, Default)]
pub struct Subscribers {
    pub keys: Vec<TsigKey>,
    pub targets: Vec<(SocketAddr, usize)>,
    /// Digest width of CHANGES answers.
    pub bits: u8,
}

#[derive(Debug, Error)]
#[error("{file}:{line}: subscriber {address}: {source}")]
pub struct SubscriberKeyError {
    file: String,
    line: usize,
    address: SocketAddr,
    source: Box<KeyError>,
}

/// Loads the keys of the `[[subscriber]]` entries (several may share one key).
pub fn load_subscribers(config: &DpConfig) -> Result<Subscribers, SubscriberKeyError> {
    let mut out = Subscribers {
        bits: config.changes_bits,
        ..Subscribers::default()
    };
    for s in &config.subscribers {
        let key = TsigKey::load(&s.tsig).map_err(|source| SubscriberKeyError {
            file: config.path.display().to_string(),
            line: s.line,
            address: s.address,
            source: Box::new(source),
        })?;
        let i = match out.keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                out.keys.push(key);
                out.keys.len() - 1
            }
        };
        out.targets.push((s.address, i));
    }
    Ok(out)
}

/// Why a CHANGES request got no list.
#[derive(Debug, Error)]
enum ChangesRefusal {
    #[error("CHANGES is answered over TCP only")]
    NotTcp,
    #[error("{0}")]
    NotAuth(String),
    #[error("no zone {0} is served here")]
    NotServed(String),
    #[error("the last-serial option (65002) must hold 4 octets")]
    BadSerial,
}

impl WireError for ChangesRefusal {
    fn rcode(&self) -> ResponseCode {
        match self {
            ChangesRefusal::NotTcp => ResponseCode::Refused,
            ChangesRefusal::NotAuth(_) => ResponseCode::NotAuth,
            ChangesRefusal::NotServed(_) => ResponseCode::Refused,
            ChangesRefusal::BadSerial => ResponseCode::FormErr,
        }
    }

    fn ede_code(&self) -> u16 {
        match self {
            ChangesRefusal::NotTcp | ChangesRefusal::NotAuth(_) => ede::PROHIBITED,
            ChangesRefusal::NotServed(_) => ede::NOT_AUTHORITATIVE,
            ChangesRefusal::BadSerial => ede::OTHER,
        }
    }
}

/// The serial in option 65002: None when absent, an error when malformed.
fn asked_serial(edns: Option<&Edns>) -> Result<Option<u32>, ChangesRefusal> {
    let Some(option) = edns.and_then(|e| e.option(EdnsCode::Unknown(SERIAL_OPTION))) else {
        return Ok(None);
    };
    match option {
        EdnsOption::Unknown(_, data) => match <[u8; 4]>::try_from(data.as_slice()) {
            Ok(b) => Ok(Some(u32::from_be_bytes(b))),
            Err(_) => Err(ChangesRefusal::BadSerial),
        },
        _ => Err(ChangesRefusal::BadSerial),
    }
}

/// What changed in `zone` since `serial`: every owner in the diffs, and the ancestors
/// whose existence may have changed with them; a reset when the history does not reach
/// back that far.
pub fn changes_since(zone: &ServedZone, serial: Option<u32>, bits: u8) -> Changes {
    let current = zone.store.soa().serial;
    match serial.and_then(|s| zone.diffs_since(s).map(|d| (s, d))) {
        Some((from, diffs)) => {
            let names = changed_names(zone, diffs);
            Changes::of_names(from, current, bits, &names)
        }
        None => Changes::reset(current, bits),
    }
}

/// The owners of the diffs' records, plus each ancestor (below the apex) that is gone
/// now, or that holds no records and whose every child lies on the path of a name the
/// diffs created (first seen being added) - a superset of the empty non-terminals the diffs created, where a
/// resolver may have cached NXDOMAIN. An ancestor that fails both tests existed before,
/// and so did everything above it.
fn changed_names(zone: &ServedZone, diffs: &[std::sync::Arc<crate::zone::Diff>]) -> Vec<Name> {
    use std::collections::{HashMap, HashSet};
    let origin = zone.store.origin();
    let kept = |r: &&crate::zone::Record| !DERIVED_TYPES.contains(&r.data.rtype());
    // Names that did not exist at the start: first seen being added, not removed.
    let mut seen: HashSet<&Name> = HashSet::new();
    let mut added: HashSet<&Name> = HashSet::new();
    for d in diffs {
        for r in d.removed.iter().filter(kept) {
            seen.insert(&r.name);
        }
        for r in d.added.iter().filter(kept) {
            if seen.insert(&r.name) {
                added.insert(&r.name);
            }
        }
    }
    let owners: HashSet<&Name> = diffs
        .iter()
        .flat_map(|d| {
            d.removed
                .iter()
                .filter(kept)
                .chain(d.added.iter().filter(kept))
        })
        .map(|r| &r.name)
        .collect();
    // For each name above an added owner, its children on such paths.
    let mut on_path: HashMap<Name, HashSet<Name>> = HashMap::new();
    for o in &added {
        let mut child = (*o).clone();
        while let Some(parent) = child
            .parent()
            .filter(|p| p != origin && p.is_subdomain_of(origin))
        {
            let fresh = on_path.entry(parent.clone()).or_default().insert(child);
            if !fresh {
                break;
            }
            child = parent;
        }
    }
    let mut names: HashSet<Name> = owners.iter().map(|o| (*o).clone()).collect();
    for o in &owners {
        let mut a = o.parent();
        while let Some(anc) = a.filter(|p| p != origin && p.is_subdomain_of(origin)) {
            let may_have_changed = match zone.store.node(anc.as_wire()) {
                None => true,
                Some(node) => {
                    node.rrsets.is_empty()
                        && on_path.get(&anc).map_or(0, HashSet::len) >= node.children as usize
                }
            };
            if !may_have_changed || !names.insert(anc.clone()) {
                break;
            }
            a = anc.parent();
        }
    }
    names.into_iter().collect()
}

impl DpHandler {
    /// A CHANGES question at `_changes.<zone>`: TCP, TSIG with a subscriber's key.
    /// `edns` is the answer's EDNS; the asked serial is in the request's.
    pub(super) async fn changes<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        zones: &ZoneSet,
        qname: &[u8],
        handle: R,
    ) -> ResponseInfo {
        let subs = self.shared.subscribers.load_full();
        if request.protocol().is_datagram() {
            return self
                .send_error(request, edns, &ChangesRefusal::NotTcp, None, handle)
                .await;
        }
        let verified = match crate::tsig::verify_request(request.as_slice(), &subs.keys, unix_now())
        {
            Ok(v) => v,
            Err(failure) => {
                warn!(src = %request.src(), "CHANGES refused: {failure}");
                let e = ChangesRefusal::NotAuth(failure.to_string());
                return match failure {
                    TsigFailure::FormErr(_) => {
                        self.send_error(request, edns, &e, None, handle).await
                    }
                    _ => {
                        self.send_tsig_failure(request, edns, &e, failure, &subs.keys, handle)
                            .await
                    }
                };
            }
        };
        let Some(key) = subs.keys.get(verified.key) else {
            let e = ChangesRefusal::NotAuth("unknown key".into());
            return self.send_error(request, edns, &e, None, handle).await;
        };
        let signing = Some((key, &verified));
        let zone = zones.find(qname).filter(|z| {
            crate::changes::owner(z.store.origin()).is_ok_and(|o| o.as_wire() == qname)
        });
        let Some(zone) = zone else {
            let shown = Name::from_wire(qname).map_or_else(|_| "?".into(), |(n, _)| n.to_string());
            let e = ChangesRefusal::NotServed(shown);
            return self.send_error(request, edns, &e, signing, handle).await;
        };
        let serial = match asked_serial(request.edns.as_ref()) {
            Ok(s) => s,
            Err(e) => return self.send_error(request, edns, &e, signing, handle).await,
        };
        let changes = changes_since(&zone, serial, subs.bits);
        debug!(
            src = %request.src(),
            zone = %zone.store.origin(),
            from = changes.from,
            to = changes.to,
            reset = changes.reset,
            prefixes = changes.prefixes.len(),
            "CHANGES answered"
        );
        self.shared
            .stats
            .changes_answered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(owner) = crate::changes::owner(zone.store.origin()) else {
            let e = ChangesRefusal::NotServed(zone.store.origin().to_string());
            return self.send_error(request, edns, &e, signing, handle).await;
        };
        let record = Record::from_rdata(
            owner.to_hickory(),
            0,
            RData::Unknown {
                code: RecordType::from(TYPE_CHANGES),
                rdata: NULL::with(changes.to_wire()),
            },
        );
        self.send_signed(
            request,
            edns,
            ResponseCode::NoError,
            &[record],
            signing,
            handle,
        )
        .await
    }
}
