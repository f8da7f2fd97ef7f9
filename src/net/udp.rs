//! DNS over UDP: our own loop in place of hickory's `Server`, whose task and system call
//! per datagram cost most of a DP's time under load. One listen address gets one socket
//! per thread (`limits.udp_threads`, SO_REUSEPORT: the kernel spreads clients over them),
//! each with large kernel buffers so a burst waits in the kernel rather than being dropped.
//! A thread reads up to `BATCH` datagrams in one `recvmmsg`, answers what the handler can
//! answer at once (`StreamHandler::answer_fast`) and sends those answers in one
//! `sendmmsg`. The rest takes the general path: hickory parses it and the handler answers
//! it on the tokio runtime, as hickory's UDP server did, odd cases included (too short: no
//! answer; unparsable with a header: FORMERR; a response: dropped; source port 0: dropped).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::runtime::Handle;
use tracing::{debug, error, warn};

use super::StreamHandler;

/// Datagrams read (and answers sent) per system call.
const BATCH: usize = 64;
/// Bytes kept of each datagram, as hickory's UDP server did (`MAX_RECEIVE_BUFFER_SIZE`); a
/// longer one is cut there, and fails to parse like before.
const RECV_SIZE: usize = 4096;
/// Kernel buffer asked for on each socket: a burst of several thousand queries from one
/// client lands on one socket (SO_REUSEPORT hashes by source), and waits here.
const SOCKET_BUFFER: libc::c_int = 8 << 20;
/// How long a thread waits for a datagram before looking at the stop flag.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a send may wait for room in the send buffer before the answer is dropped.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);
/// General-path requests one thread leaves running on the runtime; past this it stops
/// reading (the kernel buffer then holds the queries) until some finish.
const GENERAL_IN_FLIGHT: usize = 1024;

/// The threads a listen address gets when `limits.udp_threads` is not set: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Most threads one listen address may get: more than any machine's cores, and a typo's
/// guard against thousands of threads.
pub const MAX_THREADS: usize = 1024;

/// Sockets bound to one address (one per thread to come), not yet served: bind first, so a
/// port in use fails fast, and serve once there is something to answer with.
#[derive(Debug)]
pub struct UdpSockets {
    sockets: Vec<UdpSocket>,
    addr: SocketAddr,
}

impl UdpSockets {
    /// Binds `count` sockets (at least one) to `addr`; with port 0 the first gets a free
    /// port and the rest join it. The first is bound before it allows port sharing, so an
    /// address another server holds fails here as it would without SO_REUSEPORT, and no
    /// later port-0 bind can be handed our port.
    pub fn bind(addr: SocketAddr, count: usize) -> io::Result<UdpSockets> {
        let count = count.max(1);
        let first = open(addr, false)?;
        if count > 1 {
            set_int(first.as_raw_fd(), libc::SO_REUSEPORT, 1)?;
        }
        let addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..count {
            sockets.push(open(addr, true)?);
        }
        for s in &sockets {
            tune(s)?;
        }
        Ok(UdpSockets { sockets, addr })
    }

