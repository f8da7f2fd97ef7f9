//! Answers that may carry a TSIG signature (RFC 8945), for every server here that
//! answers through hickory: the DP's UPDATE and CHANGES answers, a resolver's NOTIFY
//! acknowledgements, and TSIG failures. hickory writes the message; the MAC is computed
//! over exactly the bytes hickory will write without the TSIG RR, then the TSIG RR is
//! attached as the last additional record.

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::rdata::tsig::TSIG;
use hickory_proto::rr::{DNSClass, Record};
use hickory_server::net::NetError;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};

use crate::name::Name;
use crate::sys::unix_now;
use crate::tsig::{TsigFailure, TsigKey, Verified};

/// An error answered on the wire: one RCODE and one RFC 8914 extended error, both
/// decided by the error's type, with its text as the extra text.
pub trait WireError: std::fmt::Display + Sync {
    fn rcode(&self) -> ResponseCode;
    fn ede_code(&self) -> u16;
}

/// Reads back the TSIG RR a signer appended at `start` of `bytes`, as hickory's type, so
/// the response can be sent through hickory's response handlers with it as the last
/// additional record.
fn tsig_record_at(bytes: &[u8], start: usize) -> Option<Box<Record<TSIG>>> {
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    let tail = bytes.get(start..)?;
    let (owner, used) = Name::from_wire(tail).ok()?;
    let rest = tail.get(used + 10..)?;
    let (alg, used) = Name::from_wire(rest).ok()?;
    let f = rest.get(used..)?;
    let time = f
        .get(..6)?
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let fudge = u16::from_be_bytes([*f.get(6)?, *f.get(7)?]);
    let mac_len = u16::from_be_bytes([*f.get(8)?, *f.get(9)?]) as usize;
    let mac = f.get(10..10 + mac_len)?.to_vec();
    let f = f.get(10 + mac_len..)?;
    let oid = u16::from_be_bytes([*f.first()?, *f.get(1)?]);
    let error = u16::from_be_bytes([*f.get(2)?, *f.get(3)?]);
    let other_len = u16::from_be_bytes([*f.get(4)?, *f.get(5)?]) as usize;
    let other = f.get(6..6 + other_len)?.to_vec();
    let algorithm = if alg.to_string().eq_ignore_ascii_case("hmac-sha256.") {
        TsigAlgorithm::HmacSha256
    } else {
        return None;
    };
    let tsig = TSIG::new(
        algorithm,
        time,
        fudge,
        mac,
        oid,
        (error != 0).then(|| error.into()),
        other,
    );
    let mut record = Record::from_rdata(owner.to_hickory(), 0, tsig);
    record.dns_class = DNSClass::ANY;
    Some(Box::new(record))
}

/// The EDNS of an answer carrying an RFC 8914 extended error.
pub fn with_ede(edns: Option<&Edns>, code: u16, text: &str) -> Edns {
    use crate::pir::carrier;
    use hickory_proto::rr::rdata::opt::EdnsOption;
    let mut e = edns.cloned().unwrap_or_default();
    e.options_mut().insert(EdnsOption::Unknown(
        carrier::EDE_OPTION,
        carrier::ede_bytes(code, text),
    ));
    e
}

type Response<'q> = MessageResponse<
    'q,
    'q,
    std::slice::Iter<'q, Record>,
    std::iter::Empty<&'q Record>,
    std::iter::Empty<&'q Record>,
    std::iter::Empty<&'q Record>,
>;

fn response<'q>(
    request: &'q Request,
    edns: Option<&'q Edns>,
    rcode: ResponseCode,
    answers: &'q [Record],
) -> Response<'q> {
    let mut metadata = hickory_proto::op::Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    metadata.recursion_available = false;
    metadata.authoritative = !answers.is_empty();
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(e) = edns {
        builder.edns(e);
    }
    builder.build(
        metadata,
        answers.iter(),
        std::iter::empty(),
        std::iter::empty(),
        std::iter::empty(),
    )
}

/// The answer's bytes as hickory will write them, before any TSIG.
fn encode(
    request: &Request,
    edns: Option<&Edns>,
    rcode: ResponseCode,
    answers: &[Record],
) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(128);
    let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
    encoder.set_max_size(u16::MAX);
    response(request, edns, rcode, answers)
        .destructive_emit(&mut encoder)
        .ok()?;
    Some(bytes)
}

