//! One query to one server: UDP first (EDNS, 1232 bytes), TCP when the answer is
//! truncated; or DNS over TLS (RFC 7858) when the deployment says so. A response counts
//! only if its ID, flags and question match what was asked, so stray or spoofed
//! datagrams are ignored.
//!
//! [`Upstream`] is how a resolver reaches DPs under its `[upstream]` config: over DoT on
//! pooled connections (one handshake serves many queries), TSIG-signed when it has a key.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::config::UpstreamConfig;
use crate::name::Name;
use crate::tsig::{TsigError, TsigKey, TsigMac};

/// The EDNS payload size we offer (DNS Flag Day 2020).
pub const UDP_PAYLOAD: u16 = 1232;
/// Idle TLS connections kept per server.
const IDLE_PER_SERVER: usize = 4;
/// How long an idle TLS connection is kept: under the DPs' default idle timeout (10 s),
/// so a kept connection is rarely one the server has already closed.
const IDLE_FOR: Duration = Duration::from_secs(8);

/// Why one exchange with one server failed.
#[derive(Debug, Clone, Error)]
pub enum ExchangeError {
    #[error("timed out")]
    Timeout,
    #[error("network error: {0}")]
    Io(String),
    /// The TLS handshake failed: the server's certificate, most often.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server's reply could not be used: malformed, or not an answer to the question.
    #[error("unusable reply: {0}")]
    Malformed(String),
    /// The reply carries a TSIG that does not verify under our key.
    #[error("unusable reply: TSIG: {0}")]
    Tsig(TsigError),
}

fn build_query(
    qname: &Name,
    qtype: u16,
    recursion: bool,
    dnssec: bool,
) -> Result<(u16, Vec<u8>), ExchangeError> {
    let id: u16 = rand::random();
    let mut msg = Message::query();
    msg.metadata.id = id;
    msg.metadata.recursion_desired = recursion;
    msg.add_query(Query::query(qname.to_hickory(), RecordType::from(qtype)));
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD).set_dnssec_ok(dnssec);
    msg.set_edns(edns);
    let bytes = msg
        .to_vec()
        .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
    Ok((id, bytes))
}

/// Checks that `reply` answers our query `id` for (`qname`, `qtype`).
fn matches(reply: &Message, id: u16, qname: &Name, qtype: u16) -> Result<(), String> {
    if reply.metadata.id != id {
        return Err("wrong message ID".into());
    }
    if reply.metadata.message_type != MessageType::Response
        || reply.metadata.op_code != OpCode::Query
    {
        return Err("not a response to a standard query".into());
    }
    match reply.queries.as_slice() {
        [q] if u16::from(q.query_type()) == qtype
            && Name::from_hickory(q.name()).is_ok_and(|n| n == *qname) =>
        {
            Ok(())
        }
        _ => Err("question section does not match the query".into()),
    }
}

/// Sends one iterative query (RD clear); returns the reply and whether TCP was used.
pub async fn exchange(
    server: SocketAddr,
    qname: &Name,
    qtype: u16,
    wait: Duration,
) -> Result<(Message, bool), ExchangeError> {
    exchange_with(server, qname, qtype, wait, false).await
}

/// As `exchange`, optionally asking for recursion (to query a resolver).
pub async fn exchange_with(
    server: SocketAddr,
    qname: &Name,
    qtype: u16,
    wait: Duration,
    recursion: bool,
) -> Result<(Message, bool), ExchangeError> {
    let (id, query) = build_query(qname, qtype, recursion, false)?;
    let (reply, _, tcp) = udp_then_tcp(server, &query, id, qname, qtype, wait).await?;
    Ok((reply, tcp))
}

