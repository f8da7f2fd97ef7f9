//! Encrypted replicas out (DESIGN.md section 11, docs/private-lookup.md "Encrypted
//! replicas"): a query for SLOTS (65285) at `_pir.<zone>` over TCP or TLS from an
//! identified provider gets a run of messages holding one shard's slot table, whole or as
//! the buckets changed since the table serial in EDNS option 65002.
//!
//! The buckets are AEAD ciphertexts and random bytes; nothing here sees an identifier.

use std::sync::Arc;

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Record, RecordType};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use thiserror::Error;
use tracing::debug;

use super::access::{Access, Client};
use super::handler::DpHandler;
use super::private::ZonePirState;
use crate::changes::SERIAL_OPTION;
use crate::ede;
use crate::pir::carrier::{self, Request as PirRequest};
use crate::pir::replica::{self, Mode, RunHeader};
use crate::record::TYPE_SLOTS;
use crate::signed::WireError;
use crate::tsig::{TsigKey, Verified};

/// Buckets read under the writer lock at once during a full download: 4 MiB at 1 KiB
/// buckets, so the zone's writer never waits long.
const PIECE_BUCKETS: u32 = 4096;

/// Why a replica request is refused; each maps to one RCODE and extended error.
#[derive(Debug, Error)]
pub enum ReplicaRefusal {
    #[error("no private lookups for this name")]
    NotOffered,
    #[error("replicas are sent over TCP or TLS")]
    Datagram,
    #[error("replicas are for identified providers: sign with a [[client]] TSIG key or present a client certificate")]
    Anonymous,
    #[error("no replica request (EDNS option 65001)")]
    NoRequest,
    #[error("{0}")]
    BadRequest(String),
    #[error("the zone is at epoch {0}: fetch PIRCFG again")]
    WrongEpoch(u64),
}

impl WireError for ReplicaRefusal {
    fn rcode(&self) -> ResponseCode {
        match self {
            ReplicaRefusal::NotOffered | ReplicaRefusal::Datagram | ReplicaRefusal::Anonymous => {
                ResponseCode::Refused
            }
            ReplicaRefusal::NoRequest | ReplicaRefusal::BadRequest(_) => ResponseCode::FormErr,
            ReplicaRefusal::WrongEpoch(_) => ResponseCode::ServFail,
        }
    }

    fn ede_code(&self) -> u16 {
        match self {
            ReplicaRefusal::NotOffered => ede::NOT_OFFERED,
            ReplicaRefusal::Datagram
            | ReplicaRefusal::NoRequest
            | ReplicaRefusal::BadRequest(_) => ede::BAD_REQUEST,
            ReplicaRefusal::Anonymous => ede::PROHIBITED,
            ReplicaRefusal::WrongEpoch(_) => ede::WRONG_EPOCH,
        }
    }
}

/// What a request asks, checked against the zone.
struct Ask {
    shard: u32,
    since: Option<u32>,
}

