//! The DP's signed answers: the shared writer in `crate::signed`, plus the counters.

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::net::NetError;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use tracing::debug;

use super::handler::DpHandler;
use crate::signed;
pub use crate::signed::WireError;
use crate::tsig::{TsigFailure, TsigKey, Verified};

impl DpHandler {
    fn sent(&self, request: &Request, r: Result<ResponseInfo, NetError>) -> ResponseInfo {
        match r {
            Ok(info) => {
                self.shared.stats.count_rcode(info.response_code);
                info
            }
            Err(e) => {
                debug!(src = %request.src(), "response not sent: {e}");
                signed::unsent(request)
            }
        }
    }

    /// Sends an answer (records in the answer section only), TSIG-signed when `signing`
    /// is given (RFC 8945 section 5.3: a signed request gets a signed answer).
    pub(super) async fn send_signed<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        rcode: ResponseCode,
        answers: &[Record],
        signing: Option<(&TsigKey, &Verified)>,
        handle: R,
    ) -> ResponseInfo {
        let sig = signing.and_then(|(k, v)| signed::signature(request, edns, rcode, answers, k, v));
        let r = signed::send(request, edns, rcode, answers, sig, handle).await;
        self.sent(request, r)
    }

    /// An error with no records: its RCODE and extended error, signed when given.
    pub(super) async fn send_error<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        e: &dyn WireError,
        signing: Option<(&TsigKey, &Verified)>,
        handle: R,
    ) -> ResponseInfo {
        let r = signed::send_error(request, edns, e, signing, handle).await;
        self.sent(request, r)
    }

    /// A TSIG failure (NOTAUTH and the TSIG error, RFC 8945 section 5.2).
    pub(super) async fn send_tsig_failure<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        e: &dyn WireError,
        failure: TsigFailure,
        keys: &[TsigKey],
        handle: R,
    ) -> ResponseInfo {
        let r = signed::send_tsig_failure(request, edns, e, &failure, keys, handle).await;
        self.sent(request, r)
    }
}
