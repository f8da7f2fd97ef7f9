//! The app provider's side of live updates: sign mappings and publish them to a zone's
//! primary DP by DNS UPDATE (RFC 2136) over TCP, authenticated with TSIG (RFC 8945).
//!
//! An UPDATE here has the zone in the zone section (class IN, type SOA), no
//! prerequisites, and in the update section the signed SSI records to add (class IN,
//! type 65280). A withdrawal is an SSI tombstone (flag bit 7) with a higher `seq`, never
//! an RR deletion (DESIGN section 8.1). The DP answers NOERROR once the change is durable,
//! or an RCODE with an RFC 8914 extended DNS error naming the refused record and why.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mimi_discovery::publish::{sign_mapping, Mapping, Publisher, SignOptions};
//! use mimi_discovery::record::ProviderKey;
//! use mimi_discovery::tsig::TsigKey;
//! let key = ProviderKey::load("chat.key")?;
//! let tsig = TsigKey::load("chat.tsig")?;
//! let zone = "5.5.5.1.e164.mimi.arpa.".parse()?;
//! let apex = "mimi.arpa.".parse()?;
//! let mapping = Mapping::new("+1 555 111 2222", "mimi://chat.example/u/alice");
//! let signed = sign_mapping(&mapping, &zone, &apex, &key, &SignOptions::now())?;
//! let mut dp = Publisher::new("127.53.0.4:53".parse()?, zone, tsig);
//! let published = dp.send(&[signed]).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use thiserror::Error;
use tokio::net::TcpStream;
use tracing::debug;

use crate::name::Name;
use crate::record::{format_time, Context, Method, ProviderKey, Ssi, RECORD_VERSION, TYPE_SSI};
use crate::sii::Sii;
use crate::tsig::{self, TsigError, TsigKey, TsigMac};

/// The DNS port, when `--dp` gives none.
pub const DEFAULT_PORT: u16 = 53;
/// TTL of a published record, as `mimi zone add` uses.
pub const DEFAULT_TTL: u32 = 3600;
/// Validity of a mapping before it must be re-verified, as `mimi zone add` uses.
pub const DEFAULT_VALID_DAYS: u32 = 30;
/// Priority of a mapping, as `mimi zone add` uses.
pub const DEFAULT_PRIORITY: u16 = 10;
/// Records per UPDATE for bulk publishing.
pub const DEFAULT_BATCH: usize = 100;
/// How long to wait for the DP (connect, send, answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// EDNS payload size offered (the DP may answer with extended errors only with EDNS).
pub const EDNS_PAYLOAD: u16 = 1232;
/// RFC 8914 extended DNS error option code.
pub const EDE_OPTION: u16 = 15;

pub const RCODE_NOERROR: u16 = 0;
pub const RCODE_FORMERR: u16 = 1;
pub const RCODE_SERVFAIL: u16 = 2;
pub const RCODE_REFUSED: u16 = 5;
pub const RCODE_NOTAUTH: u16 = 9;
pub const RCODE_NOTZONE: u16 = 10;

/// The mnemonic of an RCODE.
pub fn rcode_name(rcode: u16) -> String {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        other => return format!("RCODE{other}"),
    };
    name.to_string()
}

/// One mapping to publish, before signing: as given on the command line or in a CSV row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub sii: String,
    /// The account, a `mimi://` URI whose host is the signing key's provider. For a
    /// withdrawal None means `mimi://<provider>/withdrawn` (a tombstone's URI only has to
    /// pass the host check; it withdraws the provider's mapping at the owner whatever it was).
    pub ssi: Option<String>,
    pub context: Context,
    pub priority: u16,
    pub ttl: u32,
}

impl Mapping {
    /// A mapping with the defaults of `mimi zone add` (context any, priority 10, TTL 3600).
    pub fn new(sii: impl Into<String>, ssi: impl Into<String>) -> Mapping {
        Mapping {
            sii: sii.into(),
            ssi: Some(ssi.into()),
            context: Context::Any,
            priority: DEFAULT_PRIORITY,
            ttl: DEFAULT_TTL,
        }
    }
}

