//! Invalidation pushed by DPs (DESIGN 8.3, docs/invalidation.md): a subscribed zone's DP
//! sends a TSIG-signed NOTIFY on every new serial; the resolver then asks
//! `_changes.<zone>` for CHANGES since the last serial it saw, over TCP with the same
//! key, and drops every cached entry of the zone whose name's digest prefix is listed
//! (every entry of the zone when the DP's journal no longer reaches back that far).
//!
//! A NOTIFY that is not from a subscribed zone's DP address, or whose TSIG fails, changes
//! nothing: it is answered with an error and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{RData, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use thiserror::Error;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::config::Subscription;
use super::Resolver;
use crate::changes::{self, Changes, SERIAL_OPTION, TYPE_CHANGES};
use crate::name::Name;
use crate::record::KeyError;
use crate::signed::{self, WireError};
use crate::sys::unix_now;
use crate::tsig::{TsigError, TsigFailure, TsigKey, Verified};

/// How long one CHANGES exchange may take.
const CHANGES_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of the invalidation feed.
#[derive(Debug, Default)]
pub struct InvalidationStats {
    pub notify_accepted: AtomicU64,
    /// NOTIFYs refused: not from a subscribed DP, or a failed TSIG.
    pub notify_ignored: AtomicU64,
    pub changes_fetched: AtomicU64,
    pub changes_failed: AtomicU64,
    /// Zones dropped whole because the DP's journal no longer reached the serial.
    pub zone_resets: AtomicU64,
    pub entries_dropped: AtomicU64,
}

struct ZoneSub {
    server: SocketAddr,
    key: TsigKey,
    /// The serial the cache reflects, once learnt.
    serial: Option<u32>,
    /// A CHANGES exchange is under way; `again` asks for one more after it.
    busy: bool,
    again: bool,
}

/// The subscribed zones and their state.
#[derive(Default)]
pub struct Invalidation {
    zones: Mutex<HashMap<Name, ZoneSub>>,
    /// Drop a zone's every entry on each NOTIFY, as PowerDNS Recursor's allow-notify-for
    /// does; for comparison (`tools/bench/invalidation.sh`), never the default.
    whole_zone: std::sync::atomic::AtomicBool,
    pub stats: InvalidationStats,
}

#[derive(Debug, Error)]
#[error("{file}:{line}: subscription to {zone}: {source}")]
pub struct SubscriptionKeyError {
    file: String,
    line: usize,
    zone: Name,
    source: Box<KeyError>,
}

/// Why a CHANGES exchange failed.
#[derive(Debug, Error)]
pub enum ChangesFetchError {
    #[error("CHANGES from {server}: {source}")]
    Io {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("CHANGES from {server}: no answer within {CHANGES_TIMEOUT:?}")]
    Timeout { server: SocketAddr },
    #[error("CHANGES from {server}: {source}")]
    Tsig {
        server: SocketAddr,
        #[source]
        source: TsigError,
    },
    #[error("CHANGES from {server}: answered {rcode}")]
    Refused {
        server: SocketAddr,
        rcode: ResponseCode,
    },
    #[error("CHANGES from {server}: {reason}")]
    Malformed { server: SocketAddr, reason: String },
    #[error("CHANGES from {server} over TLS: {source}")]
    Upstream {
        server: SocketAddr,
        #[source]
        source: super::transport::ExchangeError,
    },
}

/// Why a NOTIFY was ignored; each maps to one RCODE and extended error.
#[derive(Debug, Error)]
enum NotifyRefusal {
    #[error("a NOTIFY must ask for one SOA")]
    FormErr,
    #[error("no subscription to {0}")]
    NotSubscribed(Name),
    #[error("NOTIFY for {zone} from {src}, not from its DP")]
    WrongSource { zone: Name, src: SocketAddr },
    #[error("NOTIFY for {zone}: {failure}")]
    Tsig { zone: Name, failure: TsigFailure },
}

impl WireError for NotifyRefusal {
    fn rcode(&self) -> ResponseCode {
        match self {
            NotifyRefusal::FormErr => ResponseCode::FormErr,
            NotifyRefusal::NotSubscribed(_) | NotifyRefusal::WrongSource { .. } => {
                ResponseCode::Refused
            }
            NotifyRefusal::Tsig { .. } => ResponseCode::NotAuth,
        }
    }

