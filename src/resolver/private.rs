//! The client side of private lookups (DESIGN.md section 7): find the zone through the tree
//! without asking any DP for more of the owner name than the zone's own name, then OPRF and
//! PIR to that zone's DP over one connection (TCP, or a kept DoT one under `[upstream]`),
//! and verify the records found in the slot.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData as HRData, Record, RecordType};
use tracing::debug;

use super::cache::Delegation;
use super::transport::{Connection, Upstream};
use super::{LookupResult, NotFound, Outcome, ResolveError, Resolver, Walk, TYPE_NS};
use crate::name::Name;
use crate::pir::carrier::{self, ede, PirCfgRecord, Request, Response};
use crate::pir::{oprf, Chunk, MulPir, ZonePirClient};
use crate::record::{Context, TYPE_PIR, TYPE_PIRCFG};
use crate::sii::Sii;

/// A PIR answer can take seconds on a large shard.
const PIR_TIMEOUT: Duration = Duration::from_secs(60);

/// A client's PIR keys for one zone and epoch, with the id of the uploaded copy.
pub(super) struct KeySet {
    client: ZonePirClient<MulPir>,
    key_bytes: Vec<u8>,
    key_id: [u8; 16],
    /// Set once a DP has acknowledged the whole key.
    sent: std::sync::atomic::AtomicBool,
}

/// PIR keys by (zone, epoch): made and uploaded once, reused by later lookups.
#[derive(Default)]
pub(super) struct KeyStore {
    keys: Mutex<HashMap<(Name, u64), Arc<KeySet>>>,
}

fn private_error(zone: &Name, reason: impl std::fmt::Display) -> ResolveError {
    ResolveError::Private {
        zone: zone.clone(),
        reason: reason.to_string(),
    }
}

/// One connection to a DP for the exchanges of one private lookup.
struct Session<'a> {
    upstream: &'a Upstream,
    conn: Option<Connection>,
    ip: IpAddr,
    server: SocketAddr,
    qname: Name,
    zone: Name,
    exchanges: u32,
}

/// A DP's refusal: RCODE and extended-error code and text.
struct Refusal {
    code: Option<u16>,
    text: String,
}

impl<'a> Session<'a> {
    async fn open(
        upstream: &'a Upstream,
        ip: IpAddr,
        zone: &Name,
        wait: Duration,
    ) -> Result<Session<'a>, ResolveError> {
        let server = upstream.server_addr(ip);
        let conn = upstream
            .connect(ip, wait)
            .await
            .map_err(|e| private_error(zone, format!("{server}: {e}")))?;
        let qname = carrier::pir_name(zone).map_err(|e| private_error(zone, e))?;
        Ok(Session {
            upstream,
            conn: Some(conn),
            ip,
            server,
            qname,
            zone: zone.clone(),
            exchanges: 0,
        })
    }

    /// Hands the connection back for later lookups (a TLS one is kept).
    fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            self.upstream.release(conn);
        }
    }

    /// Sends one request; the DP's refusal comes back as `Ok(Err(..))`.
    async fn exchange(
        &mut self,
        request: &Request,
    ) -> Result<Result<Response, Refusal>, ResolveError> {
        self.exchanges += 1;
        let id: u16 = rand::random();
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(
            self.qname.to_hickory(),
            RecordType::from(TYPE_PIR),
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.options_mut()
            .insert(EdnsOption::Unknown(carrier::EDNS_OPTION, request.encode()));
        msg.set_edns(edns);
        let mut bytes = msg.to_vec().map_err(|e| private_error(&self.zone, e))?;
        let failed = |zone: &Name, server: SocketAddr, e: super::transport::ExchangeError| {
            private_error(zone, format!("{server}: {e}"))
        };
        let mac = self
            .upstream
            .sign(&mut bytes)
            .map_err(|e| failed(&self.zone, self.server, e))?;
        let buf = self
            .upstream
            .request(&mut self.conn, self.ip, &bytes, PIR_TIMEOUT)
            .await
            .map_err(|e| failed(&self.zone, self.server, e))?;
        self.upstream
            .check_tsig(&buf, mac.as_ref())
            .map_err(|e| failed(&self.zone, self.server, e))?;
        let reply = Message::from_vec(&buf)
            .map_err(|e| private_error(&self.zone, format!("{}: {e}", self.server)))?;
        if reply.metadata.id != id {
            return Err(private_error(
                &self.zone,
                format!("{}: reply to another query", self.server),
            ));
        }
        if reply.metadata.response_code != ResponseCode::NoError {
            let ede = reply
                .edns
                .as_ref()
                .and_then(|e| e.option(EdnsCode::from(carrier::EDE_OPTION)))
                .and_then(|o| match o {
                    EdnsOption::Unknown(_, b) => carrier::parse_ede(b),
                    _ => None,
                });
            let (code, text) = match ede {
                Some((c, t)) => (Some(c), t),
                None => (None, String::new()),
            };
            return Ok(Err(Refusal {
                code,
                text: format!("{} ({})", reply.metadata.response_code, text),
            }));
        }
        let rdata = reply.answers.iter().find_map(|r| match &r.data {
            HRData::Unknown { code, rdata } if u16::from(*code) == TYPE_PIR => {
                Some(&rdata.anything)
            }
            _ => None,
        });
        let rdata = rdata.ok_or_else(|| {
            private_error(
                &self.zone,
                format!("{}: no PIR record in the answer", self.server),
            )
        })?;
        Response::decode(rdata)
            .map(Ok)
            .map_err(|e| private_error(&self.zone, format!("{}: {e}", self.server)))
    }
}

