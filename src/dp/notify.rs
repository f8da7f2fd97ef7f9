//! DNS NOTIFY (RFC 1996): tells secondaries a zone changed so they transfer it now
//! instead of at the next SOA refresh, and subscribed resolvers so they ask CHANGES
//! (DESIGN 8.3); those NOTIFYs are TSIG-signed with the subscriber's key.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::name::Name;
use crate::tsig::TsigKey;

/// Where a NOTIFY goes, and the key that signs it (None: unsigned).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub key: Option<TsigKey>,
}

/// How long to wait for a secondary's acknowledgement before trying again.
const WAIT: Duration = Duration::from_secs(2);
/// RFC 1996 section 3.6: retry a few times, then give up.
const TRIES: usize = 3;

/// Sends NOTIFY for every zone to every secondary, each in its own task, from one of
/// the server's own listen addresses (secondaries accept NOTIFY from their primary's).
pub async fn send_all(zones: Vec<Name>, targets: Vec<Target>, listen: Vec<SocketAddr>) {
    let mut tasks = Vec::new();
    for zone in &zones {
        for target in &targets {
            let source = listen
                .iter()
                .map(|a| a.ip())
                .find(|ip| ip.is_ipv4() == target.addr.is_ipv4() && !ip.is_unspecified());
            tasks.push(tokio::spawn(notify(
                zone.clone(),
                target.addr,
                target.key.clone(),
                source,
            )));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn notify(
    zone: Name,
    target: SocketAddr,
    key: Option<TsigKey>,
    source: Option<std::net::IpAddr>,
) {
    let id: u16 = rand::random();
    let mut msg = Message::new(id, MessageType::Query, OpCode::Notify);
    msg.metadata.authoritative = true;
    msg.add_query(Query::query(zone.to_hickory(), RecordType::SOA));
    let Ok(mut bytes) = msg.to_vec() else { return };
    if let Some(key) = &key {
        if let Err(e) = crate::tsig::sign_request(&mut bytes, key, crate::sys::unix_now()) {
            return warn!(%zone, %target, "NOTIFY not sent: cannot sign it: {e}");
        }
    }
    let local: SocketAddr = match source {
        Some(ip) => SocketAddr::new(ip, 0),
        None if target.is_ipv4() => ([0, 0, 0, 0], 0).into(),
        None => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return warn!(%zone, %target, "NOTIFY not sent: {e}"),
    };
    let mut buf = [0u8; 512];
    for _ in 0..TRIES {
        if let Err(e) = sock.send_to(&bytes, target).await {
            return warn!(%zone, %target, "NOTIFY not sent: {e}");
        }
        if let Ok(Ok((n, from))) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf)).await {
            if from == target && Message::from_vec(&buf[..n]).is_ok_and(|m| m.metadata.id == id) {
                return info!(%zone, %target, "NOTIFY acknowledged");
            }
        }
        debug!(%zone, %target, "no NOTIFY acknowledgement yet");
    }
    warn!(%zone, %target, "NOTIFY not acknowledged after {TRIES} tries");
}