/// The TSIG RR of an answer signed with `key` for the `verified` request.
pub fn signature(
    request: &Request,
    edns: Option<&Edns>,
    rcode: ResponseCode,
    answers: &[Record],
    key: &TsigKey,
    verified: &Verified,
) -> Option<Box<Record<TSIG>>> {
    let mut bytes = encode(request, edns, rcode, answers)?;
    let start = bytes.len();
    crate::tsig::sign_response(&mut bytes, key, &verified.request_mac, unix_now(), 0).ok()?;
    tsig_record_at(&bytes, start)
}

/// The TSIG RR of one message of a multi-message answer (AXFR, IXFR): the first signed
/// for the `verified` request, each later one chained to the previous message's MAC
/// (`prior`; RFC 8945 section 5.3.1). Returns the RR and this message's MAC. `response`
/// must be built exactly as the message that will be sent.
pub fn chained_signature<'q, A, N, S, D>(
    response: MessageResponse<'q, 'q, A, N, S, D>,
    key: &TsigKey,
    verified: &Verified,
    prior: Option<&crate::tsig::TsigMac>,
) -> Option<(Box<Record<TSIG>>, crate::tsig::TsigMac)>
where
    A: Iterator<Item = &'q Record> + Send + 'q,
    N: Iterator<Item = &'q Record> + Send + 'q,
    S: Iterator<Item = &'q Record> + Send + 'q,
    D: Iterator<Item = &'q Record> + Send + 'q,
{
    let mut bytes = Vec::with_capacity(4096);
    let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
    encoder.set_max_size(u16::MAX);
    response.destructive_emit(&mut encoder).ok()?;
    let start = bytes.len();
    let mac = match prior {
        None => crate::tsig::sign_response(&mut bytes, key, &verified.request_mac, unix_now(), 0),
        Some(p) => crate::tsig::sign_response_continuation(&mut bytes, key, p, unix_now()),
    }
    .ok()?;
    Some((tsig_record_at(&bytes, start)?, mac))
}

/// The TSIG RR answering a TSIG failure: unsigned for BADKEY and BADSIG, signed for
/// BADTIME (RFC 8945 section 5.2).
pub fn failure_signature(
    request: &Request,
    edns: Option<&Edns>,
    rcode: ResponseCode,
    failure: &TsigFailure,
    keys: &[TsigKey],
) -> Option<Box<Record<TSIG>>> {
    let mut bytes = encode(request, edns, rcode, &[])?;
    let start = bytes.len();
    failure
        .append_answer_tsig(&mut bytes, keys, unix_now())
        .ok()?;
    tsig_record_at(&bytes, start)
}

/// Sends the answer, with `signature` as its last record when given.
pub async fn send<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    rcode: ResponseCode,
    answers: &[Record],
    signature: Option<Box<Record<TSIG>>>,
    mut handle: R,
) -> Result<ResponseInfo, NetError> {
    let mut response = response(request, edns, rcode, answers);
    if let Some(sig) = signature {
        response.set_signature(sig);
    }
    handle.send_response(response).await
}

/// An error answered on the wire, signed when `signing` is given.
pub async fn send_error<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    e: &dyn WireError,
    signing: Option<(&TsigKey, &Verified)>,
    handle: R,
) -> Result<ResponseInfo, NetError> {
    let edns = with_ede(edns, e.ede_code(), &e.to_string());
    let sig = signing.and_then(|(k, v)| signature(request, Some(&edns), e.rcode(), &[], k, v));
    send(request, Some(&edns), e.rcode(), &[], sig, handle).await
}

/// A TSIG failure answered with the error's RCODE and extended error.
pub async fn send_tsig_failure<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    e: &dyn WireError,
    failure: &TsigFailure,
    keys: &[TsigKey],
    handle: R,
) -> Result<ResponseInfo, NetError> {
    let edns = with_ede(edns, e.ede_code(), &e.to_string());
    let sig = failure_signature(request, Some(&edns), e.rcode(), failure, keys);
    send(request, Some(&edns), e.rcode(), &[], sig, handle).await
}

/// What a handler reports when its answer could not be written.
pub fn unsent(request: &Request) -> ResponseInfo {
    let mut m = hickory_proto::op::Metadata::response_from_request(&request.metadata);
    m.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_proto::op::Header {
        metadata: m,
        counts: Default::default(),
    })
}
