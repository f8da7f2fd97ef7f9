//! DNS over TLS (RFC 7858): the TLS handshake on each accepted connection, bounded by
//! `limits.tcp_idle_timeout`, then the framing loop and limits of DNS over TCP (`tcp`).
//! The accept loop is ours on rustls rather than hickory's, so that the peer's
//! certificate stays at hand (mutual TLS, DESIGN section 10).

use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::{Limits, StreamHandler};

/// Accepts DNS-over-TLS connections while fewer than `limits.tcp_connections` are open
/// on this listener; a handshake that does not finish within the idle timeout frees its
/// slot.
pub async fn serve<H: StreamHandler>(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handler: H,
    limits: Limits,
) {
    let acceptor = TlsAcceptor::from(config);
    super::tcp::accept_loop(listener, limits, move |stream, src, limits| {
        let (acceptor, handler) = (acceptor.clone(), handler.clone());
        async move {
            let _ = stream.set_nodelay(true);
            let tls = match timeout(limits.tcp_idle_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%src, "TLS handshake failed: {e}");
                    handler.handshake_failed();
                    return;
                }
                Err(_) => {
                    debug!(%src, "TLS handshake not finished in time");
                    handler.handshake_failed();
                    return;
                }
            };
            let handler = match crate::tls::peer_pin(tls.get_ref().1) {
                Some(pin) => handler.with_client_pin(&pin),
                None => handler,
            };
            super::tcp::connection(tls, src, handler, &limits, Protocol::Tls).await;
        }
    })
    .await
}