/// Settings of the records one run signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    /// The signing time, milliseconds since the Unix epoch: `seq` unless given, and (in
    /// seconds) `not_before` and `verified_at`.
    pub now_ms: u64,
    /// Sequence number; None: `now_ms`, so every publication of a mapping rises above the
    /// last one without the AP keeping state.
    pub seq: Option<u64>,
    /// `not_after` = now + this many days.
    pub valid_days: u32,
    /// How ownership was verified; None: sms-otp for numbers, email-link for addresses.
    pub method: Option<Method>,
    /// Region for national-format numbers (ISO 3166, e.g. US).
    pub region: Option<String>,
    /// Sign a tombstone (flag bit 7): the mapping is withdrawn.
    pub withdrawn: bool,
}

impl SignOptions {
    /// Defaults, at the current time.
    pub fn now() -> SignOptions {
        SignOptions::at(now_ms())
    }

    /// Defaults, at `now_ms` (milliseconds since the Unix epoch).
    pub fn at(now_ms: u64) -> SignOptions {
        SignOptions {
            now_ms,
            seq: None,
            valid_days: DEFAULT_VALID_DAYS,
            method: None,
            region: None,
            withdrawn: false,
        }
    }

    fn now_secs(&self) -> u64 {
        self.now_ms / 1000
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A signed SSI record ready for an UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMapping {
    pub owner: Name,
    pub ttl: u32,
    pub ssi: Ssi,
}

/// Validates a mapping against the zone and the key and signs it, with the owner name
/// bound in (as `mimi zone add` does): the SII must lie in `zone`, the URI's host must be
/// the key's provider.
pub fn sign_mapping(
    mapping: &Mapping,
    zone: &Name,
    apex: &Name,
    key: &ProviderKey,
    options: &SignOptions,
) -> Result<SignedMapping, PublishError> {
    let invalid = |reason: String| PublishError::Invalid {
        what: mapping.sii.clone(),
        reason,
    };
    let sii = Sii::parse(&mapping.sii, options.region.as_deref())
        .map_err(|e| invalid(format!("invalid identifier: {e}")))?;
    let owner = sii.owner_name(apex).map_err(|e| invalid(e.to_string()))?;
    if !owner.is_subdomain_of(zone) {
        return Err(invalid(format!("{owner} is outside the zone {zone}")));
    }
    let method = options.method.unwrap_or(match sii {
        Sii::Phone { .. } => Method::SmsOtp,
        Sii::Email { .. } => Method::EmailLink,
    });
    let uri = match (&mapping.ssi, options.withdrawn) {
        (Some(uri), _) => uri.clone(),
        (None, true) => tombstone_uri(&key.provider),
        (None, false) => return Err(invalid("no SSI URI given".into())),
    };
    let now = options.now_secs();
    let mut ssi = Ssi {
        version: RECORD_VERSION,
        context: mapping.context,
        withdrawn: options.withdrawn,
        priority: mapping.priority,
        seq: options.seq.unwrap_or(options.now_ms),
        not_before: now,
        not_after: now.saturating_add(u64::from(options.valid_days) * 86400),
        method,
        verified_at: now,
        provider: key.provider.clone(),
        uri,
        key_id: [0; 8],
        signature: [0; 64],
    };
    ssi.check_provider().map_err(|e| {
        invalid(format!(
            "{e} (the key {} belongs to {})",
            hex::encode(key.key_id()),
            key.provider
        ))
    })?;
    ssi.sign(&owner, &key.signing);
    Ok(SignedMapping {
        owner,
        ttl: mapping.ttl,
        ssi,
    })
}

/// The URI of a tombstone when none is given: under the provider, so it passes the
/// host check of every DP and resolver.
pub fn tombstone_uri(provider: &Name) -> String {
    let host = provider.to_string();
    format!("mimi://{}/withdrawn", host.trim_end_matches('.'))
}

/// Encodes an UPDATE for `zone` adding `records` (no prerequisites), with an EDNS OPT
/// record so the DP can answer with extended errors. Not yet signed.
pub fn build_update(
    zone: &Name,
    records: &[SignedMapping],
    id: u16,
) -> Result<Vec<u8>, PublishError> {
    let updates: Vec<Record> = records
        .iter()
        .map(|r| {
            let mut record = Record::from_rdata(
                r.owner.to_hickory(),
                r.ttl,
                RData::Unknown {
                    code: RecordType::from(TYPE_SSI),
                    rdata: NULL::with(r.ssi.to_wire()),
                },
            );
            record.dns_class = DNSClass::IN;
            record
        })
        .collect();
    build_raw_update(zone, &updates, id)
}

/// Encodes an UPDATE for `zone` with `updates` as its update section (RFC 2136 section
/// 2.5: additions of class IN, deletions of class ANY or NONE), with an EDNS OPT record.
pub fn build_raw_update(zone: &Name, updates: &[Record], id: u16) -> Result<Vec<u8>, PublishError> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Update);
    let mut zone_q = Query::query(zone.to_hickory(), RecordType::SOA);
    zone_q.set_query_class(DNSClass::IN);
    msg.add_query(zone_q);
    for r in updates {
        // RFC 2136: the update section is the authority section.
        msg.add_authority(r.clone());
    }
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    msg.set_edns(edns);
    msg.to_vec()
        .map_err(|e| PublishError::Encode(e.to_string()))
}

