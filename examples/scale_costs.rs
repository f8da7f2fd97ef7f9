//! Per-operation costs for the cost model of the whole system (`tools/scale/model.py`,
//! docs/scale.md), measured with real work on this machine: DP CPU per OPRF evaluation,
//! client CPU per blind + finalize, MulPIR server CPU per query with message and key sizes,
//! CPU and touched buckets per in-place update (the delta of an encrypted replica), and the
//! replica's bytes per mapping. Prints one JSON object on stdout, notes on stderr.
//!
//! ```sh
//! cargo run --release --example scale_costs -- [--quick] [--log-slots 16,18] [--lookups 5]
//!     [--oprf-iters 2000] [--updates 900]
//! ```
//! Every CPU figure is thread CPU time (or process CPU time for the multi-threaded build),
//! so other tenants of a shared machine slow the wall clock, not the figures.

use std::time::{Duration, Instant};

use clap::Parser;
use mimi_discovery::name::Name;
use mimi_discovery::pir::scheme::{PirClient, PirServer};
use mimi_discovery::pir::{oprf, BuildOptions, MulPir, MulPirServer, OprfKey};
use mimi_discovery::pir::{ZonePirClient, ZonePirDb};
use mimi_discovery::sys::{thread_cpu_time, tune_allocator};
use rand::{Rng, RngCore};
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Smaller run (2^16 only, fewer iterations): about 10 s.
    #[arg(long)]
    quick: bool,
    /// Table sizes (log2 of slots) to build and query.
    #[arg(long, value_delimiter = ',')]
    log_slots: Option<Vec<u32>>,
    /// Lookups (two bucket queries each) per size.
    #[arg(long)]
    lookups: Option<usize>,
    /// OPRF requests of one identifier (requests of 64: a twentieth of this).
    #[arg(long)]
    oprf_iters: Option<usize>,
    /// In-place updates of one changed mapping each, on the 2^16 zone.
    #[arg(long)]
    updates: Option<usize>,
}

const SLOT_SIZE: usize = 256;
const BUCKET_SLOTS: usize = 4;
const LOAD: f64 = 0.9;
/// Replica framing (placeholders until the replica protocol is measured): an index before each
/// bucket, and the payload of one DNS message over TCP.
const REPLICA_BUCKET_OVERHEAD: usize = 4;
const REPLICA_MESSAGE_PAYLOAD: usize = 60_000;

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

#[path = "support/measure.rs"]
mod measure;
use measure::median;

/// CPU time of all threads of this process (the build runs on the global rayon pool).
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn number(i: usize) -> String {
    format!("+1{:010}", 2_000_000_000 + i)
}

/// DP: `evaluate` of requests of `batch` identifiers; client: `blind` + `finalize`. Median
/// thread CPU per identifier.
fn oprf_costs(key: &OprfKey, batch: usize, iters: usize) -> Value {
    let public = key.public_key();
    let (mut dp, mut client) = (Vec::new(), Vec::new());
    let mut rng = rand::thread_rng();
    let (mut up, mut down) = (0, 0);
    for _ in 0..iters {
        let inputs: Vec<String> = (0..batch)
            .map(|_| number(rng.gen_range(0..1_000_000_000)))
            .collect();
        let inputs: Vec<&[u8]> = inputs.iter().map(|s| s.as_bytes()).collect();
        let c0 = thread_cpu_time();
        let (state, request) = oprf::blind(&inputs).expect("blind");
        let c1 = thread_cpu_time();
        let response = key.evaluate(&request).expect("evaluate");
        let c2 = thread_cpu_time();
        let ys = state.finalize(&response, &public).expect("finalize");
        let c3 = thread_cpu_time();
        assert_eq!(ys.len(), batch);
        dp.push(ns(c2 - c1) / batch as f64);
        client.push(ns((c1 - c0) + (c3 - c2)) / batch as f64);
        (up, down) = (request.len(), response.len());
    }
    eprintln!(
        "OPRF, {batch} per request, {iters} requests: DP {:.0} us, client {:.0} us per identifier",
        median(dp.clone()) / 1e3,
        median(client.clone()) / 1e3
    );
    json!({
        "identifiers_per_request": batch,
        "requests": iters,
        "dp_evaluate_cpu_ns_per_identifier": median(dp),
        "client_blind_finalize_cpu_ns_per_identifier": median(client),
        "request_bytes": up,
        "response_bytes": down,
    })
}