/// The reply to `query` (whose ID is `id`), its bytes, and whether TCP was needed.
async fn udp_then_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name,
    qtype: u16,
    wait: Duration,
) -> Result<(Message, Vec<u8>, bool), ExchangeError> {
    let (reply, bytes) = udp(server, query, id, qname, qtype, wait).await?;
    if !reply.metadata.truncation {
        return Ok((reply, bytes, false));
    }
    let (reply, bytes) = timeout(wait, tcp(server, query))
        .await
        .map_err(|_| ExchangeError::Timeout)??;
    matches(&reply, id, qname, qtype).map_err(ExchangeError::Malformed)?;
    Ok((reply, bytes, true))
}

async fn udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name,
    qtype: u16,
    wait: Duration,
) -> Result<(Message, Vec<u8>), ExchangeError> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    // A fresh socket per query gives a random source port; connect() makes the kernel
    // drop datagrams from anyone but the server.
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| ExchangeError::Io(e.to_string()))?;
    sock.connect(server)
        .await
        .map_err(|e| ExchangeError::Io(e.to_string()))?;
    sock.send(query)
        .await
        .map_err(|e| ExchangeError::Io(e.to_string()))?;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(ExchangeError::Timeout),
            Ok(Err(e)) => return Err(ExchangeError::Io(e.to_string())),
            Ok(Ok(n)) => n,
        };
        // Keep listening past datagrams that are not the answer (late replies to an
        // earlier attempt, junk) until the deadline.
        if let Ok(reply) = Message::from_vec(&buf[..n]) {
            if matches(&reply, id, qname, qtype).is_ok() {
                buf.truncate(n);
                return Ok((reply, buf));
            }
        }
    }
}

async fn tcp(server: SocketAddr, query: &[u8]) -> Result<(Message, Vec<u8>), ExchangeError> {
    let io = |e: std::io::Error| ExchangeError::Io(e.to_string());
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let _ = stream.set_nodelay(true);
    crate::wire::write_frame(&mut stream, query)
        .await
        .map_err(io)?;
    let buf = crate::wire::read_frame(&mut stream).await.map_err(io)?;
    let reply = Message::from_vec(&buf).map_err(|e| ExchangeError::Malformed(e.to_string()))?;
    Ok((reply, buf))
}

/// One query over DNS over TLS to `server`, whose certificate must satisfy `config` for
/// `server_name` (a DNS name or an IP address), all within `wait`.
pub async fn tls_exchange(
    server: SocketAddr,
    server_name: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    qname: &Name,
    qtype: u16,
    wait: Duration,
) -> Result<Message, ExchangeError> {
    let io = |e: std::io::Error| ExchangeError::Io(e.to_string());
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| ExchangeError::Io(format!("TLS server name {server_name:?}: {e}")))?;
    let (id, query) = build_query(qname, qtype, false, false)?;
    let exchange = async {
        let tcp = TcpStream::connect(server).await.map_err(io)?;
        let _ = tcp.set_nodelay(true);
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| ExchangeError::Tls(e.to_string()))?;
        crate::wire::write_frame(&mut stream, &query)
            .await
            .map_err(io)?;
        let reply = crate::wire::read_frame(&mut stream).await.map_err(io)?;
        Message::from_vec(&reply).map_err(|e| ExchangeError::Malformed(e.to_string()))
    };
    let reply = timeout(wait, exchange)
        .await
        .map_err(|_| ExchangeError::Timeout)??;
    matches(&reply, id, qname, qtype).map_err(ExchangeError::Malformed)?;
    Ok(reply)
}

/// Counters of an [`Upstream`].
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// TLS connections opened (each one handshake).
    pub tls_handshakes: AtomicU64,
    /// Exchanges that went over a kept TLS connection instead of a new one.
    pub tls_reused: AtomicU64,
    /// Query to answer, for each answered query of a walk.
    pub latency: crate::metrics::Latency,
}

/// How a resolver reaches DPs (`[upstream]`): plain UDP/TCP on the deployment's port, or
/// DNS over TLS on pooled connections; queries TSIG-signed when a key is configured.
pub struct Upstream {
    port: u16,
    tls: Option<TlsUpstream>,
    tsig: Option<TsigKey>,
    pub stats: UpstreamStats,
}

