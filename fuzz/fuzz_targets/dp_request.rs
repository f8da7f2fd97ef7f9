//! Fuzz target: the DP's whole request handling (queries, AXFR/IXFR, UPDATE, NOTIFY, PIR
//! and CHANGES requests, over "UDP" or "TCP" by the first byte) against a running
//! `mimi dp serve` with the demo carrier zone, private lookups, UPDATE and CHANGES keys.
//! Answers are encoded as the transports would; nothing may panic. Whatever the fast path
//! (prebuilt answers) answers, the general path must answer with the same bytes.
#![no_main]
use std::net::SocketAddr;
use std::sync::OnceLock;

use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use libfuzzer_sys::fuzz_target;
use mimi_discovery::dp::{DpHandler, DpServer};
use mimi_discovery::net::StreamHandler;

/// Encodes each response, as a transport would, and keeps the last one.
#[derive(Clone, Default)]
struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[async_trait::async_trait]
impl ResponseHandler for Sink {
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
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        *self.0.lock().expect("sink") = bytes;
        Ok(info)
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    handler: DpHandler,
}

fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../zones");
        let dir = tempfile::tempdir().expect("tempdir").keep();
        std::fs::copy(root.join("5.5.5.1.e164.zone"), dir.join("carrier.zone")).expect("zone");
        std::fs::copy(root.join("trust.toml"), dir.join("trust.toml")).expect("trust");
        let key = "key \"fuzz.\" {\n    algorithm hmac-sha256;\n    secret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\";\n};\n";
        std::fs::write(dir.join("fuzz.tsig"), key).expect("key");
        std::fs::write(
            dir.join("dp.toml"),
            "listen = [\"127.0.0.1:0\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"5.5.5.1.e164.mimi.arpa.\"\nfile = \"carrier.zone\"\n[[update]]\nprovider = \"chat.example\"\ntsig = \"fuzz.tsig\"\n[axfr]\nallow = [\"127.0.0.0/8\"]\n[pir]\nthreads = 1\n[access]\nanonymous_lookups_per_day = \"unlimited\"\n",
        )
        .expect("config");
        let server = runtime
            .block_on(DpServer::start(&dir.join("dp.toml")))
            .expect("DP start");
        let handler = DpHandler::new(server.shared().clone());
        // The server lives as long as the fuzzing process.
        std::mem::forget(server);
        Fixture { runtime, handler }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, message)) = data.split_first() else {
        return;
    };
    let fx = fixture();
    let protocol = if first & 1 == 0 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let src: SocketAddr = ([127, 0, 0, 9], 5353).into();
    let mut fast = Vec::new();
    // As over TCP, without a size limit: the sink below gets the general path's answer
    // before any UDP truncation, so that is the one to compare with.
    let answered_fast = fx
        .handler
        .answer_fast(message, src, Protocol::Tcp, &mut fast);
    match Request::from_bytes(message.to_vec(), src, protocol) {
        Ok(request) => {
            let sink = Sink::default();
            fx.runtime.block_on(
                fx.handler
                    .handle_request::<_, TokioTime>(&request, sink.clone()),
            );
            if answered_fast {
                assert_eq!(
                    fast,
                    *sink.0.lock().expect("sink"),
                    "fast and general paths differ"
                );
            }
        }
        Err(_) => assert!(
            !answered_fast,
            "the fast path answered what hickory cannot parse"
        ),
    }
});