/// A synthetic zone of 2^k slots at load 0.9 (one 160-byte record per identifier, which fills
/// one 256-byte slot), as `examples/pir_bench.rs` builds it.
fn build(log_slots: u32) -> (ZonePirDb<MulPir>, usize, Duration, Duration) {
    let ids = ((1usize << log_slots) as f64 * LOAD) as usize;
    let mut rng = rand::thread_rng();
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let entries = (0..ids).map(|i| {
        let mut record = vec![0u8; 160];
        rng.fill_bytes(&mut record);
        (number(i), vec![record])
    });
    let zone = Name::parse("1.e164.mimi.arpa.", None).expect("zone name");
    let options = BuildOptions {
        slot_size: SLOT_SIZE,
        bucket_slots: BUCKET_SLOTS,
        load: LOAD,
        ..BuildOptions::default()
    };
    let (cpu, wall) = (process_cpu_time(), Instant::now());
    let (db, _) = ZonePirDb::<MulPir>::build(&zone, &secret, 1, &options, entries).expect("build");
    (db, ids, process_cpu_time() - cpu, wall.elapsed())
}

/// Server CPU per query (one thread), per batched pair, client CPU, sizes; and the AP's CPU for
/// a lookup in an encrypted replica (keywords + opening the slot from its two buckets).
fn pir_costs(log_slots: u32, lookups: usize, pool1: &rayon::ThreadPool) -> Value {
    let (db, ids, build_cpu, build_wall) = build(log_slots);
    eprintln!(
        "2^{log_slots} slots, {ids} identifiers: build {:.1} s CPU, {:.1} s wall",
        build_cpu.as_secs_f64(),
        build_wall.as_secs_f64()
    );
    let c = thread_cpu_time();
    let (client, key_bytes) = ZonePirClient::<MulPir>::new(db.config().clone()).expect("client");
    let keygen = thread_cpu_time() - c;
    let c = thread_cpu_time();
    let key = db.parse_key(&key_bytes).expect("key");
    let parse = thread_cpu_time() - c;
    let server = db.shard_server(0).expect("shard 0");
    let mut rng = rand::thread_rng();
    let (mut single, mut pair, mut query, mut decode, mut local) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for l in 0..lookups {
        let present = l % 2 == 0;
        let input = number(if present {
            rng.gen_range(0..ids)
        } else {
            ids + rng.gen_range(0..ids)
        });
        let (state, request) = oprf::blind(&[input.as_bytes()]).expect("blind");
        let response = db.oprf_evaluate(&request).expect("evaluate");
        let y = state
            .finalize(&response, &db.config().oprf_public_key)
            .expect("finalize")[0];
        let probe = client.probe(&y, 0);
        let c = thread_cpu_time();
        let queries = client.queries(&probe).expect("queries");
        query.push(ns(thread_cpu_time() - c) / 2.0);
        let mut buckets = Vec::new();
        for (q, bucket) in queries.iter().zip(probe.buckets) {
            let (response, cpu) = pool1.install(|| {
                let c = thread_cpu_time();
                let r = server.answer(&key, q).expect("answer");
                (r, thread_cpu_time() - c)
            });
            single.push(ns(cpu));
            let c = thread_cpu_time();
            buckets.push(
                client
                    .pir_client()
                    .decode(bucket as usize, &response)
                    .expect("decode"),
            );
            decode.push(ns(thread_cpu_time() - c));
        }
        // Both bucket queries of the lookup in one pass over the database.
        let cpu = pool1.install(|| {
            let c = thread_cpu_time();
            let out = server.answer_batch(&[(&key, &queries[0][..]), (&key, &queries[1][..])]);
            assert!(out.iter().all(|r| r.is_ok()));
            thread_cpu_time() - c
        });
        pair.push(ns(cpu));
        // What an AP holding the replica does instead of the PIR: the same two buckets, local.
        let c = thread_cpu_time();
        let probe = client.probe(&y, 0);
        let chunk = client
            .open_buckets(&probe, [&buckets[0], &buckets[1]])
            .expect("open");
        local.push(ns(thread_cpu_time() - c));
        assert_eq!(chunk.is_some(), present, "lookup of {input}");
    }
    eprintln!(
        "2^{log_slots}: server {:.0} ms CPU per query (one thread), {:.0} ms per batched pair",
        median(single.clone()) / 1e6,
        median(pair.clone()) / 1e6
    );
    let layout = server.layout();
    json!({
        "log_slots": log_slots,
        "slots": 1u64 << log_slots,
        "identifiers": ids,
        "buckets": db.config().buckets,
        "plaintexts": layout.num_pts,
        "buckets_per_plaintext": layout.elements_per_pt,
        "expansion_level": layout.level,
        "lookups": lookups,
        "server_cpu_ns_per_query": median(single.clone()),
        "server_cpu_ns_per_query_samples": single,
        "server_cpu_ns_per_batched_pair": median(pair),
        "client_query_cpu_ns": median(query),
        "client_decode_cpu_ns": median(decode),
        "client_keygen_cpu_ns": ns(keygen),
        "server_key_parse_cpu_ns": ns(parse),
        "replica_local_lookup_cpu_ns": median(local),
        "query_bytes": server.query_len(),
        "response_bytes": server.response_len(),
        "eval_key_bytes": key_bytes.len(),
        "server_key_memory_bytes": MulPirServer::key_memory_bytes(&key),
        "db_memory_bytes": db.memory_bytes(),
        "build_cpu_ns": ns(build_cpu),
        "build_wall_ns": ns(build_wall),
    })
}