struct TlsUpstream {
    port: u16,
    connector: TlsConnector,
    /// Idle connections by server, oldest first.
    idle: Mutex<HashMap<SocketAddr, Vec<IdleConnection>>>,
}

/// A kept TLS connection and since when it has been idle.
type IdleConnection = (Instant, Box<TlsStream<TcpStream>>);

/// A stream to a DP: TCP, or TLS over TCP.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection held for one or more exchanges, then handed back with
/// [`Upstream::release`].
pub struct Connection {
    stream: Stream,
    addr: SocketAddr,
    /// Taken from the idle pool and not yet used: the server may have closed it meanwhile.
    untried: bool,
}

impl Upstream {
    /// Plain UDP/TCP to `port`, no TSIG.
    pub fn plain(port: u16) -> Upstream {
        Upstream::new(port, &UpstreamConfig::default())
    }

    /// `port` is the deployment's DNS port, used when the config does not ask for TLS.
    pub fn new(port: u16, config: &UpstreamConfig) -> Upstream {
        Upstream {
            port,
            tls: config.tls.as_ref().map(|t| TlsUpstream {
                port: t.port,
                connector: TlsConnector::from(Arc::clone(&t.client)),
                idle: Mutex::new(HashMap::new()),
            }),
            tsig: config.tsig.clone(),
            stats: UpstreamStats::default(),
        }
    }

    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The address exchanges with the server at `ip` go to.
    pub fn server_addr(&self, ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, self.tls.as_ref().map_or(self.port, |t| t.port))
    }

    /// One iterative query (RD clear) to the server at `ip`: over TLS when configured,
    /// else UDP then TCP on truncation; signed and checked under the TSIG key if any.
    /// With `dnssec`, the DO bit is set. Returns the reply and whether it came over a
    /// stream.
    pub async fn exchange(
        &self,
        ip: IpAddr,
        qname: &Name,
        qtype: u16,
        wait: Duration,
        dnssec: bool,
    ) -> Result<(Message, bool), ExchangeError> {
        let (id, mut query) = build_query(qname, qtype, false, dnssec)?;
        let mac = self.sign(&mut query)?;
        let started = std::time::Instant::now();
        let (reply, bytes, stream) = if self.uses_tls() {
            let bytes = self.request_once(ip, &query, wait).await?;
            let reply =
                Message::from_vec(&bytes).map_err(|e| ExchangeError::Malformed(e.to_string()))?;
            matches(&reply, id, qname, qtype).map_err(ExchangeError::Malformed)?;
            (reply, bytes, true)
        } else {
            udp_then_tcp(self.server_addr(ip), &query, id, qname, qtype, wait).await?
        };
        self.stats.latency.observe(started.elapsed());
        self.check_tsig(&bytes, mac.as_ref())?;
        Ok((reply, stream))
    }

    /// Signs an encoded query with the TSIG key, if there is one; the MAC is what the
    /// answer's TSIG must cover.
    pub fn sign(&self, query: &mut Vec<u8>) -> Result<Option<TsigMac>, ExchangeError> {
        match &self.tsig {
            None => Ok(None),
            Some(key) => crate::tsig::sign_request(query, key, crate::sys::unix_now())
                .map(Some)
                .map_err(ExchangeError::Tsig),
        }
    }

    /// Checks the TSIG of an answer to a query signed with `mac`. DPs need not sign their
    /// answers; one that is signed must verify.
    pub fn check_tsig(&self, reply: &[u8], mac: Option<&TsigMac>) -> Result<(), ExchangeError> {
        let (Some(key), Some(mac)) = (&self.tsig, mac) else {
            return Ok(());
        };
        match crate::tsig::find_tsig(reply) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => crate::tsig::verify_response(reply, key, mac, crate::sys::unix_now())
                .map(|_| ())
                .map_err(ExchangeError::Tsig),
            Err(e) => Err(ExchangeError::Tsig(e)),
        }
    }

    /// A connection to the server at `ip`: a kept TLS one if there is one, else a new one
    /// (TLS when configured, TCP otherwise), within `wait`.
    pub async fn connect(&self, ip: IpAddr, wait: Duration) -> Result<Connection, ExchangeError> {
        let addr = self.server_addr(ip);
        if let Some(tls) = &self.tls {
            if let Some(stream) = tls.take_idle(addr) {
                return Ok(Connection {
                    stream: Stream::Tls(stream),
                    addr,
                    untried: true,
                });
            }
        }
        let io = |e: std::io::Error| ExchangeError::Io(e.to_string());
        let open = async {
            let tcp = TcpStream::connect(addr).await.map_err(io)?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok(Stream::Tcp(tcp));
            };
            // The DP's certificate must name the address we were sent to (IP SAN).
            let stream = tls
                .connector
                .connect(ServerName::IpAddress(ip.into()), tcp)
                .await
                .map_err(|e| ExchangeError::Tls(e.to_string()))?;
            self.stats.tls_handshakes.fetch_add(1, Relaxed);
            Ok(Stream::Tls(Box::new(stream)))
        };
        let stream = timeout(wait, open)
            .await
            .map_err(|_| ExchangeError::Timeout)??;
        Ok(Connection {
            stream,
            addr,
            untried: false,
        })
    }

    /// Sends one framed message on the connection in `held` (opening one to `ip` when
    /// there is none) and reads the reply, within `wait`. A kept connection that fails
    /// on its first use is dropped and the message sent once more on a new one. On
    /// success the connection stays in `held`; on failure it is dropped.
    pub async fn request(
        &self,
        held: &mut Option<Connection>,
        ip: IpAddr,
        message: &[u8],
        wait: Duration,
    ) -> Result<Vec<u8>, ExchangeError> {
        loop {
            let mut conn = match held.take() {
                Some(c) => c,
                None => self.connect(ip, wait).await?,
            };
            let exchange = async {
                crate::wire::write_frame(&mut conn.stream, message).await?;
                // TLS may hold the record back until flushed.
                conn.stream.flush().await?;
                crate::wire::read_frame(&mut conn.stream).await
            };
            match timeout(wait, exchange).await {
                Err(_) => return Err(ExchangeError::Timeout),
                Ok(Ok(reply)) => {
                    if conn.untried {
                        self.stats.tls_reused.fetch_add(1, Relaxed);
                        conn.untried = false;
                    }
                    *held = Some(conn);
                    return Ok(reply);
                }
                // Closed by the server while idle: try a new connection.
                Ok(Err(_)) if conn.untried => continue,
                Ok(Err(e)) => return Err(ExchangeError::Io(e.to_string())),
            }
        }
    }

    /// One framed message and its reply on a kept or new connection, kept afterwards.
    pub async fn request_once(
        &self,
        ip: IpAddr,
        message: &[u8],
        wait: Duration,
    ) -> Result<Vec<u8>, ExchangeError> {
        let mut held = None;
        let reply = self.request(&mut held, ip, message, wait).await?;
        if let Some(conn) = held {
            self.release(conn);
        }
        Ok(reply)
    }

    /// The next message of a multi-message answer on `conn` (after [`Upstream::request`]
    /// gave the first), within `wait`.
    pub async fn next_frame(
        &self,
        conn: &mut Connection,
        wait: Duration,
    ) -> Result<Vec<u8>, ExchangeError> {
        timeout(wait, crate::wire::read_frame(&mut conn.stream))
            .await
            .map_err(|_| ExchangeError::Timeout)?
            .map_err(|e| ExchangeError::Io(e.to_string()))
    }

    /// The key queries are signed with, if any.
    pub fn tsig_key(&self) -> Option<&TsigKey> {
        self.tsig.as_ref()
    }

    /// Hands back a connection after a complete exchange: TLS ones are kept for reuse,
    /// TCP ones closed.
    pub fn release(&self, conn: Connection) {
        if let (Some(tls), Stream::Tls(stream)) = (&self.tls, conn.stream) {
            tls.keep(conn.addr, stream);
        }
    }
}

