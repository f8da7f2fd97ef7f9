//! Answering queries from the zone store (RFC 1034 section 4.3.2, RFC 2308, RFC 6891,
//! RFC 8482) and zone transfers (RFC 5936).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use super::access::{Access, Client};
use super::answer::Outcome;
use super::config::Net;
pub use super::stats::Stats;
use super::zones::ZoneSet;
use crate::dnssec::denial::EDNS_FLAG_CO as EDNS_CO;
use crate::name::MAX_WIRE_LEN;
use crate::signed::WireError;
use crate::tsig::{TsigKey, Verified};

/// State shared by every listener: the zones (swapped whole on reload) and counters.
#[derive(Debug)]
pub struct Shared {
    pub zones: ArcSwap<ZoneSet>,
    /// Who may ask how much (reloaded on SIGHUP, keeping the counts).
    pub access: ArcSwap<super::access::Access>,
    pub stats: Stats,
    pub axfr_allow: Vec<Net>,
    /// Keys a zone transfer must be signed with, when any (reloaded on SIGHUP).
    pub axfr_keys: ArcSwap<Vec<crate::tsig::TsigKey>>,
    /// Our largest UDP payload; the client's offer is honoured up to this.
    pub udp_payload: u16,
    /// The private-lookup service, when offered.
    pub pir: Option<Arc<super::private::PirService>>,
    /// Secret the zones' OPRF keys derive from (with zone and epoch).
    pub pir_secret: [u8; 32],
    /// The app providers' keys mappings are checked against (reloaded on SIGHUP).
    pub trust: ArcSwap<crate::record::TrustStore>,
    pub apex: crate::name::Name,
    /// TSIG keys allowed to UPDATE, each bound to one provider.
    pub updaters: ArcSwap<super::update::Updaters>,
    /// Resolvers told of changes, and their keys (reloaded on SIGHUP).
    pub subscribers: ArcSwap<super::changes::Subscribers>,
    pub update_limits: super::config::UpdateLimits,
    pub update_rate: super::ratelimit::RateLimiter<crate::name::Name>,
    /// Each zone's writer: the one way to change it.
    pub writers:
        std::sync::Mutex<std::collections::HashMap<crate::name::Name, super::writer::WriterHandle>>,
}

impl Shared {
    pub fn writers_lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<crate::name::Name, super::writer::WriterHandle>,
    > {
        self.writers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Answers requests for one connection's client: `peer_pin` is the SPKI pin of the
/// client certificate the connection was opened with (mutual TLS), if any.
#[derive(Clone, Debug)]
pub struct DpHandler {
    pub shared: Arc<Shared>,
    pub(super) peer_pin: Option<Arc<str>>,
}

impl DpHandler {
    pub fn new(shared: Arc<Shared>) -> DpHandler {
        DpHandler {
            shared,
            peer_pin: None,
        }
    }
}

/// Lowercase wire form of a hickory name into `buf`; None if it does not fit.
fn wire_name<'b>(
    name: &hickory_proto::rr::Name,
    buf: &'b mut [u8; MAX_WIRE_LEN],
) -> Option<&'b [u8]> {
    let mut i = 0;
    for label in name.iter() {
        let end = i + 1 + label.len();
        if end >= MAX_WIRE_LEN {
            return None;
        }
        buf[i] = label.len() as u8;
        for (d, s) in buf[i + 1..end].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        i = end;
    }
    buf[i] = 0;
    Some(&buf[..=i])
}

/// What to put in a response.
pub(super) struct Sections<'a> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: &'a [Record],
    pub authority: &'a [Record],
    pub additional: &'a [Record],
}

impl<'a> Sections<'a> {
    pub(super) fn error(rcode: ResponseCode) -> Sections<'static> {
        Sections {
            rcode,
            authoritative: false,
            answers: &[],
            authority: &[],
            additional: &[],
        }
    }
}