/// Builds and signs an UPDATE; returns its bytes and the MAC the answer must cover.
pub fn signed_update(
    zone: &Name,
    records: &[SignedMapping],
    tsig_key: &TsigKey,
    id: u16,
    now: u64,
) -> Result<(Vec<u8>, TsigMac), PublishError> {
    let mut bytes = build_update(zone, records, id)?;
    let mac = tsig::sign_request(&mut bytes, tsig_key, now).map_err(PublishError::Sign)?;
    Ok((bytes, mac))
}

/// An RFC 8914 extended DNS error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedError {
    pub code: u16,
    pub text: String,
}

impl ExtendedError {
    /// The registered name of the INFO-CODE, when it has one.
    pub fn code_name(&self) -> Option<&'static str> {
        Some(match self.code {
            0 => "Other Error",
            1 => "Unsupported DNSKEY Algorithm",
            2 => "Unsupported DS Digest Type",
            3 => "Stale Answer",
            4 => "Forged Answer",
            5 => "DNSSEC Indeterminate",
            6 => "DNSSEC Bogus",
            7 => "Signature Expired",
            8 => "Signature Not Yet Valid",
            9 => "DNSKEY Missing",
            10 => "RRSIGs Missing",
            11 => "No Zone Key Bit Set",
            12 => "NSEC Missing",
            13 => "Cached Error",
            14 => "Not Ready",
            15 => "Blocked",
            16 => "Censored",
            17 => "Filtered",
            18 => "Prohibited",
            19 => "Stale NXDomain Answer",
            20 => "Not Authoritative",
            21 => "Not Supported",
            22 => "No Reachable Authority",
            23 => "Network Error",
            24 => "Invalid Data",
            _ => return None,
        })
    }

    fn parse(bytes: &[u8]) -> Option<ExtendedError> {
        let code = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
        // The text is UTF-8 without a terminator (RFC 8914 section 2); be lenient.
        let text = String::from_utf8_lossy(&bytes[2..])
            .trim_end_matches('\0')
            .to_string();
        Some(ExtendedError { code, text })
    }
}

impl fmt::Display for ExtendedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code_name() {
            Some(name) => write!(f, "{} (EDE {} {name})", self.text, self.code),
            None => write!(f, "{} (EDE {})", self.text, self.code),
        }
    }
}

/// A DP's answer other than NOERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rcode: u16,
    /// Every extended error of the answer (usually one, naming the record and the reason).
    pub extended: Vec<ExtendedError>,
    /// Set when the answer itself did not verify (it is then unauthenticated), or carried
    /// a TSIG error: why.
    pub tsig: Option<TsigError>,
}

impl Refusal {
    /// True when the refusal is about the records (so a smaller batch may succeed), not
    /// about the key, the connection or the DP's storage.
    pub fn is_per_record(&self) -> bool {
        !matches!(self.rcode, RCODE_NOTAUTH | RCODE_SERVFAIL) && self.tsig.is_none()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rcode_name(self.rcode))?;
        let mut sep = ": ";
        for e in &self.extended {
            write!(f, "{sep}{e}")?;
            sep = "; ";
        }
        if self.extended.is_empty() {
            f.write_str(" (no extended error)")?;
        }
        if let Some(t) = &self.tsig {
            write!(f, " [{t}]")?;
        }
        Ok(())
    }
}

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub zone: Name,
    pub server: SocketAddr,
    pub records: Vec<PublishedRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRecord {
    pub owner: Name,
    pub provider: Name,
    pub uri: String,
    pub seq: u64,
    pub not_after: u64,
    pub withdrawn: bool,
}

