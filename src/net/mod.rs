//! Transports shared by `mimi dp serve` and `mimi resolver serve`: DNS over UDP (`udp`,
//! batched, one socket per thread), DNS over TCP (`tcp`, RFC 7766) and DNS over TLS
//! (`tls`, RFC 7858) with the limits a public server needs. Framing and limits only: each
//! request goes to the server's handler (`StreamHandler`).

pub mod plain;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::time::Duration;

use hickory_server::server::RequestHandler;

/// A server's transport limits (`[limits]` of its config).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest UDP response we send, whatever the client offers (RFC 6891; 1232 avoids
    /// fragmentation, as DNS Flag Day 2020 recommends).
    pub udp_payload: u16,
    /// TCP connections served at once; more wait in the accept queue.
    pub tcp_connections: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Largest request accepted over TCP; a longer frame closes the connection.
    pub max_request_bytes: usize,
    /// Threads (each with its own socket) reading and answering UDP on each listen address.
    pub udp_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            udp_payload: 1232,
            tcp_connections: 256,
            tcp_idle_timeout: Duration::from_secs(10),
            max_request_bytes: 16 * 1024,
            udp_threads: udp::default_threads(),
        }
    }
}

/// A request handler served by these transports, told of what never reaches it, and asked
/// first for the answers it can make without hickory's parsing.
pub trait StreamHandler: RequestHandler + Clone {
    /// A request hickory could not parse (answered FORMERR by the transport).
    fn malformed(&self) {}
    /// A TLS handshake that failed or did not finish in time.
    fn handshake_failed(&self) {}
    /// The handler for one TLS connection whose client presented a certificate with
    /// this SPKI pin (mutual TLS); by default the same handler.
    fn with_client_pin(&self, _pin: &str) -> Self {
        self.clone()
    }
    /// Answers `query` (one whole DNS message as received) into `out` (cleared by the caller) when it can
    /// without the general path; false hands it to `handle_request`. Over UDP the answer must fit the
    /// size the query allows (the fast path declines otherwise).
    fn answer_fast(
        &self,
        _query: &[u8],
        _src: std::net::SocketAddr,
        _protocol: hickory_server::net::xfer::Protocol,
        _out: &mut Vec<u8>,
    ) -> bool {
        false
    }
}