impl DpHandler {
    pub(super) async fn send<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        s: Sections<'_>,
        handle: R,
    ) -> ResponseInfo {
        self.send_as(request, edns, s, None, handle).await
    }

    /// Sends the sections, TSIG-signed when `signing` is given (a signed request gets a
    /// signed answer, RFC 8945 section 5.3).
    pub(super) async fn send_as<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        s: Sections<'_>,
        signing: Option<(&TsigKey, &Verified)>,
        mut handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = s.authoritative;
        metadata.response_code = s.rcode;
        metadata.recursion_available = false;
        let build = || {
            let mut builder = MessageResponseBuilder::from_message_request(request);
            if let Some(e) = edns {
                builder.edns(e);
            }
            builder.build(
                metadata,
                s.answers.iter(),
                s.authority.iter(),
                std::iter::empty(),
                s.additional.iter(),
            )
        };
        let mut response = build();
        if let Some((key, verified)) = signing {
            // The MAC covers the message as built; over UDP a truncated answer then
            // fails the client's check, and the client retries over TCP.
            if let Some((sig, _)) = crate::signed::chained_signature(build(), key, verified, None) {
                response.set_signature(sig);
            }
        }
        let stats = &self.shared.stats;
        match handle.send_response(response).await {
            Ok(info) => {
                stats.count_rcode(info.response_code);
                if info.truncation {
                    stats.truncated.fetch_add(1, Relaxed);
                }
                info
            }
            Err(e) => {
                debug!(src = %request.src(), "response not sent: {e}");
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

impl DpHandler {
    /// A private-lookup exchange at `_pir.<zone>`: the request in EDNS option 65001, the
    /// answer as one PIR record, failures as RCODE plus an extended DNS error.
    #[allow(clippy::too_many_arguments)]
    async fn private<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        state: Option<Arc<super::private::ZonePirState>>,
        (access, client): (&Access, &Client),
        signing: Option<(&TsigKey, &Verified)>,
        handle: R,
    ) -> ResponseInfo {
        use crate::pir::carrier::{self, ede};
        use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
        let failure = |rcode: ResponseCode, code: u16, text: &str| {
            let mut e = edns.cloned().unwrap_or_default();
            e.options_mut().insert(EdnsOption::Unknown(
                carrier::EDE_OPTION,
                carrier::ede_bytes(code, text),
            ));
            (rcode, e)
        };
        let outcome = match (state, &self.shared.pir) {
            (Some(state), Some(service)) if !request.protocol().is_datagram() => {
                let option = request
                    .edns
                    .as_ref()
                    .and_then(|e| e.option(EdnsCode::from(carrier::EDNS_OPTION)));
                match option {
                    Some(EdnsOption::Unknown(_, bytes)) => match carrier::Request::decode(bytes) {
                        Ok(req) => {
                            let cost = super::private::lookup_cost(&req);
                            match access.charge(client, cost, std::time::Instant::now()) {
                                Ok(()) => service
                                    .handle(&state, req)
                                    .await
                                    .map_err(|f| failure(f.rcode, f.code, &f.text)),
                                Err(refused) => {
                                    self.refused(request, client, &refused);
                                    Err(failure(
                                        refused.rcode(),
                                        refused.ede_code(),
                                        &refused.to_string(),
                                    ))
                                }
                            }
                        }
                        Err(e) => Err(failure(
                            ResponseCode::FormErr,
                            ede::BAD_REQUEST,
                            &e.to_string(),
                        )),
                    },
                    _ => Err(failure(
                        ResponseCode::FormErr,
                        ede::BAD_REQUEST,
                        "no private-lookup request (EDNS option 65001)",
                    )),
                }
            }
            (Some(_), Some(_)) => Err(failure(
                ResponseCode::Refused,
                ede::BAD_REQUEST,
                "private lookups run over TCP",
            )),
            _ => Err(failure(
                ResponseCode::Refused,
                ede::NOT_OFFERED,
                "no private lookups for this name",
            )),
        };
        match outcome {
            Ok(response) => {
                let record = Record::from_rdata(
                    request.queries.queries()[0].name().into(),
                    0,
                    hickory_proto::rr::RData::Unknown {
                        code: RecordType::from(crate::record::TYPE_PIR),
                        rdata: hickory_proto::rr::rdata::NULL::with(response.encode()),
                    },
                );
                let s = Sections {
                    rcode: ResponseCode::NoError,
                    authoritative: true,
                    answers: std::slice::from_ref(&record),
                    authority: &[],
                    additional: &[],
                };
                self.send_as(request, edns, s, signing, handle).await
            }
            Err((rcode, e)) => {
                self.send_as(request, Some(&e), Sections::error(rcode), signing, handle)
                    .await
            }
        }
    }

    /// Who sent `request`: the provider whose TSIG key signed it, else the provider of
    /// the connection's client certificate, else an anonymous address. A TSIG that
    /// does not verify under the providers' keys is a failure, not anonymity.
    fn client(
        &self,
        request: &Request,
        access: &Access,
    ) -> Result<(Client, Option<Verified>), crate::tsig::TsigFailure> {
        if let Some(verified) = signer(request, access.keys())? {
            if let Some(client) = access.by_key(verified.key) {
                return Ok((client, Some(verified)));
            }
        }
        Ok((
            access.identify(request.src().ip(), self.peer_pin.as_deref()),
            None,
        ))
    }

    pub(super) fn refused(
        &self,
        request: &Request,
        client: &Client,
        refusal: &super::access::AccessRefusal,
    ) {
        self.shared.stats.rate_limited.fetch_add(1, Relaxed);
        debug!(src = %request.src(), provider = ?client.provider().map(|p| p.to_string()), "refused: {refusal}");
    }
}

/// The request's TSIG checked against `keys`: None when it has none (or one too malformed
/// to read, answered as unsigned); a failure the answer must report (RFC 8945 5.2).
fn signer(
    request: &Request,
    keys: &[TsigKey],
) -> Result<Option<Verified>, crate::tsig::TsigFailure> {
    use crate::tsig::TsigFailure;
    if !may_carry_tsig(request) {
        return Ok(None);
    }
    match crate::tsig::verify_request(request.as_slice(), keys, crate::sys::unix_now()) {
        Ok(v) => Ok(Some(v)),
        Err(TsigFailure::Unsigned | TsigFailure::FormErr(_)) => Ok(None),
        Err(f) => Err(f),
    }
}

/// Whether a request has an additional record besides its OPT: only then can it end in a
/// TSIG. Saves looking for one in the common query.
fn may_carry_tsig(request: &Request) -> bool {
    let arcount = request
        .as_slice()
        .get(10..12)
        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
    arcount > u16::from(request.edns.is_some())
}

#[async_trait::async_trait]
impl RequestHandler for DpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        let started = std::time::Instant::now();
        let info = self.handle_message(request, handle).await;
        // Answers only: UPDATEs wait for the journal's sync, transfers for the client.
        let transfer = request
            .queries
            .queries()
            .first()
            .is_some_and(|q| matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR));
        if request.metadata.op_code == OpCode::Query && !transfer {
            self.shared.stats.answer_latency.observe(started.elapsed());
        }
        info
    }
}