impl fmt::Display for PublishedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.withdrawn {
            write!(f, "{} withdrawn for {}", self.owner, self.provider)?;
        } else {
            write!(f, "{} -> {}", self.owner, self.uri)?;
        }
        write!(
            f,
            " (seq {}, until {})",
            self.seq,
            format_time(self.not_after)
        )
    }
}

#[derive(Debug, Error)]
pub enum PublishError {
    /// The DP answered with an error RCODE.
    #[error("the DP refused the update: {0}")]
    Refused(Refusal),
    /// The DP said NOERROR but its answer failed TSIG verification: the update may or may
    /// not have been applied.
    #[error("the DP's NOERROR answer failed TSIG verification ({0}); the update may or may not have been applied")]
    Unverified(TsigError),
    #[error("{server}: {source}")]
    Io {
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{server}: no answer within {} s", .after.as_secs_f64())]
    Timeout { server: SocketAddr, after: Duration },
    #[error("{server}: unusable answer: {reason}")]
    Malformed { server: SocketAddr, reason: String },
    /// A mapping that cannot be signed or published (before anything is sent).
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("cannot encode the UPDATE: {0}")]
    Encode(String),
    #[error("cannot sign the UPDATE: {0}")]
    Sign(TsigError),
    #[error("nothing to publish")]
    Empty,
}

impl PublishError {
    /// True when the DP answered and refused (exit code 1 in the CLI), false for local
    /// and transport failures (exit code 2).
    pub fn is_refusal(&self) -> bool {
        matches!(self, PublishError::Refused(_))
    }
}

/// A connection to a zone's primary DP, sending signed UPDATEs one at a time over TCP
/// (RFC 2136 section 7.8: TCP gives the requestor an accurate RCODE; an UPDATE of many
/// records does not fit UDP). The connection is reused and re-opened when the DP closed it.
pub struct Publisher {
    pub server: SocketAddr,
    pub zone: Name,
    tsig: TsigKey,
    timeout: Duration,
    conn: Option<TcpStream>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("tsig", &self.tsig)
            .finish_non_exhaustive()
    }
}

/// Outcome of [`Publisher::send_batched`], by index into the records given.
#[derive(Debug, Default)]
pub struct BatchReport {
    pub accepted: Vec<usize>,
    /// Records refused on their own (in an UPDATE of one), with the DP's answer.
    pub refused: Vec<(usize, Refusal)>,
    /// A failure that stopped the run (I/O, TSIG, the DP's storage) and the records not
    /// published because of it.
    pub stopped: Option<(PublishError, Vec<usize>)>,
    /// UPDATE messages sent.
    pub updates: usize,
}

impl Publisher {
    pub fn new(server: SocketAddr, zone: Name, tsig: TsigKey) -> Publisher {
        Publisher {
            server,
            zone,
            tsig,
            timeout: DEFAULT_TIMEOUT,
            conn: None,
        }
    }

    /// Bound on each exchange (connect, send, answer).
    pub fn with_timeout(mut self, timeout: Duration) -> Publisher {
        self.timeout = timeout;
        self
    }

    /// Publishes `records` in one UPDATE, which the DP applies whole or not at all.
    pub async fn send(&mut self, records: &[SignedMapping]) -> Result<Published, PublishError> {
        if records.is_empty() {
            return Err(PublishError::Empty);
        }
        let id: u16 = rand::random();
        let request = build_update(&self.zone, records, id)?;
        self.send_signed(request, id).await?;
        Ok(Published {
            zone: self.zone.clone(),
            server: self.server,
            records: records
                .iter()
                .map(|r| PublishedRecord {
                    owner: r.owner.clone(),
                    provider: r.ssi.provider.clone(),
                    uri: r.ssi.uri.clone(),
                    seq: r.ssi.seq,
                    not_after: r.ssi.not_after,
                    withdrawn: r.ssi.withdrawn,
                })
                .collect(),
        })
    }

    /// Sends one UPDATE whose update section is `updates` as they are (the operator's
    /// releases and delegations, `crate::operate`); Ok once the DP answered NOERROR.
    pub async fn send_raw(&mut self, updates: &[Record]) -> Result<(), PublishError> {
        if updates.is_empty() {
            return Err(PublishError::Empty);
        }
        let id: u16 = rand::random();
        let request = build_raw_update(&self.zone, updates, id)?;
        self.send_signed(request, id).await
    }