    fn ede_code(&self) -> u16 {
        use crate::dp::update::ede;
        match self {
            NotifyRefusal::FormErr => ede::OTHER,
            _ => ede::PROHIBITED,
        }
    }
}

impl Invalidation {
    /// Loads the keys of the config's subscriptions.
    pub fn load(subs: &[Subscription], file: &str) -> Result<Invalidation, SubscriptionKeyError> {
        let inv = Invalidation::default();
        for s in subs {
            let key = TsigKey::load(&s.tsig).map_err(|source| SubscriptionKeyError {
                file: file.to_string(),
                line: s.line,
                zone: s.zone.clone(),
                source: Box::new(source),
            })?;
            inv.subscribe(s.zone.clone(), s.server, key);
        }
        Ok(inv)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Name, ZoneSub>> {
        self.zones.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts NOTIFY for `zone` from `server`'s address, signed with `key`, and asks
    /// CHANGES there.
    pub fn subscribe(&self, zone: Name, server: SocketAddr, key: TsigKey) {
        self.lock().insert(
            zone,
            ZoneSub {
                server,
                key,
                serial: None,
                busy: false,
                again: false,
            },
        );
    }

    /// Drops a zone's every entry on each change instead of what CHANGES lists.
    pub fn set_whole_zone(&self, on: bool) {
        self.whole_zone.store(on, Relaxed);
    }

    /// The serial the cache of `zone` reflects, once learnt.
    pub fn serial(&self, zone: &Name) -> Option<u32> {
        self.lock().get(zone).and_then(|z| z.serial)
    }

    /// The subscribed zones.
    pub fn zones(&self) -> Vec<Name> {
        self.lock().keys().cloned().collect()
    }

    /// Checks a NOTIFY's source and TSIG.
    fn verify(
        &self,
        zone: &Name,
        msg: &[u8],
        src: SocketAddr,
    ) -> Result<(TsigKey, Verified), NotifyRefusal> {
        let key = {
            let zones = self.lock();
            let sub = zones
                .get(zone)
                .ok_or_else(|| NotifyRefusal::NotSubscribed(zone.clone()))?;
            if sub.server.ip() != src.ip() {
                return Err(NotifyRefusal::WrongSource {
                    zone: zone.clone(),
                    src,
                });
            }
            sub.key.clone()
        };
        let verified = crate::tsig::verify_request(msg, std::slice::from_ref(&key), unix_now())
            .map_err(|failure| NotifyRefusal::Tsig {
                zone: zone.clone(),
                failure,
            })?;
        Ok((key, verified))
    }
}

/// Brings the cache of `zone` up to its DP's serial: one CHANGES exchange, then the
/// drops; NOTIFYs arriving meanwhile make one more round.
pub async fn refresh(resolver: Arc<Resolver>, zone: Name) {
    let inv = &resolver.invalidation;
    {
        let mut zones = inv.lock();
        let Some(sub) = zones.get_mut(&zone) else {
            return;
        };
        if sub.busy {
            sub.again = true;
            return;
        }
        sub.busy = true;
    }
    loop {
        let (server, key, serial) = {
            let zones = inv.lock();
            let Some(sub) = zones.get(&zone) else { return };
            (sub.server, sub.key.clone(), sub.serial)
        };
        match fetch_changes_via(Some(resolver.upstream()), server, &zone, &key, serial).await {
            Ok(c) => {
                apply(&resolver, &zone, serial, &c);
                // The replica's delta, once the DP's table reflects the new serial.
                if let Err(e) = resolver.refresh_replica(&zone, Some(c.to)).await {
                    warn!(%zone, "replica: {e}");
                }
            }
            Err(e) => {
                inv.stats.changes_failed.fetch_add(1, Relaxed);
                warn!(%zone, "invalidation: {e}");
            }
        }
        let mut zones = inv.lock();
        let Some(sub) = zones.get_mut(&zone) else {
            return;
        };
        if sub.again {
            sub.again = false;
        } else {
            sub.busy = false;
            return;
        }
    }
}

/// Drops what a CHANGES answer lists and records the new serial.
fn apply(resolver: &Resolver, zone: &Name, asked: Option<u32>, c: &Changes) {
    let inv = &resolver.invalidation;
    inv.stats.changes_fetched.fetch_add(1, Relaxed);
    // An answer that does not start where we asked is treated as a reset.
    let reset = c.reset || asked != Some(c.from);
    let dropped = if reset {
        inv.stats.zone_resets.fetch_add(1, Relaxed);
        resolver.private_cache.drop_zone(zone) + resolver.cache.invalidate(zone, None)
    } else if inv.whole_zone.load(Relaxed) {
        resolver.private_cache.drop_zone(zone) + resolver.cache.invalidate(zone, None)
    } else if c.prefixes.is_empty() {
        0
    } else {
        let set = c.set();
        resolver.private_cache.drop_zone_listed(zone, Some(&set))
            + resolver.cache.invalidate(zone, Some(&set))
    };
    inv.stats.entries_dropped.fetch_add(dropped as u64, Relaxed);
    info!(%zone, from = c.from, to = c.to, reset, prefixes = c.prefixes.len(), dropped, "invalidated");
    if let Some(sub) = inv.lock().get_mut(zone) {
        sub.serial = Some(c.to);
    }
}

/// Asks `server` for CHANGES of `zone` since `serial` (none: a reset answer, which
/// tells the current serial), over TCP, signed with `key`.
pub async fn fetch_changes(
    server: SocketAddr,
    zone: &Name,
    key: &TsigKey,
    serial: Option<u32>,
) -> Result<Changes, ChangesFetchError> {
    fetch_changes_via(None, server, zone, key, serial).await
}

/// As [`fetch_changes`]; over DNS over TLS to the server's address when `upstream` says
/// so (on its DoT port and kept connections).
pub async fn fetch_changes_via(
    upstream: Option<&super::transport::Upstream>,
    server: SocketAddr,
    zone: &Name,
    key: &TsigKey,
    serial: Option<u32>,
) -> Result<Changes, ChangesFetchError> {
    let malformed = |reason: String| ChangesFetchError::Malformed { server, reason };
    let owner = changes::owner(zone).map_err(|e| malformed(e.to_string()))?;
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        owner.to_hickory(),
        RecordType::from(TYPE_CHANGES),
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some(s) = serial {
        edns.options_mut()
            .insert(EdnsOption::Unknown(SERIAL_OPTION, s.to_be_bytes().to_vec()));
    }
    m.set_edns(edns);
    let mut bytes = m.to_vec().map_err(|e| malformed(e.to_string()))?;
    let mac = crate::tsig::sign_request(&mut bytes, key, unix_now())
        .map_err(|source| ChangesFetchError::Tsig { server, source })?;
    let reply = match upstream.filter(|u| u.uses_tls()) {
        // The subscription's own key signs CHANGES; the upstream's TSIG is not added.
        Some(u) => u
            .request_once(server.ip(), &bytes, CHANGES_TIMEOUT)
            .await
            .map_err(|source| ChangesFetchError::Upstream { server, source })?,
        None => plain_changes(server, &bytes).await?,
    };
    let parsed = Message::from_vec(&reply).map_err(|e| malformed(e.to_string()))?;
    if parsed.metadata.id != id {
        return Err(malformed("the answer's ID is not the question's".into()));
    }
    // An unsigned refusal (BADKEY, BADSIG) is reported by its RCODE.
    if parsed.metadata.response_code != ResponseCode::NoError {
        return Err(ChangesFetchError::Refused {
            server,
            rcode: parsed.metadata.response_code,
        });
    }
    crate::tsig::verify_response(&reply, key, &mac, unix_now())
        .map_err(|source| ChangesFetchError::Tsig { server, source })?;
    let rdata = parsed
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::Unknown { code, rdata }
                if u16::from(*code) == TYPE_CHANGES
                    && Name::from_hickory(&r.name).is_ok_and(|n| n == owner) =>
            {
                Some(rdata.anything.clone())
            }
            _ => None,
        })
        .ok_or_else(|| malformed("no CHANGES record in the answer".into()))?;
    Changes::from_wire(&rdata).map_err(|e| malformed(e.to_string()))
}