impl DpHandler {
    /// Classifies one message and hands it to the path for its kind.
    async fn handle_message<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        let shared = &self.shared;
        shared.stats.queries.fetch_add(1, Relaxed);

        let mut response_edns = Edns::new();
        let edns = match &request.edns {
            Some(req) => {
                let size = req.max_payload().clamp(512, shared.udp_payload.max(512));
                response_edns.set_max_payload(size).set_version(0);
                // RFC 3225: DO is copied; RFC 9824 section 5.1: so is CO, understood here.
                response_edns.set_dnssec_ok(req.flags().dnssec_ok);
                response_edns.flags_mut().z = req.flags().z & EDNS_CO;
                if req.version() > 0 {
                    return self
                        .send(
                            request,
                            Some(&response_edns),
                            Sections::error(ResponseCode::BADVERS),
                            handle,
                        )
                        .await;
                }
                Some(&response_edns)
            }
            None => None,
        };
        if request.metadata.message_type != MessageType::Query {
            return self
                .send(
                    request,
                    edns,
                    Sections::error(ResponseCode::FormErr),
                    handle,
                )
                .await;
        }
        if request.metadata.op_code == OpCode::Update {
            return self.update(request, edns, handle).await;
        }
        if request.metadata.op_code != OpCode::Query {
            return self
                .send(request, edns, Sections::error(ResponseCode::NotImp), handle)
                .await;
        }
        let query = match request.queries.queries() {
            [q] => q,
            _ => {
                return self
                    .send(
                        request,
                        edns,
                        Sections::error(ResponseCode::FormErr),
                        handle,
                    )
                    .await
            }
        };
        let qtype = query.query_type();
        shared
            .stats
            .count_query(u16::from(qtype), request.protocol());
        let mut buf = [0u8; MAX_WIRE_LEN];
        let Some(qname) = wire_name(query.name(), &mut buf) else {
            return self
                .send(
                    request,
                    edns,
                    Sections::error(ResponseCode::FormErr),
                    handle,
                )
                .await;
        };
        if query.query_class() != DNSClass::IN {
            return self
                .send(
                    request,
                    edns,
                    Sections::error(ResponseCode::Refused),
                    handle,
                )
                .await;
        }
        debug!(src = %request.src(), proto = ?request.protocol(), qname = %query.name(), %qtype, "query");