    async fn send_signed(&mut self, mut request: Vec<u8>, id: u16) -> Result<(), PublishError> {
        let mac = tsig::sign_request(&mut request, &self.tsig, now_ms() / 1000)
            .map_err(PublishError::Sign)?;
        debug!(
            server = %self.server,
            zone = %self.zone,
            bytes = request.len(),
            "sending UPDATE"
        );
        let reply = self.exchange(&request).await?;
        let outcome = self.judge(&reply, id, &mac);
        debug!(server = %self.server, ok = outcome.is_ok(), "UPDATE answered");
        outcome
    }

    /// Publishes many records, `batch` per UPDATE. An UPDATE is atomic, so when a batch
    /// is refused for its records, its halves are retried (down to single records) and
    /// only the records refused on their own are reported. `progress` gets the number of
    /// records settled so far.
    pub async fn send_batched(
        &mut self,
        records: &[SignedMapping],
        batch: usize,
        mut progress: impl FnMut(usize),
    ) -> BatchReport {
        let batch = batch.max(1);
        let mut report = BatchReport::default();
        // Work list of index ranges, in order; refused ranges are split in place.
        let mut pending: Vec<std::ops::Range<usize>> = (0..records.len())
            .step_by(batch)
            .map(|s| s..(s + batch).min(records.len()))
            .rev()
            .collect();
        let mut settled = 0;
        while let Some(range) = pending.pop() {
            report.updates += 1;
            match self.send(&records[range.clone()]).await {
                Ok(_) => {
                    settled += range.len();
                    report.accepted.extend(range);
                }
                Err(e) => {
                    let splittable = match &e {
                        PublishError::Refused(r) => r.is_per_record(),
                        PublishError::Sign(TsigError::TooLong) => true,
                        _ => false,
                    };
                    if splittable && range.len() > 1 {
                        debug!(len = range.len(), "batch refused: retrying its halves");
                        let mid = range.start + range.len() / 2;
                        pending.push(mid..range.end);
                        pending.push(range.start..mid);
                        continue;
                    }
                    match e {
                        PublishError::Refused(r) if r.is_per_record() => {
                            settled += 1;
                            report.refused.push((range.start, r));
                        }
                        e => {
                            let mut rest: Vec<usize> = range.collect();
                            while let Some(r) = pending.pop() {
                                rest.extend(r);
                            }
                            report.stopped = Some((e, rest));
                            progress(settled);
                            return report;
                        }
                    }
                }
            }
            progress(settled);
        }
        report
    }

    /// Sends one message and reads one answer; a reused connection the DP has closed is
    /// re-opened once.
    async fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, PublishError> {
        let reused = self.conn.is_some();
        match self.exchange_once(request).await {
            Err(PublishError::Io { .. }) if reused => {
                debug!(server = %self.server, "connection closed by the DP: reconnecting");
                self.conn = None;
                self.exchange_once(request).await
            }
            other => other,
        }
    }

