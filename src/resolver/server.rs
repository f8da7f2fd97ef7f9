//! `mimi resolver serve`: the resolver behind a DNS listener, so an AP's own systems (or
//! dig) can ask for SSI records and get only verified ones.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{rdata::NULL, DNSClass, Name as HName, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use super::cache::Entry;
use super::wire::WireAnswer;
use super::{LookupResult, NotFound, Outcome, Resolver};
use crate::name::{Name, MAX_WIRE_LEN};
use crate::net::plain;
use crate::record::TYPE_SSI;

/// The largest EDNS payload the listener offers (RFC 6891; 1232 avoids fragmentation).
const UDP_PAYLOAD: u16 = 1232;

/// Answers SSI queries through the resolver; other types are refused.
#[derive(Clone)]
pub struct ResolverHandler(pub Arc<Resolver>);

#[async_trait::async_trait]
impl RequestHandler for ResolverHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        if request.metadata.op_code == OpCode::Notify {
            return super::invalidate::answer_notify(&self.0, request, handle).await;
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let mut edns = Edns::new();
        edns.set_max_payload(
            request
                .edns
                .as_ref()
                .map_or(512, |e| e.max_payload().clamp(512, UDP_PAYLOAD)),
        );
        let mut builder = MessageResponseBuilder::from_message_request(request);
        // An extended error for a failed lookup (RFC 8914), from the error's kind.
        let mut extended: Option<(u16, String)> = None;
        let mut answers: Vec<Record> = Vec::new();
        let mut authority: Vec<Record> = Vec::new();
        metadata.response_code = match request.queries.queries() {
            _ if request.metadata.op_code != OpCode::Query => ResponseCode::NotImp,
            [q] if q.query_class() == DNSClass::IN && u16::from(q.query_type()) == TYPE_SSI => {
                match Name::from_hickory(q.name()) {
                    Err(_) => ResponseCode::FormErr,
                    Ok(owner) => match self.0.lookup_name(&owner, None).await {
                        Ok(result) => {
                            let rcode;
                            (rcode, answers, authority) =
                                response_records(&result, &q.name().clone().into());
                            rcode
                        }
                        // Not ours to answer, like any name outside an authoritative zone.
                        Err(super::ResolveError::OutsideTree { .. }) => ResponseCode::Refused,
                        Err(e) => {
                            warn!(%owner, "lookup failed: {e}");
                            extended = e.extended_error().map(|code| (code, e.to_string()));
                            ResponseCode::ServFail
                        }
                    },
                }
            }
            [_] => ResponseCode::Refused,
            _ => ResponseCode::FormErr,
        };
        let edns = match &extended {
            Some((code, text)) => crate::signed::with_ede(Some(&edns), *code, text),
            None => edns,
        };
        if request.edns.is_some() {
            builder.edns(&edns);
        }
        debug!(src = %request.src(), rcode = %metadata.response_code, answers = answers.len(), "resolver query");
        let response = builder.build(
            metadata,
            answers.iter(),
            authority.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                debug!("response not sent: {e}");
                let mut m = metadata;
                m.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_proto::op::Header {
                    metadata: m,
                    counts: Default::default(),
                })
            }
        }
    }
}

/// The RCODE, answer and authority records the listener sends for a lookup's result: the
/// mappings at `qname`, each with TTL min(the result's, the mapping's); for a denial, the
/// zone's SOA with TTL min(the result's, the SOA's). The general path and the wire form of
/// cached answers (`answer_cached`) both come from here.
fn response_records(
    result: &LookupResult,
    qname: &HName,
) -> (ResponseCode, Vec<Record>, Vec<Record>) {
    match &result.outcome {
        Outcome::Found(mappings) => {
            let answers = mappings
                .iter()
                .map(|m| {
                    Record::from_rdata(
                        qname.clone(),
                        result.ttl.min(m.ttl),
                        RData::Unknown {
                            code: RecordType::from(TYPE_SSI),
                            rdata: NULL::with(m.ssi.to_wire()),
                        },
                    )
                })
                .collect();
            (ResponseCode::NoError, answers, Vec::new())
        }
        Outcome::NotDiscoverable(nf) => {
            // Only the zone's own SOA: a denial whose SOA names another owner is not
            // passed on.
            let apex_soa = result.soa.as_ref().filter(|soa| {
                result
                    .zone
                    .as_ref()
                    .is_some_and(|z| Name::from_hickory(&soa.name).is_ok_and(|n| n == *z))
            });
            let authority = apex_soa
                .map(|soa| {
                    let mut soa = (**soa).clone();
                    soa.ttl = soa.ttl.min(result.ttl);
                    soa
                })
                .into_iter()
                .collect();
            let rcode = match nf {
                NotFound::NoSuchName => ResponseCode::NXDomain,
                _ => ResponseCode::NoError,
            };
            (rcode, Vec::new(), authority)
        }
    }
}

/// True when `name` (wire form) is `apex` or below it.
fn is_under(name: &[u8], apex: &[u8]) -> bool {
    let mut at = 0;
    loop {
        if name.get(at..) == Some(apex) {
            return true;
        }
        match name.get(at) {
            Some(&len) if len > 0 => at += 1 + usize::from(len),
            _ => return false,
        }
    }
}

