//! Answers sent as a run of messages over one stream (AXFR, IXFR, SLOTS): each message
//! signed in a chain when the request was signed (RFC 8945 section 5.3.1).

use std::borrow::Borrow;

use hickory_proto::op::{Edns, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::warn;

use crate::tsig::{TsigKey, TsigMac, Verified};

/// Sends each item of `messages` as one answer message, in order, stopping at the first
/// that cannot be signed or sent. Returns the last message's info (SERVFAIL's when none
/// went out).
pub async fn send_run<R, M, I>(
    request: &Request,
    edns: Option<&Edns>,
    signing: Option<(&TsigKey, &Verified)>,
    handle: &mut R,
    what: &str,
    messages: I,
) -> ResponseInfo
where
    R: ResponseHandler,
    M: Borrow<Record> + Sync,
    I: IntoIterator<Item = Vec<M>>,
{
    let mut last = None;
    // The MAC of the previous message, to chain the next one's to.
    let mut prior: Option<TsigMac> = None;
    for chunk in messages {
        let build = || {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.authoritative = true;
            let mut builder = MessageResponseBuilder::from_message_request(request);
            if let Some(e) = edns {
                builder.edns(e);
            }
            builder.build(
                metadata,
                chunk.iter().map(Borrow::borrow),
                std::iter::empty(),
                std::iter::empty(),
                std::iter::empty(),
            )
        };
        let mut response = build();
        if let Some((key, verified)) = signing {
            match crate::signed::chained_signature(build(), key, verified, prior.as_ref()) {
                Some((sig, mac)) => {
                    response.set_signature(sig);
                    prior = Some(mac);
                }
                None => {
                    warn!(src = %request.src(), "{what} aborted: the message could not be signed");
                    break;
                }
            }
        }
        match handle.send_response(response).await {
            Ok(info) => last = Some(info),
            Err(e) => {
                warn!(src = %request.src(), "{what} aborted: {e}");
                break;
            }
        }
    }
    last.unwrap_or_else(|| {
        let mut m = Metadata::response_from_request(&request.metadata);
        m.response_code = ResponseCode::ServFail;
        ResponseInfo::from(hickory_proto::op::Header {
            metadata: m,
            counts: Default::default(),
        })
    })
}