    /// The address bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts one thread per socket answering with `handler`; the general path runs on the
    /// current tokio runtime.
    pub fn serve<H: StreamHandler>(self, handler: H) -> io::Result<UdpServer> {
        let runtime = Handle::try_current().map_err(io::Error::other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = UdpServer {
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for (i, socket) in self.sockets.into_iter().enumerate() {
            let worker = Worker {
                socket: Arc::new(socket),
                handler: handler.clone(),
                runtime: runtime.clone(),
                stop: stop.clone(),
                in_flight: Arc::new(AtomicUsize::new(0)),
            };
            let thread = std::thread::Builder::new()
                .name(format!("udp-{}-{i}", self.addr.port()))
                .spawn(move || worker.run())?;
            // Pushed one by one: on a failed spawn, dropping `server` stops those started.
            server.threads.push(thread);
        }
        Ok(server)
    }
}

/// The threads serving one listen address. Dropping it stops them (within
/// `RECV_TIMEOUT`); `shutdown` also waits for them, so their sockets are closed.
#[derive(Debug)]
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl UdpServer {
    /// Stops the threads and waits until they have closed their sockets (answers still
    /// being made on the general path are then not sent, as with hickory's server).
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    warn!("a UDP thread panicked");
                }
            }
        })
        .await;
        if let Err(e) = joined {
            warn!("waiting for the UDP threads failed: {e}");
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A socket bound to `addr`, SO_REUSEPORT set before binding when `shared`.
fn open(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new, valid descriptor nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if shared {
        set_int(fd, libc::SO_REUSEPORT, 1)?;
    }
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for the socket's family.
    let rc = unsafe { libc::bind(fd, (&raw const storage).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UdpSocket::from(owned))
}

/// Large kernel buffers (beyond `net.core.rmem_max` when we may), and the receive timeout
/// that lets a thread see the stop flag.
fn tune(socket: &UdpSocket) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    for (force, plain, what) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "receive"),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "send"),
    ] {
        // The forced size needs CAP_NET_ADMIN; without it the kernel caps the plain one.
        if set_int(fd, force, SOCKET_BUFFER).is_err() {
            if let Err(e) = set_int(fd, plain, SOCKET_BUFFER) {
                warn!("UDP {what} buffer size not set: {e}");
            }
        }
        match get_int(fd, plain) {
            Ok(size) => debug!(fd, "UDP {what} buffer: {size} bytes"),
            Err(e) => debug!(fd, "UDP {what} buffer size unknown: {e}"),
        }
    }
    socket.set_read_timeout(Some(RECV_TIMEOUT))?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(())
}