/// One CHANGES exchange over a new TCP connection.
async fn plain_changes(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, ChangesFetchError> {
    let io = |source| ChangesFetchError::Io { server, source };
    tokio::time::timeout(CHANGES_TIMEOUT, async {
        let mut stream = TcpStream::connect(server).await.map_err(io)?;
        crate::wire::write_frame(&mut stream, bytes)
            .await
            .map_err(io)?;
        crate::wire::read_frame(&mut stream).await.map_err(io)
    })
    .await
    .map_err(|_| ChangesFetchError::Timeout { server })?
}

/// Answers a NOTIFY: checked, acknowledged (signed), and the zone refreshed in the
/// background; anything else is refused and counted.
pub async fn answer_notify<R: ResponseHandler>(
    resolver: &Arc<Resolver>,
    request: &Request,
    handle: R,
) -> ResponseInfo {
    let edns = request.edns.clone();
    let zone = match request.queries.queries() {
        [q] if q.query_type() == RecordType::SOA => Name::from_hickory(q.name()).ok(),
        _ => None,
    };
    let outcome = match &zone {
        Some(zone) => resolver
            .invalidation
            .verify(zone, request.as_slice(), request.src())
            .map(|v| (zone.clone(), v)),
        None => Err(NotifyRefusal::FormErr),
    };
    let sent = match outcome {
        Ok((zone, (key, verified))) => {
            resolver
                .invalidation
                .stats
                .notify_accepted
                .fetch_add(1, Relaxed);
            debug!(%zone, src = %request.src(), "NOTIFY accepted");
            tokio::spawn(refresh(resolver.clone(), zone));
            let sig = signed::signature(
                request,
                edns.as_ref(),
                ResponseCode::NoError,
                &[],
                &key,
                &verified,
            );
            signed::send(
                request,
                edns.as_ref(),
                ResponseCode::NoError,
                &[],
                sig,
                handle,
            )
            .await
        }
        Err(refusal) => {
            resolver
                .invalidation
                .stats
                .notify_ignored
                .fetch_add(1, Relaxed);
            warn!(src = %request.src(), "NOTIFY ignored: {refusal}");
            match &refusal {
                NotifyRefusal::Tsig { failure, zone } => {
                    let keys: Vec<TsigKey> = resolver
                        .invalidation
                        .lock()
                        .get(zone)
                        .map(|s| vec![s.key.clone()])
                        .unwrap_or_default();
                    signed::send_tsig_failure(
                        request,
                        edns.as_ref(),
                        &refusal,
                        failure,
                        &keys,
                        handle,
                    )
                    .await
                }
                _ => signed::send_error(request, edns.as_ref(), &refusal, None, handle).await,
            }
        }
    };
    sent.unwrap_or_else(|e| {
        debug!("NOTIFY answer not sent: {e}");
        signed::unsent(request)
    })
}

/// A listener that takes NOTIFY only, for resolvers used as a library.
#[derive(Clone)]
pub struct NotifyHandler(pub Arc<Resolver>);

impl crate::net::StreamHandler for NotifyHandler {}

#[async_trait::async_trait]
impl RequestHandler for NotifyHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        if request.metadata.op_code == OpCode::Notify {
            return answer_notify(&self.0, request, handle).await;
        }
        signed::send(request, None, ResponseCode::Refused, &[], None, handle)
            .await
            .unwrap_or_else(|_| signed::unsent(request))
    }
}

/// Listens for NOTIFY on `addrs` (UDP and TCP); returns the listener (shut it down to
/// stop) and the bound addresses. Call [`start`] once the DPs know this subscriber.
pub async fn listen(
    resolver: Arc<Resolver>,
    addrs: &[SocketAddr],
) -> std::io::Result<(super::server::Listener<NotifyHandler>, Vec<SocketAddr>)> {
    super::server::listen_with(
        NotifyHandler(resolver),
        addrs,
        crate::net::Limits::default(),
    )
    .await
}

/// Asks each subscribed zone's DP for its serial (a CHANGES exchange), so the first
/// NOTIFY brings a list rather than a reset. Entries already cached for a zone whose
/// serial was unknown are dropped.
pub async fn start(resolver: &Arc<Resolver>) {
    for zone in resolver.invalidation.zones() {
        refresh(resolver.clone(), zone).await;
    }
}
