//! One query to one server: UDP first (EDNS, 1232 bytes), TCP when the answer is
//! truncated; or DNS over TLS (RFC 7858) when the deployment says so. A response counts
//! only if its ID, flags and question match what was asked, so stray or spoofed
//! datagrams are ignored.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};

use crate::name::Name;

/// The EDNS payload size we offer (DNS Flag Day 2020).
pub const UDP_PAYLOAD: u16 = 1232;

/// Why one exchange with one server failed.
#[derive(Debug, Clone)]
pub enum ExchangeError {
    Timeout,
    Io(String),
    /// The server's reply could not be used: malformed, or not an answer to the question.
    Malformed(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Timeout => f.write_str("timed out"),
            ExchangeError::Io(e) => write!(f, "network error: {e}"),
            ExchangeError::Malformed(e) => write!(f, "unusable reply: {e}"),
        }
    }
}

fn build_query(qname: &Name, qtype: u16, recursion: bool) -> Result<(u16, Vec<u8>), ExchangeError> {
    let id: u16 = rand::random();
    let mut msg = Message::query();
    msg.metadata.id = id;
    msg.metadata.recursion_desired = recursion;
    msg.add_query(Query::query(qname.to_hickory(), RecordType::from(qtype)));
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
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
    let (id, query) = build_query(qname, qtype, recursion)?;
    let reply = udp(server, &query, id, qname, qtype, wait).await?;
    if !reply.metadata.truncation {
        return Ok((reply, false));
    }
    let reply = timeout(wait, tcp(server, &query))
        .await
        .map_err(|_| ExchangeError::Timeout)??;
    matches(&reply, id, qname, qtype).map_err(ExchangeError::Malformed)?;
    Ok((reply, true))
}

async fn udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name,
    qtype: u16,
    wait: Duration,
) -> Result<Message, ExchangeError> {
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
                return Ok(reply);
            }
        }
    }
}

async fn tcp(server: SocketAddr, query: &[u8]) -> Result<Message, ExchangeError> {
    let io = |e: std::io::Error| ExchangeError::Io(e.to_string());
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let _ = stream.set_nodelay(true);
    let mut frame = Vec::with_capacity(query.len() + 2);
    frame.extend_from_slice(&(query.len() as u16).to_be_bytes());
    frame.extend_from_slice(query);
    stream.write_all(&frame).await.map_err(io)?;
    let len = stream.read_u16().await.map_err(io)? as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await.map_err(io)?;
    Message::from_vec(&buf).map_err(|e| ExchangeError::Malformed(e.to_string()))
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
    let (id, query) = build_query(qname, qtype, false)?;
    let exchange = async {
        let tcp = TcpStream::connect(server).await.map_err(io)?;
        let _ = tcp.set_nodelay(true);
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| ExchangeError::Io(format!("TLS: {e}")))?;
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