impl Resolver {
    /// A private lookup: the DPs learn the zones on the way and, at the last one, a shard
    /// number; never the identifier. Finds exactly what `lookup` finds.
    pub async fn lookup_private(
        &self,
        sii: &Sii,
        context: Option<Context>,
    ) -> Result<LookupResult, ResolveError> {
        // One bound on the whole lookup (the walk, the OPRF and the PIR exchanges), as for
        // public lookups.
        let deadline = self.config.limits.lookup_deadline;
        let lookup = async {
            // A DP that reloaded since PIRCFG was read answers WRONG_EPOCH: start over
            // once with the new PIRCFG.
            match self.lookup_private_once(sii, context).await {
                Err(ResolveError::EpochChanged { .. }) => {
                    self.lookup_private_once(sii, context).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(deadline, lookup).await {
            Ok(r) => r,
            Err(_) => Err(ResolveError::Deadline {
                owner: sii.owner_name(&self.config.apex)?,
                after: deadline,
            }),
        }
    }

    async fn lookup_private_once(
        &self,
        sii: &Sii,
        context: Option<Context>,
    ) -> Result<LookupResult, ResolveError> {
        let started = Instant::now();
        let context = context.unwrap_or(self.config.context);
        let owner = sii.owner_name(&self.config.apex)?;
        let mut walk = Walk {
            queries: 0,
            referrals: 0,
            resolving: Vec::new(),
        };
        let zone = match self.find_private_zone(&owner, &mut walk).await? {
            Ok(z) => z,
            Err(nf) => {
                return Ok(LookupResult {
                    owner,
                    outcome: Outcome::NotDiscoverable(nf),
                    zone: None,
                    server: None,
                    from_cache: false,
                    stale: false,
                    queries: walk.queries,
                    elapsed: started.elapsed(),
                    rejected: Vec::new(),
                    ttl: 0,
                    soa: None,
                })
            }
        };
        let (delegation, cfg) = zone;
        let (wires, server, exchanges) = self
            .private_fetch(&owner, &delegation, &cfg, &mut walk)
            .await?;
        let records: Vec<Record> = wires
            .into_iter()
            .map(|w| {
                Record::from_rdata(
                    owner.to_hickory(),
                    self.config.cache.max_ttl.as_secs().min(u64::from(u32::MAX)) as u32,
                    HRData::Unknown {
                        code: RecordType::from(crate::record::TYPE_SSI),
                        rdata: hickory_proto::rr::rdata::NULL::with(w),
                    },
                )
            })
            .collect();
        let (mappings, rejected) = self.verify(&owner, &records);
        if mappings.is_empty() && !rejected.is_empty() {
            return Err(ResolveError::AllRejected { owner, rejected });
        }
        let outcome = if records.is_empty() {
            Outcome::NotDiscoverable(NotFound::NoSuchName)
        } else {
            let picked: Vec<_> = mappings
                .iter()
                .filter(|m| m.ssi.context.matches(context))
                .cloned()
                .collect();
            if !picked.is_empty() {
                Outcome::Found(picked)
            } else if mappings.is_empty() {
                Outcome::NotDiscoverable(NotFound::NoMappings)
            } else {
                Outcome::NotDiscoverable(NotFound::NoneForContext(context))
            }
        };
        Ok(LookupResult {
            owner,
            outcome,
            zone: Some(delegation.zone.clone()),
            server: Some(server),
            from_cache: false,
            stale: false,
            queries: walk.queries + exchanges,
            elapsed: started.elapsed(),
            rejected,
            ttl: 0,
            soa: None,
        })
    }

    /// Walks from the root to the zone that holds `owner`, asking each zone for its PIRCFG
    /// and only for the delegations it lists. A zone without PIRCFG gets one minimised
    /// question, and private lookup stops there rather than reveal more labels.
    async fn find_private_zone(
        &self,
        owner: &Name,
        walk: &mut Walk,
    ) -> Result<Result<(Arc<Delegation>, PirCfgRecord), NotFound>, ResolveError> {
        let mut zone = self.root_delegation();
        loop {
            let cfg_name =
                carrier::pir_name(&zone.zone).map_err(|e| private_error(&zone.zone, e))?;
            let cfg = match self.ask_zone(&zone, &cfg_name, TYPE_PIRCFG, walk).await? {
                (super::Reply::Answer(records), _) => records.iter().find_map(|r| match &r.data {
                    HRData::Unknown { rdata, .. } => PirCfgRecord::decode(&rdata.anything).ok(),
                    _ => None,
                }),
                _ => None,
            };
            let next_label = owner.label_count().min(zone.zone.label_count() + 1);
            let step = match &cfg {
                Some(cfg) => match cfg.children.iter().find(|c| owner.is_subdomain_of(c)) {
                    Some(child) => child.clone(),
                    None => return Ok(Ok((zone, cfg.clone()))),
                },
                None => super::suffix_with_labels(owner, next_label),
            };
            walk.referral(&self.config.limits)?;
            match self.ask_zone(&zone, &step, TYPE_NS, walk).await? {
                (super::Reply::Referral { cut, ns, glue, .. }, _) => {
                    zone = Arc::new(Delegation::from_referral(cut, ns, &glue));
                }
                (super::Reply::NxDomain { .. }, _) => return Ok(Err(NotFound::NoSuchName)),
                _ => {
                    return Err(private_error(
                        &zone.zone,
                        "the zone publishes no PIRCFG, so it offers no private lookups",
                    ))
                }
            }
        }
    }

    /// OPRF, key upload and PIR queries against one server of the zone.
    async fn private_fetch(
        &self,
        owner: &Name,
        zone: &Delegation,
        cfg: &PirCfgRecord,
        walk: &mut Walk,
    ) -> Result<(Vec<Vec<u8>>, SocketAddr, u32), ResolveError> {
        let z = &zone.zone;
        let mut last_err = None;
        for (ns, glue) in &zone.servers {
            let addrs = if glue.is_empty() {
                match self.addresses_of(ns, zone, walk).await {
                    Ok(a) => a,
                    Err(e) => {
                        last_err = Some(e);
                        continue;
                    }
                }
            } else {
                glue.clone()
            };
            for ip in addrs {
                let server = self.upstream.server_addr(ip);
                match self.private_exchange(owner, z, cfg, ip).await {
                    Ok((records, n)) => return Ok((records, server, n)),
                    Err(e) => {
                        debug!(zone = %z, %server, "private lookup failed here: {e}");
                        last_err = Some(e);
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| private_error(z, "no server to ask")))
    }

    async fn private_exchange(
        &self,
        owner: &Name,
        zone: &Name,
        cfg: &PirCfgRecord,
        ip: IpAddr,
    ) -> Result<(Vec<Vec<u8>>, u32), ResolveError> {
        let epoch = cfg.config.epoch;
        let mut session =
            Session::open(&self.upstream, ip, zone, self.config.limits.timeout).await?;
        let server = session.server;
        let refused = |r: Refusal| {
            if r.code == Some(ede::WRONG_EPOCH) {
                ResolveError::EpochChanged { zone: zone.clone() }
            } else {
                private_error(zone, format!("{server} refused: {}", r.text))
            }
        };

        // OPRF: y = F(k, owner) without the DP seeing the owner.
        let input = owner.to_string();
        let (state, blinded) =
            oprf::blind(&[input.as_bytes()]).map_err(|e| private_error(zone, e))?;
        let y = match session.exchange(&Request::Oprf { epoch, blinded }).await? {
            Ok(Response::Oprf(evaluated)) => state
                .finalize(&evaluated, &cfg.config.oprf_public_key)
                .map_err(|e| private_error(zone, e))?
                .into_iter()
                .next()
                .ok_or_else(|| private_error(zone, "empty OPRF response"))?,
            Ok(_) => {
                return Err(private_error(
                    zone,
                    "unexpected response to an OPRF request",
                ))
            }
            Err(r) => return Err(refused(r)),
        };

        let keys = self.pir_keys(zone, cfg)?;
        // A new key goes up before the first query; a known one only when the DP has
        // evicted it (UNKNOWN_KEY below).
        let mut uploaded = false;
        if !keys.sent.load(std::sync::atomic::Ordering::Relaxed) {
            upload(&mut session, epoch, &keys).await?;
            uploaded = true;
        }
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut done = false;
        let mut index = 0u32;
        // Every lookup fetches the zone's published number of probes, present or absent,
        // one mapping or several: the exchanges look the same on the wire.
        let probes = u32::from(cfg.probes.max(1));
        while !done || index < probes {
            let probe = keys.client.probe(&y, index);
            let queries = keys
                .client
                .queries(&probe)
                .map_err(|e| private_error(zone, e))?;
            let mut responses = Vec::with_capacity(2);
            for query in queries {
                let request = Request::Query {
                    epoch,
                    key_id: keys.key_id,
                    shard: probe.shard,
                    query,
                };
                let mut answer = session.exchange(&request).await?;
                // An unknown or evicted key: upload it (again) and ask once more.
                if matches!(&answer, Err(r) if r.code == Some(ede::UNKNOWN_KEY)) && !uploaded {
                    upload(&mut session, epoch, &keys).await?;
                    uploaded = true;
                    answer = session.exchange(&request).await?;
                }
                match answer {
                    Ok(Response::Query(bytes)) => responses.push(bytes),
                    Ok(_) => return Err(private_error(zone, "unexpected response to a PIR query")),
                    Err(r) => return Err(refused(r)),
                }
            }
            if !done {
                match keys
                    .client
                    .open(&probe, [&responses[0], &responses[1]])
                    .map_err(|e| private_error(zone, e))?
                {
                    None if index == 0 => done = true,
                    None => {
                        return Err(private_error(
                            zone,
                            format!("spill slot {index} is missing"),
                        ))
                    }
                    Some(chunk) => {
                        done = !chunk.more_after(index);
                        chunks.push(chunk);
                    }
                }
            }
            index += 1;
            if index as usize > crate::pir::db::MAX_SPILL {
                break;
            }
        }
        let records = if chunks.is_empty() {
            Vec::new()
        } else {
            crate::pir::db::assemble(&chunks).map_err(|e| private_error(zone, e))?
        };
        let exchanges = session.exchanges;
        session.close();
        Ok((records, exchanges))
    }

    /// The PIR keys for (zone, epoch): fresh per zone, so DPs cannot link a client's
    /// lookups across zones; made once and reused.
    fn pir_keys(&self, zone: &Name, cfg: &PirCfgRecord) -> Result<Arc<KeySet>, ResolveError> {
        let id = (zone.clone(), cfg.config.epoch);
        let mut keys = self.pir_keys.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = keys.get(&id) {
            return Ok(k.clone());
        }
        keys.retain(|(z, _), _| z != zone);
        let (client, key_bytes) =
            ZonePirClient::<MulPir>::new(cfg.config.clone()).map_err(|e| private_error(zone, e))?;
        let set = Arc::new(KeySet {
            client,
            key_bytes,
            key_id: rand::random(),
            sent: std::sync::atomic::AtomicBool::new(false),
        });
        keys.insert(id, set.clone());
        Ok(set)
    }
}

/// Uploads the evaluation key in chunks that fit DNS messages.
async fn upload(session: &mut Session<'_>, epoch: u64, keys: &KeySet) -> Result<(), ResolveError> {
    let zone = session.zone.clone();
    let chunks: Vec<&[u8]> = keys.key_bytes.chunks(carrier::KEY_CHUNK).collect();
    let count = u16::try_from(chunks.len())
        .map_err(|_| private_error(&zone, "evaluation key too large"))?;
    for (i, chunk) in chunks.iter().enumerate() {
        let request = Request::Key {
            epoch,
            key_id: keys.key_id,
            index: i as u16,
            count,
            bytes: chunk.to_vec(),
        };
        match session.exchange(&request).await? {
            Ok(Response::Key { complete, .. }) => {
                if i + 1 == chunks.len() && !complete {
                    return Err(private_error(
                        &zone,
                        "the DP did not accept the evaluation key",
                    ));
                }
            }
            Ok(_) => return Err(private_error(&zone, "unexpected response to a key upload")),
            Err(r) => {
                return Err(private_error(
                    &zone,
                    format!("key upload refused: {}", r.text),
                ))
            }
        }
    }
    keys.sent.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}
