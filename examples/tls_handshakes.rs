//! TLS handshake load for `tools/bench/tls.sh`: CONNS tasks, each opening DNS-over-TLS
//! connections to one server for SECONDS, one after another: TCP connect, a full TLS
//! handshake (no session resumption, ALPN "dot"), one query (NAME SOA) and its answer,
//! close_notify, close. Prints `handshakes=N seconds=S rate=R failures=F`.
//!
//! ```sh
//! tls_handshakes 127.0.0.121:8853 5 50 5.5.5.1.e164.mimi.arpa.
//! ```
//!
//! It is a load generator, not a client to copy: it accepts any certificate and does not
//! check the server's handshake signature (dnsperf does not check certificates either), so
//! that its own CPU goes to what every handshake must do (key exchange, record layer),
//! and the server's signature and key exchange are what limits the rate. Crypto: ring, as
//! `mimi_discovery::tls::provider` (X25519 first, as the OpenSSL clients offer); the
//! server picks the version (TLS 1.3 with mimi and NSD).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Accepts any server: see the module comment.
#[derive(Debug)]
struct AnyServer(Vec<SignatureScheme>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// A DNS query for NAME SOA (class IN), with its two-byte length prefix.
fn query(name: &str, id: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 6, 0, 1]);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend(q);
    framed
}

/// One connection: handshake, one query, its answer, close.
async fn once(connector: &TlsConnector, server: SocketAddr, q: &[u8]) -> Result<()> {
    let tcp = TcpStream::connect(server).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(server.ip().into());
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(q).await?;
    let len = tls.read_u16().await? as usize;
    let mut answer = vec![0; len];
    tls.read_exact(&mut answer).await?;
    if len < 4 || answer[..2] != q[2..4] || answer[3] & 15 != 0 {
        bail!("unexpected answer");
    }
    tls.shutdown().await?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, seconds, conns, name] = &args[..] else {
        bail!("usage: tls_handshakes ADDR:PORT SECONDS CONNS NAME");
    };
    let server: SocketAddr = server.parse().context("ADDR:PORT")?;
    let seconds: f64 = seconds.parse().context("SECONDS")?;
    let conns: usize = conns.parse().context("CONNS")?;
    // The crate's provider (ring, X25519 first), as the servers use.
    let provider = mimi_discovery::tls::provider();
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(schemes)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"dot".to_vec()];
    config.resumption = Resumption::disabled(); // every handshake a full one
    let connector = TlsConnector::from(Arc::new(config));
    let q = query(name, 0x5eed);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, failures, elapsed) = rt.block_on(async {
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = (0..conns)
            .map(|_| {
                let (connector, q) = (connector.clone(), q.clone());
                tokio::spawn(async move {
                    let (mut done, mut failures) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        match tokio::time::timeout(
                            Duration::from_secs(5),
                            once(&connector, server, &q),
                        )
                        .await
                        {
                            Ok(Ok(())) => done += 1,
                            _ => failures += 1,
                        }
                    }
                    (done, failures)
                })
            })
            .collect();
        let (mut done, mut failures) = (0, 0);
        for t in tasks {
            let (d, f) = t.await.expect("task");
            done += d;
            failures += f;
        }
        (done, failures, start.elapsed().as_secs_f64())
    });
    println!(
        "handshakes={done} seconds={elapsed:.3} rate={:.0} failures={failures}",
        done as f64 / elapsed
    );
    Ok(())
}