        let zones = shared.zones.load_full();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            let keys = shared.axfr_keys.load_full();
            // A TSIG, when the request has one, must verify under the transfer keys.
            let signer = match signer(request, &keys) {
                Ok(v) => v,
                Err(failure) => {
                    warn!(src = %request.src(), qname = %query.name(), "zone transfer refused: {failure}");
                    let e = BadTsig {
                        what: "zone transfer",
                        reason: failure.to_string(),
                    };
                    return self
                        .send_tsig_failure(request, edns, &e, failure, &keys, handle)
                        .await;
                }
            };
            let address_ok = if shared.axfr_allow.is_empty() {
                !keys.is_empty()
            } else {
                shared
                    .axfr_allow
                    .iter()
                    .any(|n| n.contains(request.src().ip()))
            };
            let allowed = address_ok && (keys.is_empty() || signer.is_some());
            let signing = signer
                .as_ref()
                .and_then(|v| keys.get(v.key).map(|k| (k, v)));
            let zone = zones
                .find(qname)
                .filter(|z| z.store.origin().as_wire() == qname);
            return match zone {
                Some(zone) if allowed && !request.protocol().is_datagram() => {
                    self.transfer(request, &zone, qtype, edns, signing, handle)
                        .await
                }
                // RFC 1995 section 2: over UDP, an IXFR that does not fit is answered
                // with the current SOA, which sends the client to TCP.
                Some(zone) if allowed && qtype == RecordType::IXFR => {
                    let soa = std::slice::from_ref(&zone.soa);
                    let s = Sections {
                        rcode: ResponseCode::NoError,
                        authoritative: true,
                        answers: soa,
                        authority: &[],
                        additional: &[],
                    };
                    self.send(request, edns, s, handle).await
                }
                _ => {
                    if !address_ok {
                        warn!(src = %request.src(), qname = %query.name(), "zone transfer refused: address not in axfr.allow");
                    } else if !allowed {
                        warn!(src = %request.src(), qname = %query.name(), "zone transfer refused: no TSIG with one of axfr.keys");
                    }
                    self.send(
                        request,
                        edns,
                        Sections::error(ResponseCode::Refused),
                        handle,
                    )
                    .await
                }
            };
        }
        if u16::from(qtype) == crate::dnssec::TYPE_NXNAME {
            // RFC 9824 section 3.3: a meta-type, never asked for.
            return self
                .send(
                    request,
                    edns,
                    Sections::error(ResponseCode::FormErr),
                    handle,
                )
                .await;
        }
        if u16::from(qtype) == crate::changes::TYPE_CHANGES {
            return self.changes(request, edns, &zones, qname, handle).await;
        }
        // Standard queries and private lookups count against the client's class.
        let access = shared.access.load();
        let (client, verified) = match self.client(request, &access) {
            Ok(c) => c,
            Err(failure) => {
                debug!(src = %request.src(), qname = %query.name(), "query TSIG refused: {failure}");
                let e = BadTsig {
                    what: "query",
                    reason: failure.to_string(),
                };
                return self
                    .send_tsig_failure(request, edns, &e, failure, access.keys(), handle)
                    .await;
            }
        };
        let signing = verified
            .as_ref()
            .and_then(|v| access.keys().get(v.key).map(|k| (k, v)));
        let private_kind = u16::from(qtype);
        if matches!(
            private_kind,
            crate::record::TYPE_PIR | crate::record::TYPE_SLOTS
        ) {
            let state = zones.pir_at(qname);
            let who = (&**access, &client);
            return if private_kind == crate::record::TYPE_PIR {
                self.private(request, edns, state, who, signing, handle)
                    .await
            } else {
                self.replica(request, edns, state, who, signing, handle)
                    .await
            };
        }
        let now = std::time::Instant::now();
        if let Err(refused) = access.charge(&client, 1, now) {
            self.refused(request, &client, &refused);
            return self
                .send_error(request, edns, &refused, signing, handle)
                .await;
        }
        let zone = zones.find_for(qname, u16::from(qtype));
        let outcome = zone.as_deref().map_or(Outcome::Refused, |z| {
            Outcome::of(z, qname, u16::from(qtype))
        });
        outcome.count(&shared.stats);
        let req_flags = request.edns.as_ref().map(|e| *e.flags());
        let dnssec_ok = req_flags.is_some_and(|f| f.dnssec_ok);
        let compact_ok = req_flags.is_some_and(|f| f.z & EDNS_CO != 0);
        // A signed zone answers DO queries with its signatures and compact denial.
        let signer = zone
            .as_deref()
            .and_then(|z| z.store.signer())
            .filter(|_| dnssec_ok);
        let [answers, authority, additional] = match (zone.as_deref(), signer) {
            (Some(z), Some(s)) => outcome.signed_records(z, s, qname, crate::sys::unix_now()),
            (Some(z), None) => outcome.records(z),
            (None, _) => Default::default(),
        };
        // RFC 9824: NXDOMAIN with a compact denial only for askers that set CO.
        let rcode = match outcome.rcode() {
            ResponseCode::NXDomain if signer.is_some() && !compact_ok => ResponseCode::NoError,
            r => r,
        };
        let sections = Sections {
            rcode,
            authoritative: outcome.authoritative(),
            answers: &answers,
            authority: &authority,
            additional: &additional,
        };
        access.observe(
            &client,
            qname,
            outcome.rcode() == ResponseCode::NXDomain,
            now,
        );
        self.send_as(request, edns, sections, signing, handle).await
    }
}