/// In-place updates of one changed mapping each (replace, remove, add in turn) on a 2^16
/// zone: buckets touched (the delta a replica holder downloads) and DP CPU per change.
fn delta_costs(updates: usize, pool1: &rayon::ThreadPool) -> Value {
    let log_slots = 16;
    let (db, ids, _, _) = build(log_slots);
    let mut rng = rand::thread_rng();
    let kinds = ["replace", "remove", "add"];
    let mut touched = [0usize; 3];
    let mut done = [0usize; 3];
    let (mut cpu, mut evictions, mut failed) = (Vec::new(), 0, 0);
    // Distinct targets: a second removal of one identifier would touch nothing.
    let targets = rand::seq::index::sample(&mut rng, ids, updates.min(ids));
    for (u, target) in targets.iter().enumerate() {
        let mut record = vec![0u8; 160];
        rng.fill_bytes(&mut record);
        let kind = u % 3;
        let change = match kind {
            0 => (number(target), vec![record]),
            1 => (number(target), Vec::new()),
            _ => (number(2 * ids + u), vec![record]),
        };
        let result = pool1.install(|| {
            let c = thread_cpu_time();
            let r = db.update(vec![change]);
            (r, thread_cpu_time() - c)
        });
        match result {
            (Ok(r), c) => {
                touched[kind] += r.buckets_touched;
                done[kind] += 1;
                evictions += r.evictions;
                cpu.push(ns(c));
            }
            (Err(e), _) => {
                failed += 1;
                eprintln!("update {u}: {e}");
            }
        }
    }
    let total: usize = done.iter().sum();
    let per_change = touched.iter().sum::<usize>() as f64 / total.max(1) as f64;
    let bucket_bytes = BUCKET_SLOTS * SLOT_SIZE + REPLICA_BUCKET_OVERHEAD;
    eprintln!("{total} updates on 2^{log_slots}: {per_change:.2} buckets touched per change");
    let by_kind: serde_json::Map<String, Value> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let v = touched[i] as f64 / done[i].max(1) as f64;
            (
                k.to_string(),
                json!({"changes": done[i], "buckets_touched_per_change": v}),
            )
        })
        .collect();
    json!({
        "log_slots": log_slots,
        "changes": total,
        "failed": failed,
        "mix": "one change per update: replace, remove, add in turn",
        "buckets_touched_per_change": per_change,
        "by_kind": by_kind,
        "evictions_per_change": evictions as f64 / total.max(1) as f64,
        "bucket_bytes_on_wire": bucket_bytes,
        "delta_bytes_per_change": per_change * bucket_bytes as f64,
        "dp_update_cpu_ns_per_change": median(cpu),
    })
}

