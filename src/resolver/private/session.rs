//! One connection to a DP for the exchanges of a private lookup (OPRF, key upload, PIR
//! queries), each a query for type PIR at `_pir.<zone>` with the request in EDNS option
//! 65001; the DP's refusals come back as RCODE plus extended error.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{RData as HRData, RecordType};

use super::super::transport::{Connection, Upstream};
use super::super::ResolveError;
use super::{private_error, KeySet};
use crate::name::Name;
use crate::pir::carrier::{self, Request, Response};
use crate::record::TYPE_PIR;

/// A PIR answer can take seconds on a large shard.
const PIR_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection to a DP for the exchanges of one private lookup.
pub(super) struct Session<'a> {
    upstream: &'a Upstream,
    conn: Option<Connection>,
    ip: IpAddr,
    pub server: SocketAddr,
    qname: Name,
    pub zone: Name,
    pub exchanges: u32,
}

/// A DP's refusal: RCODE and extended-error code and text.
pub(super) struct Refusal {
    pub code: Option<u16>,
    pub text: String,
}

impl<'a> Session<'a> {
    pub(super) async fn open(
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
    pub(super) fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            self.upstream.release(conn);
        }
    }

    /// Sends one request; the DP's refusal comes back as `Ok(Err(..))`.
    pub(super) async fn exchange(
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
        let failed =
            |zone: &Name, server: SocketAddr, e: super::super::transport::ExchangeError| {
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
            let (code, text) = match crate::ede::of_reply(&reply) {
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

/// Uploads the evaluation key in chunks that fit DNS messages.
/// Uploads `keys` unless a DP has already acknowledged them: a new key goes up before the
/// first query, a known one only when the DP has evicted it (UNKNOWN_KEY, then [`upload`]).
/// Returns whether it uploaded.
pub(super) async fn upload_if_new(
    session: &mut Session<'_>,
    epoch: u64,
    keys: &KeySet,
) -> Result<bool, ResolveError> {
    if keys.sent.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(false);
    }
    upload(session, epoch, keys).await?;
    Ok(true)
}

pub(super) async fn upload(
    session: &mut Session<'_>,
    epoch: u64,
    keys: &KeySet,
) -> Result<(), ResolveError> {
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
            // The DP moved on since PIRCFG was read: the caller reads it again.
            Err(r) if r.code == Some(crate::ede::WRONG_EPOCH) => {
                return Err(ResolveError::EpochChanged { zone })
            }
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