impl crate::net::StreamHandler for DpHandler {
    fn answer_fast(
        &self,
        query: &[u8],
        src: std::net::SocketAddr,
        protocol: hickory_server::net::xfer::Protocol,
        out: &mut Vec<u8>,
    ) -> bool {
        self.answer_plain(query, src, protocol, out)
    }

    fn malformed(&self) {
        let stats = &self.shared.stats;
        stats.queries.fetch_add(1, Relaxed);
        stats.formerr.fetch_add(1, Relaxed);
    }

    fn handshake_failed(&self) {
        self.shared
            .stats
            .tls_handshake_failures
            .fetch_add(1, Relaxed);
    }

    fn with_client_pin(&self, pin: &str) -> Self {
        DpHandler {
            shared: self.shared.clone(),
            peer_pin: Some(Arc::from(pin)),
        }
    }
}

/// A request whose TSIG did not verify under the keys that may sign it (`what`: a query,
/// a zone transfer): NOTAUTH, extended error 18 (Prohibited).
#[derive(Debug)]
struct BadTsig {
    what: &'static str,
    reason: String,
}

impl std::fmt::Display for BadTsig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.reason)
    }
}

impl crate::signed::WireError for BadTsig {
    fn rcode(&self) -> ResponseCode {
        ResponseCode::NotAuth
    }

    fn ede_code(&self) -> u16 {
        crate::ede::PROHIBITED
    }
}