fn parse(request: &Request, state: &ZonePirState) -> Result<Ask, ReplicaRefusal> {
    let edns = request.edns.as_ref();
    let Some(EdnsOption::Unknown(_, bytes)) =
        edns.and_then(|e| e.option(EdnsCode::from(carrier::EDNS_OPTION)))
    else {
        return Err(ReplicaRefusal::NoRequest);
    };
    let (epoch, shard) = match PirRequest::decode(bytes) {
        Ok(PirRequest::Replica { epoch, shard }) => (epoch, shard),
        Ok(_) => {
            return Err(ReplicaRefusal::BadRequest(
                "type SLOTS takes a replica request".into(),
            ))
        }
        Err(e) => return Err(ReplicaRefusal::BadRequest(e.to_string())),
    };
    let config = state.pir.db.config();
    if epoch != config.epoch {
        return Err(ReplicaRefusal::WrongEpoch(config.epoch));
    }
    if shard >= config.shard_count {
        return Err(ReplicaRefusal::BadRequest(format!(
            "no shard {shard}; the zone has {}",
            config.shard_count
        )));
    }
    let since = match edns.and_then(|e| e.option(EdnsCode::Unknown(SERIAL_OPTION))) {
        None => None,
        Some(EdnsOption::Unknown(_, b)) if b.len() == 4 => {
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        Some(_) => {
            return Err(ReplicaRefusal::BadRequest(
                "the last-serial option (65002) must hold 4 octets".into(),
            ))
        }
    };
    Ok(Ask { shard, since })
}

/// A SLOTS record at `owner`.
fn slots_record(owner: &hickory_proto::rr::Name, rdata: Vec<u8>) -> Record {
    Record::from_rdata(
        owner.clone(),
        0,
        hickory_proto::rr::RData::Unknown {
            code: RecordType::from(TYPE_SLOTS),
            rdata: hickory_proto::rr::rdata::NULL::with(rdata),
        },
    )
}

/// The messages of one run: the start record, records of buckets, the end record.
/// Built lazily so a full download holds one piece of the table at a time.
struct Run {
    state: Arc<ZonePirState>,
    owner: hickory_proto::rr::Name,
    header: RunHeader,
    /// A delta's buckets, read at once; a full run reads pieces as it goes.
    delta: Option<std::vec::IntoIter<(u32, Vec<u8>)>>,
    next_bucket: u32,
    piece: Vec<u8>,
    piece_first: u32,
    started: bool,
    ended: bool,
}

impl Run {
    /// The next message's records, `None` after the end record (or a failed read).
    fn next_message(&mut self) -> Option<Vec<Record>> {
        if self.ended {
            return None;
        }
        let mut records = Vec::with_capacity(3);
        if !self.started {
            self.started = true;
            records.push(slots_record(&self.owner, self.header.encode_start()));
        }
        let size = self.header.bucket_size as usize;
        let per = replica::buckets_per_record(size);
        let bytes = match &mut self.delta {
            Some(items) => {
                let chunk: Vec<(u32, Vec<u8>)> = items.by_ref().take(per).collect();
                (!chunk.is_empty())
                    .then(|| replica::encode_buckets(size, chunk.iter().map(|(i, b)| (*i, &b[..]))))
            }
            None if self.next_bucket < self.header.buckets => {
                let first = self.next_bucket;
                let count = (per as u32).min(self.header.buckets - first);
                let piece_end = self.piece_first + (self.piece.len() / size) as u32;
                if first >= piece_end {
                    let n = PIECE_BUCKETS.min(self.header.buckets - first);
                    let db = &self.state.pir.db;
                    match db.replica_buckets(self.header.shard, first, n) {
                        Ok((_, piece)) => {
                            self.piece = piece;
                            self.piece_first = first;
                        }
                        Err(e) => {
                            debug!(zone = %self.state.origin, "replica download stopped: {e}");
                            self.ended = true;
                            return None;
                        }
                    }
                }
                let off = (first - self.piece_first) as usize * size;
                let count = count.min(((self.piece.len() - off) / size) as u32);
                self.next_bucket += count;
                let piece = &self.piece[off..off + count as usize * size];
                Some(replica::encode_buckets(
                    size,
                    piece
                        .chunks_exact(size)
                        .enumerate()
                        .map(|(i, b)| (first + i as u32, b)),
                ))
            }
            None => None,
        };
        match bytes {
            Some(b) => records.push(slots_record(&self.owner, b)),
            None => {
                self.ended = true;
                records.push(slots_record(&self.owner, self.header.encode_end()));
            }
        }
        Some(records)
    }
}

impl Iterator for Run {
    type Item = Vec<Record>;
    fn next(&mut self) -> Option<Vec<Record>> {
        self.next_message()
    }
}

/// The run answering `ask`: a delta when the log reaches the client's serial and the
/// delta holds at most a quarter of the table (or 64 buckets), else the whole table.
fn plan(
    state: &Arc<ZonePirState>,
    ask: &Ask,
    owner: hickory_proto::rr::Name,
) -> Result<Run, ReplicaRefusal> {
    let db = &state.pir.db;
    let config = db.config();
    let bucket_size = config.layout().bucket_size() as u32;
    let buckets = config.buckets;
    // Read before the table, so the header never claims a zone serial the buckets lack.
    let zone_serial = state.zone_serial();
    let bad = |e: crate::pir::PirError| ReplicaRefusal::BadRequest(e.to_string());
    let delta = match ask.since {
        Some(from) => db
            .replica_delta(ask.shard, from, (buckets as usize / 4).max(64))
            .map_err(bad)?
            .map(|(to, items)| (from, to, items)),
        None => None,
    };
    let header = |mode, from, to, count| RunHeader {
        epoch: config.epoch,
        shard: ask.shard,
        mode,
        from,
        to,
        zone_serial,
        buckets,
        bucket_size,
        count,
    };
    Ok(match delta {
        Some((from, to, items)) => Run {
            header: header(Mode::Delta, from, to, items.len() as u32),
            delta: Some(items.into_iter()),
            state: state.clone(),
            owner,
            next_bucket: 0,
            piece: Vec::new(),
            piece_first: 0,
            started: false,
            ended: false,
        },
        None => {
            // The serial of a full run is the one before its first piece: pieces read later
            // may be newer, which the next delta (from this serial) makes whole.
            let (to, piece) = db
                .replica_buckets(ask.shard, 0, PIECE_BUCKETS.min(buckets))
                .map_err(bad)?;
            Run {
                header: header(Mode::Full, 0, to, buckets),
                delta: None,
                state: state.clone(),
                owner,
                next_bucket: 0,
                piece,
                piece_first: 0,
                started: false,
                ended: false,
            }
        }
    })
}

impl DpHandler {
    /// A SLOTS request at `_pir.<zone>` (`state`: that zone's, if it offers private
    /// lookups).
    pub(super) async fn replica<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        state: Option<Arc<ZonePirState>>,
        (access, client): (&Access, &Client),
        signing: Option<(&TsigKey, &Verified)>,
        mut handle: R,
    ) -> ResponseInfo {
        let checked = match state {
            None => Err(ReplicaRefusal::NotOffered),
            Some(_) if request.protocol().is_datagram() => Err(ReplicaRefusal::Datagram),
            Some(_) if client.provider().is_none() => Err(ReplicaRefusal::Anonymous),
            Some(state) => parse(request, &state).map(|ask| (state, ask)),
        };
        let (state, ask) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                debug!(src = %request.src(), "replica refused: {e}");
                return self.send_error(request, edns, &e, signing, handle).await;
            }
        };
        if let Err(refused) = access.charge(client, 1, std::time::Instant::now()) {
            self.refused(request, client, &refused);
            return self
                .send_error(request, edns, &refused, signing, handle)
                .await;
        }
        let owner = request.queries.queries()[0].name().into();
        let run = match plan(&state, &ask, owner) {
            Ok(run) => run,
            Err(e) => return self.send_error(request, edns, &e, signing, handle).await,
        };
        let h = &run.header;
        debug!(zone = %state.origin, shard = h.shard, mode = ?h.mode, from = h.from, to = h.to, buckets = h.count, "replica run");
        let stats = &self.shared.stats;
        match h.mode {
            Mode::Full => stats
                .replica_full
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            Mode::Delta => stats
                .replica_delta
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        let info = super::run::send_run(request, edns, signing, &mut handle, "replica", run).await;
        stats.count_rcode(ResponseCode::NoError);
        info
    }
}