impl ResolverHandler {
    /// The fast path: a plain SSI query (`crate::net::plain`) for a name with a fresh
    /// cached answer is answered from the answer's wire form, only the TTLs patched, and
    /// counted as the general path counts a cache hit. Anything else - another query, a
    /// name not cached, expired (serve-stale) or invalidated, an answer that needs
    /// truncating over UDP - is declined (false) and goes to the general path.
    fn answer_cached(&self, query: &[u8], udp: bool, out: &mut Vec<u8>) -> bool {
        let mut lower = [0u8; MAX_WIRE_LEN];
        let Some(q) = plain::read(query, &mut lower).filter(|q| q.qtype == TYPE_SSI) else {
            return false;
        };
        let owner = &lower[..q.qname_len];
        let resolver = &self.0;
        if !is_under(owner, resolver.config().apex.as_wire()) {
            return false;
        }
        let Some((wire, left)) = resolver
            .cache()
            .wire_answer(owner, Instant::now(), |entry| self.wire_form(owner, entry))
        else {
            return false;
        };
        // As `Resolver::lookup_name` gives the time left on a hit: whole seconds, down.
        let left = u32::try_from(left.as_secs()).unwrap_or(u32::MAX);
        q.begin(out, false, true, wire.rcode(), wire.counts());
        if !wire.write(out, left) || !q.finish(out, UDP_PAYLOAD, udp, 0) {
            return false;
        }
        resolver.stats.count_cached(wire.counts()[0] > 0);
        true
    }

    /// The wire form of the response to an SSI query for `owner` answered from `entry`,
    /// as the general path would make it.
    fn wire_form(&self, owner: &[u8], entry: &Entry) -> Option<WireAnswer> {
        let resolver = &self.0;
        let name = Name::from_wire_trusted(owner);
        let context = resolver.config().context;
        let mut result = resolver.result_from(
            &name,
            entry.clone(),
            context,
            true,
            false,
            0,
            Instant::now(),
        );
        // Each record's TTL is then its own cap; `WireAnswer::write` lowers it to the time
        // left.
        result.ttl = u32::MAX;
        let (rcode, answers, authority) = response_records(&result, &name.to_hickory());
        WireAnswer::encode(owner, rcode, &answers, &authority)
            .map_err(|e| debug!(%name, "cached answer without a wire form: {e}"))
            .ok()
    }
}

/// A resolver's DNS listeners: UDP through the batched loop of `crate::net::udp`, TCP
/// through the bounded loop of `crate::net::tcp` (connection limit, idle timeout, request
/// size).
pub struct Listener<H: RequestHandler> {
    udp: Vec<crate::net::udp::UdpServer>,
    tcp: Vec<tokio::task::JoinHandle<()>>,
    handler: std::marker::PhantomData<H>,
}

impl<H: RequestHandler> Listener<H> {
    /// Stops accepting TCP connections and waits for the UDP threads to finish (their
    /// sockets are then closed).
    pub async fn shutdown_gracefully(&mut self) -> Result<(), hickory_server::net::NetError> {
        for t in self.tcp.drain(..) {
            t.abort();
            let _ = t.await;
        }
        for u in self.udp.drain(..) {
            u.shutdown().await;
        }
        Ok(())
    }
}

/// Listens on every configured address (UDP and TCP) until the returned listener is shut
/// down; returns the bound addresses. UDP gets the config's `limits.udp_threads`.
pub async fn listen(
    resolver: Arc<Resolver>,
    addrs: &[std::net::SocketAddr],
) -> std::io::Result<(Listener<ResolverHandler>, Vec<std::net::SocketAddr>)> {
    let limits = crate::net::Limits {
        udp_threads: resolver.config().limits.udp_threads,
        ..crate::net::Limits::default()
    };
    listen_with(ResolverHandler(resolver), addrs, limits).await
}

/// Serves `handler` on UDP (`limits.udp_threads` threads) and TCP at each address (port
/// 0: any free port, the same for both), TCP within `limits`; returns the listener and
/// the bound addresses.
pub async fn listen_with<H: crate::net::StreamHandler>(
    handler: H,
    addrs: &[std::net::SocketAddr],
    limits: crate::net::Limits,
) -> std::io::Result<(Listener<H>, Vec<std::net::SocketAddr>)> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let mut bound = Vec::new();
    for &addr in addrs {
        let sockets = crate::net::udp::UdpSockets::bind(addr, limits.udp_threads)?;
        let local = sockets.local_addr();
        let listener = tokio::net::TcpListener::bind(local).await?;
        udp.push(sockets.serve(handler.clone())?);
        tcp.push(tokio::spawn(crate::net::tcp::serve(
            listener,
            handler.clone(),
            limits.clone(),
        )));
        bound.push(local);
    }
    Ok((
        Listener {
            udp,
            tcp,
            handler: std::marker::PhantomData,
        },
        bound,
    ))
}

impl crate::net::StreamHandler for ResolverHandler {
    fn answer_fast(
        &self,
        query: &[u8],
        _src: std::net::SocketAddr,
        protocol: hickory_server::net::xfer::Protocol,
        out: &mut Vec<u8>,
    ) -> bool {
        let udp = protocol == hickory_server::net::xfer::Protocol::Udp;
        self.answer_cached(query, udp, out)
    }
}

/// Serves `handler` over DNS over TLS on each address of `tls` (port 0: any free port),
/// with the stream limits of `limits`; returns the listener tasks (abort them to stop)
/// and the bound addresses. A bad certificate or key fails here, naming the file.
pub async fn listen_tls<H: crate::net::StreamHandler>(
    handler: H,
    tls: &crate::config::TlsSettings,
    limits: crate::net::Limits,
) -> Result<(Vec<tokio::task::JoinHandle<()>>, Vec<std::net::SocketAddr>), ListenError> {
    let config = crate::tls::server_config(&tls.cert, &tls.key, false)?;
    let mut tasks = Vec::new();
    let mut bound = Vec::new();
    for &addr in &tls.listen {
        let bind = |source| ListenError::Bind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
        bound.push(listener.local_addr().map_err(bind)?);
        tasks.push(tokio::spawn(crate::net::tls::serve(
            listener,
            config.clone(),
            handler.clone(),
            limits.clone(),
        )));
    }
    Ok((tasks, bound))
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