    async fn exchange_once(&mut self, request: &[u8]) -> Result<Vec<u8>, PublishError> {
        let (server, wait) = (self.server, self.timeout);
        let io = |source| PublishError::Io { server, source };
        let result = tokio::time::timeout(wait, async {
            let stream = match self.conn.as_mut() {
                Some(stream) => stream,
                None => {
                    let stream = TcpStream::connect(server).await.map_err(io)?;
                    let _ = stream.set_nodelay(true);
                    self.conn.insert(stream)
                }
            };
            if u16::try_from(request.len()).is_err() {
                return Err(PublishError::Sign(TsigError::TooLong));
            }
            crate::wire::write_frame(stream, request)
                .await
                .map_err(io)?;
            crate::wire::read_frame(stream).await.map_err(io)
        })
        .await;
        match result {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                // A late answer on this connection would be mistaken for the next one's.
                self.conn = None;
                Err(PublishError::Timeout {
                    server,
                    after: wait,
                })
            }
        }
    }

    /// Turns the DP's answer into the outcome: NOERROR only with a verified TSIG.
    fn judge(&self, reply: &[u8], id: u16, mac: &TsigMac) -> Result<(), PublishError> {
        let malformed = |reason: String| PublishError::Malformed {
            server: self.server,
            reason,
        };
        if reply.len() < 12 || u16::from_be_bytes([reply[0], reply[1]]) != id {
            return Err(malformed("not an answer to our UPDATE (wrong ID)".into()));
        }
        let verified = tsig::verify_response(reply, &self.tsig, mac, now_ms() / 1000);
        let unsigned = tsig::unsigned_message(reply).map_err(|e| malformed(e.to_string()))?;
        let msg = Message::from_vec(&unsigned).map_err(|e| malformed(e.to_string()))?;
        if msg.metadata.message_type != MessageType::Response
            || msg.metadata.op_code != OpCode::Update
        {
            return Err(malformed("not a response to an UPDATE".into()));
        }
        let rcode = u16::from(msg.metadata.response_code);
        let extended = msg
            .edns
            .as_ref()
            .map(|e| {
                e.options()
                    .get_all(EdnsCode::from(EDE_OPTION))
                    .into_iter()
                    .filter_map(|o| match o {
                        EdnsOption::Unknown(_, bytes) => ExtendedError::parse(bytes),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        match (rcode, verified) {
            (RCODE_NOERROR, Ok(_)) => Ok(()),
            (RCODE_NOERROR, Err(e)) => Err(PublishError::Unverified(e)),
            (rcode, verified) => Err(PublishError::Refused(Refusal {
                rcode,
                extended,
                tsig: verified.err(),
            })),
        }
    }
}

/// Publishes `records` in one UPDATE to `server` over a new connection: the whole API in
/// one call.
pub async fn publish(
    server: SocketAddr,
    zone: &Name,
    tsig_key: &TsigKey,
    records: &[SignedMapping],
) -> Result<Published, PublishError> {
    Publisher::new(server, zone.clone(), tsig_key.clone())
        .send(records)
        .await
}

/// Reads the CSV of `mimi zone import`: a header row starting `sii,ssi`, then optional
/// `context,priority,ttl` columns (empty: any, 10, 3600, or the `defaults` given). Returns
/// each row with its line number. Any bad row is an error naming its line.
pub fn read_csv(path: &Path, defaults: &Mapping) -> Result<Vec<(usize, Mapping)>, PublishError> {
    let file = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| PublishError::Invalid {
        what: file.clone(),
        reason: format!("cannot read: {e}"),
    })?;
    parse_csv(&text, &file, defaults)
}

#[derive(serde::Deserialize)]
struct CsvRow {
    sii: String,
    ssi: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    priority: Option<u16>,
    #[serde(default)]
    ttl: Option<u32>,
}

/// [`read_csv`] on bytes; `file` names them in errors.
pub fn parse_csv(
    text: &[u8],
    file: &str,
    defaults: &Mapping,
) -> Result<Vec<(usize, Mapping)>, PublishError> {
    let at = |line: usize, reason: String| PublishError::Invalid {
        what: format!("{file}:{line}"),
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text);
    // The reader's line count skips blank lines; count newlines up to each record's
    // byte offset instead (as `mimi zone import` does).
    let (mut counted_to, mut line_at) = (0usize, 1usize);
    let mut line_of = |byte: usize| {
        let mut byte = byte.min(text.len());
        while matches!(text.get(byte), Some(b'\n' | b'\r')) {
            byte += 1;
        }
        line_at += text[counted_to..byte]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted_to = byte;
        line_at
    };
    let headers = reader
        .headers()
        .map_err(|e| at(1, format!("cannot read the header row: {e}")))?
        .clone();
    if headers.get(0) != Some("sii") || headers.get(1) != Some("ssi") {
        return Err(at(
            1,
            "the header row must start with sii,ssi (then optional context,priority,ttl)".into(),
        ));
    }
    let mut rows = Vec::new();
    for result in reader.records() {
        let record = result.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            at(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| line_of(p.byte() as usize));
        let row: CsvRow = record
            .deserialize(Some(&headers))
            .map_err(|e| at(line, e.to_string()))?;
        let context = match row.context.as_deref() {
            None | Some("") => defaults.context,
            Some(c) => c
                .parse()
                .map_err(|e| at(line, format!("context {c:?}: {e}")))?,
        };
        rows.push((
            line,
            Mapping {
                sii: row.sii,
                ssi: Some(row.ssi),
                context,
                priority: row.priority.unwrap_or(defaults.priority),
                ttl: row.ttl.unwrap_or(defaults.ttl),
            },
        ));
    }
    Ok(rows)
}
