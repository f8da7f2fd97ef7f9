//! DNS over TCP (RFC 7766) with the limits a public server needs: a bound on open
//! connections, an idle timeout, and a maximum request size. hickory's `Server` accepts
//! TCP connections without a bound, so this listener is ours; requests still go through
//! hickory's message types and our `RequestHandler`. The framing loop takes any byte
//! stream: DNS over TLS (`tls`) runs it after the handshake.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::timeout;
use tracing::{debug, warn};

use super::{Limits, StreamHandler};

/// Writes each response as one length-prefixed frame on the connection.
struct TcpResponder<S> {
    writer: Arc<Mutex<WriteHalf<S>>>,
    /// A client that stops reading must not hold its slot: writes give up after this.
    write_timeout: Duration,
    /// Set when a write failed or timed out; the connection is then closed.
    failed: Arc<AtomicBool>,
}

impl<S> Clone for TcpResponder<S> {
    fn clone(&self) -> Self {
        TcpResponder {
            writer: self.writer.clone(),
            write_timeout: self.write_timeout,
            failed: self.failed.clone(),
        }
    }
}

impl<S: AsyncWrite> TcpResponder<S> {
    async fn write_frame(&self, frame: &[u8]) -> Result<(), NetError> {
        let mut w = self.writer.lock().await;
        let result = match timeout(self.write_timeout, w.write_all(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NetError::from(e)),
            Err(_) => Err(NetError::from("client is not reading its answers")),
        };
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }
}

#[async_trait::async_trait]
impl<S: AsyncRead + AsyncWrite + Send + 'static> ResponseHandler for TcpResponder<S> {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let info = {
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_max_size(u16::MAX);
            response.destructive_emit(&mut encoder)?
        };
        // Compression pointers count from the message start, so the length prefix is
        // added after encoding.
        let len = u16::try_from(bytes.len()).map_err(|_| NetError::from("response too large"))?;
        let mut frame = Vec::with_capacity(bytes.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&bytes);
        self.write_frame(&frame).await?;
        Ok(info)
    }
}

/// A FORMERR reply built from the request's header alone, for requests hickory cannot
/// parse. None when there is not even a header.
fn formerr(raw: &[u8]) -> Option<[u8; 12]> {
    let header = raw.get(..12)?;
    let mut out = [0u8; 12];
    out[..2].copy_from_slice(&header[..2]);
    // QR=1, the request's opcode and RD; RCODE=1 (FORMERR); all counts zero.
    out[2] = 0x80 | (header[2] & 0x79);
    out[3] = 0x01;
    Some(out)
}

/// Accepts connections while fewer than `limits.tcp_connections` are open.
pub async fn serve<H: StreamHandler>(listener: TcpListener, handler: H, limits: Limits) {
    accept_loop(listener, limits, move |stream, src, limits| {
        let handler = handler.clone();
        async move {
            let _ = stream.set_nodelay(true);
            connection(stream, src, handler, &limits, Protocol::Tcp).await;
        }
    })
    .await
}

/// Accepts connections while fewer than `limits.tcp_connections` are open, and runs
/// `serve` on each in its own task.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, limits: Limits, serve: F)
where
    F: Fn(TcpStream, SocketAddr, Limits) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.tcp_connections));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, src) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!("TCP accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let task = serve(stream, src, limits.clone());
        tokio::spawn(async move {
            task.await;
            drop(permit);
        });
    }
}

/// Reads length-prefixed requests from `stream` and answers each in turn (RFC 7766
/// pipelining: the client may send the next before the answer), until the client closes,
/// idles past `tcp_idle_timeout`, sends an oversized frame, or stops reading.
pub(crate) async fn connection<S, H>(
    stream: S,
    src: SocketAddr,
    handler: H,
    limits: &Limits,
    protocol: Protocol,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
    H: StreamHandler,
{
    let (reader, writer) = tokio::io::split(stream);
    // Buffered, so that pipelined requests (RFC 7766 6.2.1.1) are read with one system call
    // and their fast answers written with one.
    let mut reader = tokio::io::BufReader::with_capacity(16 * 1024, reader);
    let responder = TcpResponder {
        writer: Arc::new(Mutex::new(writer)),
        write_timeout: limits.tcp_idle_timeout,
        failed: Arc::new(AtomicBool::new(false)),
    };
    // Reused for every request: the fast path then allocates nothing.
    let mut buf = Vec::new();
    // Fast answers not yet written: flushed when no further request is already read, when
    // large, and before the general path answers (answers stay in request order).
    let (mut out, mut pending) = (Vec::new(), Vec::new());
    loop {
        if !pending.is_empty() && (reader.buffer().is_empty() || pending.len() >= 16 * 1024) {
            if responder.write_frame(&pending).await.is_err() {
                debug!(%src, "closing TCP connection after a failed write");
                return;
            }
            pending.clear();
        }
        let len = match timeout(limits.tcp_idle_timeout, reader.read_u16()).await {
            Ok(Ok(len)) => len as usize,
            Ok(Err(_)) => return, // closed by the client
            Err(_) => {
                debug!(%src, "closing idle TCP connection");
                return;
            }
        };
        if len > limits.max_request_bytes {
            warn!(%src, len, "TCP request larger than limits.max_request_bytes: closing");
            return;
        }
        buf.clear();
        buf.resize(len, 0);
        match timeout(limits.tcp_idle_timeout, reader.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        out.clear();
        if handler.answer_fast(&buf, src, protocol, &mut out) {
            let Ok(n) = u16::try_from(out.len()) else {
                warn!(%src, "fast answer longer than a TCP frame: closing");
                return;
            };
            pending.extend_from_slice(&n.to_be_bytes());
            pending.extend_from_slice(&out);
            continue;
        }
        if !pending.is_empty() {
            if responder.write_frame(&pending).await.is_err() {
                debug!(%src, "closing TCP connection after a failed write");
                return;
            }
            pending.clear();
        }
        // Kept before the buffer moves into the parser, to answer FORMERR if it fails.
        let reply = formerr(&buf);
        match Request::from_bytes(buf.clone(), src, protocol) {
            Ok(request) => {
                handler
                    .handle_request::<_, TokioTime>(&request, responder.clone())
                    .await;
                if responder.failed.load(Ordering::Relaxed) {
                    debug!(%src, "closing TCP connection after a failed write");
                    return;
                }
            }
            Err(e) => {
                debug!(%src, "malformed TCP request: {e}");
                // Counted here: the handler never sees what hickory cannot parse.
                handler.malformed();
                // A request shorter than a header gets no answer.
                let Some(reply) = reply else {
                    return;
                };
                let mut frame = Vec::with_capacity(14);
                frame.extend_from_slice(&(reply.len() as u16).to_be_bytes());
                frame.extend_from_slice(&reply);
                if responder.write_frame(&frame).await.is_err() {
                    return;
                }
            }
        }
    }
}