fn set_int(fd: RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a c_int and its size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn get_int(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` has room for the c_int the option holds; `len` says how much.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which fits in it.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which fits in it.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Whether an answer may go to `src` (hickory's `sanitize_src_address`): not port 0, not
/// an unspecified or broadcast address, so a forged source cannot aim answers there.
fn respondable(src: SocketAddr) -> bool {
    src.port() != 0
        && match src.ip() {
            IpAddr::V4(ip) => !ip.is_unspecified() && !ip.is_broadcast(),
            IpAddr::V6(ip) => !ip.is_unspecified(),
        }
}

/// Sends one datagram without waiting: a full send buffer drops it, as the network may.
fn send_to(socket: &UdpSocket, bytes: &[u8], dst: SocketAddr) -> io::Result<()> {
    let (storage, len) = to_sockaddr(dst);
    // SAFETY: `bytes` is valid for its length; `storage` holds a sockaddr of `len` bytes.
    let rc = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT,
            (&raw const storage).cast(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One thread's socket and what it answers with.
struct Worker<H> {
    socket: Arc<UdpSocket>,
    handler: H,
    runtime: Handle,
    stop: Arc<AtomicBool>,
    /// General-path requests of this thread still running.
    in_flight: Arc<AtomicUsize>,
}

impl<H: StreamHandler> Worker<H> {
    fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut batch = Batch::new();
        while !self.stop.load(Ordering::Relaxed) {
            let received = match batch.receive(fd) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // Out of memory and the like: back off instead of spinning.
                    warn!("UDP receive failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let mut answers = 0;
            for i in 0..received {
                let Some(src) = from_sockaddr(&batch.names[i], batch.hdrs[i].msg_hdr.msg_namelen)
                else {
                    continue;
                };
                let len = (batch.hdrs[i].msg_len as usize).min(RECV_SIZE);
                let query = &batch.data[i * RECV_SIZE..i * RECV_SIZE + len];
                // Shorter than a header: not DNS, no answer (as hickory).
                if len < 12 || !respondable(src) {
                    continue;
                }
                let out = &mut batch.outs[answers];
                out.clear();
                // A response (QR set) takes the general path, which drops it once parsed.
                if query[2] & 0x80 == 0 && self.handler.answer_fast(query, src, Protocol::Udp, out)
                {
                    batch.answer_to[answers] = i;
                    answers += 1;
                } else {
                    self.general(query, src);
                }
            }
            batch.send(fd, answers);
        }
    }

    /// Hands one datagram to the handler on the runtime.
    fn general(&self, query: &[u8], src: SocketAddr) {
        while self.in_flight.load(Ordering::Acquire) >= GENERAL_IN_FLIGHT {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let guard = InFlight::new(self.in_flight.clone());
        let bytes = query.to_vec();
        // Weak: the socket closes when its thread ends, whatever is still running here.
        let (socket, handler) = (Arc::downgrade(&self.socket), self.handler.clone());
        // A runtime already shut down drops the task, and with it the guard.
        self.runtime.spawn(async move {
            let _guard = guard;
            answer(bytes, src, handler, socket).await;
        });
    }
}

/// Counts one general-path request for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The general path for one datagram, as hickory's UDP server handled it.
async fn answer<H: StreamHandler>(
    bytes: Vec<u8>,
    src: SocketAddr,
    handler: H,
    socket: Weak<UdpSocket>,
) {
    // Kept before the bytes move into the parser, to answer FORMERR if it fails.
    let reply = formerr(&bytes);
    match Request::from_bytes(bytes, src, Protocol::Udp) {
        Ok(request) => {
            // Never answer a response: that is how reflection loops start.
            if request.metadata.message_type == MessageType::Response {
                return;
            }
            let responder = UdpResponder { socket, dst: src };
            handler
                .handle_request::<_, TokioTime>(&request, responder)
                .await;
        }
        Err(e) => {
            debug!(%src, "malformed UDP request: {e}");
            // Counted here: the handler never sees what hickory cannot parse.
            handler.malformed();
            let (Some(reply), Some(socket)) = (reply, socket.upgrade()) else {
                return;
            };
            if let Err(e) = send_to(&socket, &reply, src) {
                debug!(%src, "FORMERR not sent: {e}");
            }
        }
    }
}

/// The FORMERR hickory's server sent for a request it could not parse: the request's
/// header made a response (id, opcode, RD and CD kept), no records. None without a header.
fn formerr(raw: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(raw)).ok()?;
    let mut metadata = Metadata::response_from_request(&header.metadata);
    metadata.response_code = ResponseCode::FormErr;
    Header {
        metadata,
        counts: HeaderCounts::default(),
    }
    .to_bytes()
    .ok()
}

/// Sends a general-path response to its client, encoded as hickory's UDP `ResponseHandle`
/// did: at most the response's EDNS payload size (512 bytes without EDNS), truncated to
/// fit with TC set; on an encoding error, a bare SERVFAIL.
#[derive(Clone)]
struct UdpResponder {
    /// Gone once the server stopped: the answer is then not sent.
    socket: Weak<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
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
        let id = response.metadata().id;
        // RFC 1035 section 4.2.1: without EDNS the client takes 512 bytes.
        let max = response.edns().map_or(512, |e| e.max_payload());
        let mut bytes = Vec::with_capacity(512);
        let emitted = {
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_max_size(max);
            response.destructive_emit(&mut encoder)
        };
        let info = match emitted {
            Ok(info) => info,
            Err(e) => {
                error!("error encoding message: {e}");
                bytes.clear();
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                let mut encoder = BinEncoder::new(&mut bytes);
                encoder.set_max_size(512);
                header.emit(&mut encoder)?;
                ResponseInfo::from(header)
            }
        };
        let socket = self
            .socket
            .upgrade()
            .ok_or_else(|| NetError::from("UDP listener stopped"))?;
        send_to(&socket, &bytes, self.dst)?;
        Ok(info)
    }
}

/// One thread's buffers for `recvmmsg` and `sendmmsg`, reused for every batch.
struct Batch {
    /// `BATCH` slots of `RECV_SIZE` bytes.
    data: Box<[u8]>,
    /// Each datagram's source, and then its answer's destination.
    names: [libc::sockaddr_storage; BATCH],
    iov: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    /// Answers made by the fast path, and the datagram each answers.
    outs: Vec<Vec<u8>>,
    answer_to: [usize; BATCH],
    send_iov: [libc::iovec; BATCH],
    send_hdrs: [libc::mmsghdr; BATCH],
}

impl Batch {
    fn new() -> Box<Batch> {
        Box::new(Batch {
            data: vec![0u8; BATCH * RECV_SIZE].into_boxed_slice(),
            // SAFETY: all-zero bytes are valid for these C structs (null pointers, zero
            // lengths); the pointers are set before each system call.
            names: unsafe { zeroed() },
            // SAFETY: as above.
            iov: unsafe { zeroed() },
            // SAFETY: as above.
            hdrs: unsafe { zeroed() },
            outs: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            answer_to: [0; BATCH],
            // SAFETY: as above.
            send_iov: unsafe { zeroed() },
            // SAFETY: as above.
            send_hdrs: unsafe { zeroed() },
        })
    }

    /// Waits (up to the socket's receive timeout) for datagrams and reads those waiting,
    /// up to `BATCH`; returns how many.
    fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        // The pointers are taken afresh each time, from buffers that outlive the call.
        let data = self.data.as_mut_ptr();
        for i in 0..BATCH {
            self.iov[i] = libc::iovec {
                // SAFETY: slot i lies within `data` (BATCH * RECV_SIZE bytes).
                iov_base: unsafe { data.add(i * RECV_SIZE) }.cast(),
                iov_len: RECV_SIZE,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&raw mut self.names[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &raw mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: each header points at its own name and iovec, and each iovec at its own
        // slot of `data`; all live in `self` for the whole call. MSG_WAITFORONE: block for
        // the first datagram only.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as _,
                libc::MSG_WAITFORONE as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Sends the first `count` answers of `outs`, each to the source of its datagram. An
    /// answer that cannot be sent is dropped (UDP: the client asks again).
    fn send(&mut self, fd: RawFd, count: usize) {
        for k in 0..count {
            let i = self.answer_to[k];
            let out = &mut self.outs[k];
            self.send_iov[k] = libc::iovec {
                iov_base: out.as_mut_ptr().cast(),
                iov_len: out.len(),
            };
            let h = &mut self.send_hdrs[k].msg_hdr;
            h.msg_name = (&raw mut self.names[i]).cast();
            h.msg_namelen = self.hdrs[i].msg_hdr.msg_namelen;
            h.msg_iov = &raw mut self.send_iov[k];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.send_hdrs[k].msg_len = 0;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: headers `sent..count` point at names, iovecs and answer buffers in
            // `self`, none of which change during the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.send_hdrs[sent..].as_mut_ptr(),
                    (count - sent) as _,
                    0,
                )
            };
            if n > 0 {
                sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if n < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The answer at `sent` failed (or none went): skip it, send the rest.
            debug!("UDP answer not sent: {e}");
            sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formerr_is_the_requests_header_as_a_response() {
        // id 0x1234, QR=0, opcode UPDATE, RD; CD; counts that promise more than is there.
        let raw = [0x12, 0x34, 0x29, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        let reply = formerr(&raw).unwrap();
        assert_eq!(reply, [0x12, 0x34, 0xa9, 0x11, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(formerr(&raw[..11]), None);
    }

    #[test]
    fn socket_addresses_round_trip() {
        for a in [
            "127.76.0.1:53",
            "[::1]:5353",
            "[fe80::1%2]:853",
            "[::ffff:127.0.0.1]:1",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let (storage, len) = to_sockaddr(addr);
            assert_eq!(from_sockaddr(&storage, len), Some(addr));
        }
    }

    #[test]
    fn no_answers_to_port_zero_or_unspecified_or_broadcast() {
        for a in ["127.0.0.1:0", "0.0.0.0:53", "255.255.255.255:53", "[::]:53"] {
            assert!(!respondable(a.parse().unwrap()), "{a}");
        }
        assert!(respondable("127.0.0.1:53".parse().unwrap()));
    }
}