impl TlsUpstream {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<IdleConnection>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<Box<TlsStream<TcpStream>>> {
        let mut idle = self.lock();
        let list = idle.get_mut(&addr)?;
        list.retain(|(since, _)| since.elapsed() < IDLE_FOR);
        let newest = list.pop().map(|(_, s)| s);
        if list.is_empty() {
            idle.remove(&addr);
        }
        newest
    }

    fn keep(&self, addr: SocketAddr, stream: Box<TlsStream<TcpStream>>) {
        let mut idle = self.lock();
        // Old connections of every server go here, so none outlives IDLE_FOR by much
        // without a timer task.
        idle.retain(|_, list| {
            list.retain(|(since, _)| since.elapsed() < IDLE_FOR);
            !list.is_empty()
        });
        let list = idle.entry(addr).or_default();
        if list.len() < IDLE_PER_SERVER {
            list.push((Instant::now(), stream));
        }
    }
}

// Both streams are Unpin, so each call is passed straight on.
impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::config::UpstreamConfig;

    fn signing() -> (Upstream, TsigKey) {
        let key = TsigKey::generate("ap.example.".parse().unwrap());
        let config = UpstreamConfig {
            tls: None,
            tsig: Some(key.clone()),
        };
        (Upstream::new(53, &config), key)
    }

    #[test]
    fn queries_carry_a_tsig_that_verifies_and_tampered_answers_are_refused() {
        let (upstream, key) = signing();
        let qname: Name = "x.mimi.arpa.".parse().unwrap();
        let (_, mut query) = build_query(&qname, 65280, false, false).unwrap();
        let mac = upstream.sign(&mut query).unwrap().expect("signed");
        let now = crate::sys::unix_now();
        let verified = crate::tsig::verify_request(&query, std::slice::from_ref(&key), now)
            .expect("the DP verifies the query under the key");
        assert_eq!(verified.key_name, key.name);

        // The DP's answer, signed over our MAC: accepted; altered after signing: refused.
        let mut answer = crate::tsig::unsigned_message(&query).unwrap();
        answer[2] |= 0x84; // QR, AA
        crate::tsig::sign_response(&mut answer, &key, &verified.request_mac, now, 0).unwrap();
        upstream.check_tsig(&answer, Some(&mac)).unwrap();
        let mut tampered = answer.clone();
        tampered[3] ^= 0x80;
        let e = upstream.check_tsig(&tampered, Some(&mac)).unwrap_err();
        assert!(
            matches!(e, ExchangeError::Tsig(TsigError::BadSignature)),
            "{e}"
        );
        assert!(e.to_string().contains("TSIG"), "{e}");
        // Signed with another key: refused too.
        let other = TsigKey::generate("other.example.".parse().unwrap());
        let mut forged = crate::tsig::unsigned_message(&query).unwrap();
        crate::tsig::sign_response(&mut forged, &other, &verified.request_mac, now, 0).unwrap();
        assert!(upstream.check_tsig(&forged, Some(&mac)).is_err());
        // An unsigned answer is accepted: DPs need not sign.
        let plain = crate::tsig::unsigned_message(&query).unwrap();
        upstream.check_tsig(&plain, Some(&mac)).unwrap();
    }

    #[test]
    fn without_a_key_nothing_is_signed() {
        let upstream = Upstream::plain(53);
        let qname: Name = "x.mimi.arpa.".parse().unwrap();
        let (_, mut query) = build_query(&qname, 65280, false, false).unwrap();
        let before = query.clone();
        assert!(upstream.sign(&mut query).unwrap().is_none());
        assert_eq!(query, before);
        assert!(!upstream.uses_tls());
        assert_eq!(upstream.server_addr([127, 0, 0, 1].into()).port(), 53);
    }
}
