//! The app provider's side of publishing: signed SSI records sent to a zone's primary DP
//! as one DNS UPDATE (RFC 2136) over TCP, signed with the provider's TSIG key.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::name::Name;
use crate::record::{Ssi, TYPE_SSI};
use crate::tsig::{self, TsigKey};

/// How long one UPDATE exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("{dp}: {source}")]
    Io {
        dp: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{dp}: no answer within {}s", TIMEOUT.as_secs())]
    Timeout { dp: SocketAddr },
    #[error("{dp} answered {rcode}{}", .text.as_ref().map(|t| format!(": {t}")).unwrap_or_default())]
    Refused {
        dp: SocketAddr,
        rcode: ResponseCode,
        /// The RFC 8914 extended error: info code and text (names the record and reason).
        ede: Option<u16>,
        text: Option<String>,
    },
    #[error("{dp}: {source}")]
    Tsig {
        dp: SocketAddr,
        #[source]
        source: tsig::TsigError,
    },
    #[error("{dp}: the answer is not a DNS message: {message}")]
    BadAnswer { dp: SocketAddr, message: String },
}

/// Where and as whom to publish.
#[derive(Debug, Clone)]
pub struct Target {
    pub dp: SocketAddr,
    /// The zone holding the owners (its primary is `dp`).
    pub zone: Name,
    pub key: TsigKey,
}

/// One record to publish: owner, TTL, signed SSI (a tombstone withdraws).
#[derive(Debug, Clone)]
pub struct Publication {
    pub owner: Name,
    pub ttl: u32,
    pub ssi: Ssi,
}

/// The UPDATE message for `records`, unsigned.
pub fn update_message(zone: &Name, records: &[Publication]) -> Result<Vec<u8>, String> {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Update);
    let mut q = Query::query(zone.to_hickory(), RecordType::SOA);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    for p in records {
        let rdata = RData::Unknown {
            code: RecordType::from(TYPE_SSI),
            rdata: NULL::with(p.ssi.to_wire()),
        };
        m.authorities
            .push(Record::from_rdata(p.owner.to_hickory(), p.ttl, rdata));
    }
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.set_edns(edns);
    m.to_vec().map_err(|e| e.to_string())
}

/// The extended DNS error of an answer, if any.
pub fn extended_error(m: &Message) -> Option<(u16, String)> {
    use hickory_proto::rr::rdata::opt::EdnsCode;
    use crate::pir::carrier;
    match m.edns.as_ref()?.option(EdnsCode::from(carrier::EDE_OPTION))? {
        EdnsOption::Unknown(_, b) => carrier::parse_ede(b),
        _ => None,
    }
}

/// Sends one UPDATE with `records` and waits for the DP's answer: Ok once the DP has
/// stored them (they are then in its answers), else the RCODE and the DP's reason.
pub async fn publish(target: &Target, records: &[Publication]) -> Result<(), PublishError> {
    let dp = target.dp;
    let io = |source| PublishError::Io { dp, source };
    let mut msg = update_message(&target.zone, records).map_err(|message| PublishError::BadAnswer { dp, message })?;
    let now = unix_now();
    let mac = tsig::sign_request(&mut msg, &target.key, now).map_err(|source| PublishError::Tsig { dp, source })?;
    let exchange = async {
        let mut s = TcpStream::connect(dp).await.map_err(io)?;
        let len = u16::try_from(msg.len()).map_err(|_| PublishError::BadAnswer {
            dp,
            message: "UPDATE larger than 64 KiB: send fewer records".into(),
        })?;
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(&msg);
        s.write_all(&frame).await.map_err(io)?;
        let mut lb = [0u8; 2];
        s.read_exact(&mut lb).await.map_err(io)?;
        let mut answer = vec![0u8; u16::from_be_bytes(lb) as usize];
        s.read_exact(&mut answer).await.map_err(io)?;
        Ok::<_, PublishError>(answer)
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| PublishError::Timeout { dp })??;
    let m = Message::from_vec(&answer).map_err(|e| PublishError::BadAnswer {
        dp,
        message: e.to_string(),
    })?;
    let rcode = m.metadata.response_code;
    let ede = extended_error(&m);
    // A TSIG failure answer is unsigned by design; report the DP's reason then.
    let signed = tsig::verify_response(&answer, &target.key, &mac, unix_now());
    if rcode == ResponseCode::NoError {
        signed.map_err(|source| PublishError::Tsig { dp, source })?;
        return Ok(());
    }
    Err(PublishError::Refused {
        dp,
        rcode,
        ede: ede.as_ref().map(|e| e.0),
        text: ede.map(|e| e.1),
    })
}

use crate::sys::unix_now;