fn main() {
    let args = Args::parse();
    let log_slots =
        args.log_slots
            .clone()
            .unwrap_or(if args.quick { vec![16] } else { vec![16, 18] });
    let lookups = args.lookups.unwrap_or(if args.quick { 2 } else { 5 });
    let oprf_iters = args
        .oprf_iters
        .unwrap_or(if args.quick { 300 } else { 2000 });
    let updates = args.updates.unwrap_or(if args.quick { 60 } else { 900 });
    tune_allocator();
    // One-thread pool: the server figures are the cost of one query on one core.
    let pool1 = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("single-thread pool");
    let started = Instant::now();

    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let zone = Name::parse("1.e164.mimi.arpa.", None).expect("zone name");
    let key = OprfKey::derive(&secret, &zone, 1).expect("OPRF key");
    let oprf = json!({
        "batch_1": oprf_costs(&key, 1, oprf_iters),
        "batch_64": oprf_costs(&key, oprf::MAX_BATCH, (oprf_iters / 20).max(5)),
    });
    let sizes: Vec<Value> = log_slots
        .iter()
        .map(|&k| pir_costs(k, lookups, &pool1))
        .collect();
    let delta = delta_costs(updates, &pool1);

    let bucket_bytes = BUCKET_SLOTS * SLOT_SIZE + REPLICA_BUCKET_OVERHEAD;
    let out = json!({
        "source": "examples/scale_costs.rs",
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
        "cores": rayon::current_num_threads(),
        "oprf": oprf,
        "pir": {
            "scheme": "MulPIR (BFV N=4096)",
            "slot_size": SLOT_SIZE,
            "bucket_slots": BUCKET_SLOTS,
            "load": LOAD,
            "sizes": sizes,
            // The 2^20 run of docs/private-lookup.md (tools/bench/pir.sh 16,18,20 3 1500),
            // too slow to build here by default: the model's cross-check.
            "documented_2_20": {
                "source": "docs/private-lookup.md, tools/bench/pir.sh 16,18,20 3 1500",
                "log_slots": 20,
                "expansion_level": 9,
                "server_cpu_ns_per_query": 1.26e9,
                "query_bytes": 42_039,
                "response_bytes": 56_352,
                "eval_key_bytes": 1_675_164,
            },
        },
        "replica": {
            "slot_size": SLOT_SIZE,
            "bucket_slots": BUCKET_SLOTS,
            "load": LOAD,
            "replica_bucket_overhead_bytes": REPLICA_BUCKET_OVERHEAD,
            "replica_message_payload_bytes": REPLICA_MESSAGE_PAYLOAD,
            "buckets_per_message": REPLICA_MESSAGE_PAYLOAD / bucket_bytes,
            "replica_bytes_per_mapping": bucket_bytes as f64 / (BUCKET_SLOTS as f64 * LOAD),
            "stored_bytes_per_mapping": SLOT_SIZE as f64 / LOAD,
        },
        "delta": delta,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
}
