//! Private-lookup benchmark: builds a synthetic zone of 2^k slots of 256 bytes for each
//! scheme (MulPIR: 4-slot buckets at load 0.9; Respire: 1-slot buckets at load 0.45, as
//! `pir::registry::Scheme::table` sets them), then measures OPRF and PIR lookups against it.
//! Run through `tools/bench/pir.sh`, which documents the arguments.
//!
//! Usage: pir_bench [--schemes mulpir,respire] [--log-slots 16,18,20] [--queries N]
//!                  [--slot-size B] [--updates N] [--batches 16,32,64]
//!
//! `--updates N` also times N incremental updates within the epoch (each replaces one
//! identifier's record, removes one or adds one) against the full build.
//!
//! `--batches L,..` also measures Respire batch queries: for each L, a zone built to take
//! batches of 2L PIR elements (L lookups of two cuckoo buckets), L lookups in one batch.

use std::time::{Duration, Instant};

use mimi_discovery::name::Name;
use mimi_discovery::pir::mulpir::{self, AnswerTimings};
use mimi_discovery::pir::oprf;
use mimi_discovery::pir::{BuildOptions, Scheme, ZoneClient, ZoneDb, ZoneKey};
use rand::{Rng, RngCore};

use mimi_discovery::sys::thread_cpu_time as thread_cpu;

#[path = "support/measure.rs"]
mod measure;
use measure::{median, ms, status_kib};

struct Args {
    schemes: Vec<Scheme>,
    log_slots: Vec<u32>,
    queries: usize,
    slot_size: usize,
    updates: usize,
    batches: Vec<usize>,
}

fn parse_args() -> Args {
    let mut a = Args {
        schemes: Scheme::ALL.to_vec(),
        log_slots: vec![16, 18, 20],
        queries: 3,
        slot_size: 256,
        updates: 0,
        batches: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--log-slots" => {
                a.log_slots = value.split(',').filter_map(|v| v.parse().ok()).collect()
            }
            "--queries" => a.queries = value.parse().unwrap_or(3),
            "--schemes" => a.schemes = value.split(',').filter_map(Scheme::from_name).collect(),
            "--slot-size" => a.slot_size = value.parse().unwrap_or(256),
            "--updates" => a.updates = value.parse().unwrap_or(0),
            "--batches" => a.batches = value.split(',').filter_map(|v| v.parse().ok()).collect(),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

struct Row {
    scheme: Scheme,
    log_slots: u32,
    ids: usize,
    query: usize,
    response: usize,
    eval_key: usize,
    oprf_up: usize,
    oprf_down: usize,
    server_1t: f64,
    server_1t_cpu: f64,
    server_all: f64,
    server_pair_1t_cpu: f64,
    client_query: f64,
    client_decode: f64,
    keygen: f64,
    build_s: f64,
    db_mib: f64,
    rss_mib: f64,
    /// MulPIR only: bits of noise in the response (Respire's margin is measured by its tests).
    noise: Option<usize>,
    phases: AnswerTimings,
}

fn run(args: &Args, scheme: Scheme, log_slots: u32, pool1: &rayon::ThreadPool) -> Row {
    let slots = 1usize << log_slots;
    let mut options = BuildOptions {
        slot_size: args.slot_size,
        ..BuildOptions::default()
    };
    scheme.table(&mut options);
    let ids = (slots as f64 * options.load) as usize;
    let zone = Name::parse("1.e164.mimi.arpa.", None).expect("zone name");
    let mut rng = rand::thread_rng();
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    println!(
        "\n== {scheme}: 2^{log_slots} slots of {} bytes: {ids} identifiers (load {}, {}-slot buckets) ==",
        args.slot_size, options.load, options.bucket_slots
    );
    let entries = synthetic_entries(ids);
    let rss_before = status_kib("VmRSS:");
    let started = Instant::now();
    let (db, report) = ZoneDb::build(scheme, &zone, &secret, 1, &options, entries).expect("build");
    let build = started.elapsed();
    let rss_after = status_kib("VmRSS:");
    let shape = match &db {
        ZoneDb::MulPir(db) => {
            let l = *db.shard_server(0).expect("shard 0").layout();
            format!(
                "PIR matrix {}x{} of {} plaintexts, expansion depth {}",
                l.d1, l.d2, l.num_pts, l.level
            )
        }
        ZoneDb::Respire(db) => {
            let (nu1, nu2, nu3) = db.shard_server(0).expect("shard 0").dimensions();
            format!("2^{nu1} x 2^{nu2} plaintexts of 2^{nu3} records")
        }
    };
    println!(
        "build {:.1} s (OPRF+seal {:.1} s, cuckoo {:.2} s in {} attempt(s), PIR preprocessing {:.1} s); \
         load {:.3}; {} buckets; {shape}",
        build.as_secs_f64(),
        report.oprf_time.as_secs_f64(),
        report.table_time.as_secs_f64(),
        report.attempts,
        report.pir_time.as_secs_f64(),
        report.max_shard_load,
        db.config().buckets,
    );
    if args.updates > 0 {
        time_updates(&db, args.updates, ids, build);
    }
    let db_mib = db.memory_bytes() as f64 / (1 << 20) as f64;
    println!(
        "PIR database {:.0} MiB in memory; process RSS {:.0} -> {:.0} MiB (peak {:.0} MiB)",
        db_mib,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0
    );

    let started = Instant::now();
    let (client, key_bytes) = ZoneClient::new(db.config().clone()).expect("client");
    let keygen = started.elapsed();
    let started = Instant::now();
    let key = db.parse_key(&key_bytes).expect("key");
    println!(
        "client keys {:.0} ms, {} bytes of evaluation keys; server key parse {:.0} ms",
        ms(keygen),
        key_bytes.len(),
        ms(started.elapsed())
    );

    let mut s1 = Vec::new();
    let mut s1cpu = Vec::new();
    let mut pair1 = Vec::new();
    let mut sall = Vec::new();
    let mut cq = Vec::new();
    let mut cd = Vec::new();
    let mut phases = AnswerTimings::default();
    let mut noise = None;
    let (mut oprf_up, mut oprf_down) = (0, 0);
    for q in 0..args.queries {
        let present = q % 2 == 0;
        let (sii, y, up, down) = oprf_of(&db, ids, present);
        (oprf_up, oprf_down) = (up, down);
        let probe = client.probe(&y, 0);
        let started = Instant::now();
        let [qa, qb] = client.queries(&probe).expect("queries");
        cq.push(ms(started.elapsed()) / 2.0);
        let mut responses = Vec::new();
        for query in [&qa, &qb] {
            let (r1, cpu, wall, t) = pool1.install(|| {
                let c = thread_cpu();
                let w = Instant::now();
                let (r, t) = match (&db, &key) {
                    (ZoneDb::MulPir(db), ZoneKey::MulPir(key)) => db
                        .shard_server(0)
                        .expect("shard 0")
                        .answer_timed(key, query)
                        .expect("answer"),
                    _ => (
                        db.answer(0, &key, query).expect("answer"),
                        AnswerTimings::default(),
                    ),
                };
                (r, thread_cpu() - c, w.elapsed(), t)
            });
            s1.push(ms(wall));
            s1cpu.push(ms(cpu));
            phases = t;
            let w = Instant::now();
            let rall = db.answer(0, &key, query).expect("answer");
            sall.push(ms(w.elapsed()));
            assert_eq!(r1.len(), rall.len());
            responses.push(rall);
        }
        // Both bucket queries of the lookup in one pass over the database.
        let (batch, bt) = pool1.install(|| {
            let c = thread_cpu();
            let out = db.answer_batch(0, &[(&key, &qa[..]), (&key, &qb[..])]);
            (out, thread_cpu() - c)
        });
        assert!(batch.iter().all(|r| r.is_ok()));
        pair1.push(ms(bt));
        let started = Instant::now();
        let chunk = client
            .open(&probe, [&responses[0], &responses[1]])
            .expect("open");
        cd.push(ms(started.elapsed()) / 2.0);
        assert_eq!(chunk.is_some(), present, "lookup of {sii}");
        if let ZoneClient::MulPir(client) = &client {
            let bits = client
                .pir_client()
                .response_noise_bits(&responses[0])
                .expect("noise");
            noise = Some(noise.unwrap_or(0).max(bits));
        }
        println!(
            "query {q} ({}): server 1 thread {:.0} ms wall / {:.0} ms CPU, {} threads {:.0} ms wall; \
             both bucket queries batched, 1 thread {:.0} ms CPU",
            if present { "present" } else { "absent" },
            s1[s1.len() - 1],
            s1cpu[s1cpu.len() - 1],
            rayon::current_num_threads(),
            sall[sall.len() - 1],
            pair1[pair1.len() - 1],
        );
    }
    if let Some(noise) = noise {
        println!(
            "phases of the last single-thread answer (CPU): parse {:.0} ms, expansion {:.0} ms, inner products {:.0} ms, \
             ciphertext products {:.0} ms, relinearise+switch+encode {:.0} ms",
            ms(phases.parse.cpu),
            ms(phases.expand.cpu),
            ms(phases.inner_products.cpu),
            ms(phases.multiply.cpu),
            ms(phases.finish.cpu)
        );
        println!(
            "response noise {noise} bits (decryption fails at 42: {} bits of margin)",
            42 - noise as i64
        );
    }
    Row {
        scheme,
        log_slots,
        ids,
        query: db.query_len(),
        response: db.response_len(),
        eval_key: key_bytes.len(),
        oprf_up,
        oprf_down,
        server_1t: median(s1),
        server_1t_cpu: median(s1cpu),
        server_all: median(sall),
        server_pair_1t_cpu: median(pair1),
        client_query: median(cq),
        client_decode: median(cd),
        keygen: ms(keygen),
        build_s: build.as_secs_f64(),
        db_mib,
        rss_mib: status_kib("VmHWM:") as f64 / 1024.0,
        noise,
        phases,
    }
}

/// `ids` identifiers `+12000000000...` with one random 160-byte record each.
fn synthetic_entries(ids: usize) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut rng = rand::thread_rng();
    (0..ids)
        .map(|i| {
            let mut record = vec![0u8; 160];
            rng.fill_bytes(&mut record);
            (format!("+1{:010}", 2_000_000_000 + i), vec![record])
        })
        .collect()
}

/// A random identifier of the synthetic zone (present) or outside it, with its OPRF output
/// and the OPRF request and response sizes.
fn oprf_of(db: &ZoneDb, ids: usize, present: bool) -> (String, oprf::OprfOutput, usize, usize) {
    let mut rng = rand::thread_rng();
    let sii = if present {
        format!("+1{:010}", 2_000_000_000 + rng.gen_range(0..ids))
    } else {
        format!("+1{:010}", 3_000_000_000u64 + rng.gen_range(0..ids as u64))
    };
    let (state, request) = oprf::blind(&[sii.as_bytes()]).expect("blind");
    let response = db.oprf_evaluate(&request).expect("oprf");
    let y = state
        .finalize(&response, &db.config().oprf_public_key)
        .expect("finalize")[0];
    (sii, y, request.len(), response.len())
}

struct BatchRow {
    log_slots: u32,
    lookups: usize,
    buckets: usize,
    bucket_shape: (usize, usize, usize),
    queries: usize,
    up: usize,
    down: usize,
    server_cpu: f64,
    server_all: f64,
    client: f64,
    db_mib: f64,
    build_s: f64,
}

/// Respire batch queries: a zone taking batches of `2 * lookups` elements, `lookups`
/// lookups (alternately present and absent) in one batch, answered on one thread (thread
/// CPU time) and on all cores; every present identifier must be found, every absent not.
fn run_batched(args: &Args, log_slots: u32, lookups: usize, pool1: &rayon::ThreadPool) -> BatchRow {
    let slots = 1usize << log_slots;
    let mut options = BuildOptions {
        slot_size: args.slot_size,
        batch: (2 * lookups).next_power_of_two(),
        ..BuildOptions::default()
    };
    Scheme::Respire.table(&mut options);
    let ids = (slots as f64 * options.load) as usize;
    let zone = Name::parse("1.e164.mimi.arpa.", None).expect("zone name");
    let mut rng = rand::thread_rng();
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let entries = synthetic_entries(ids);
    let started = Instant::now();
    let (db, _) =
        ZoneDb::build(Scheme::Respire, &zone, &secret, 1, &options, entries).expect("build");
    let build = started.elapsed();
    let ZoneDb::Respire(inner) = &db else {
        unreachable!("built as Respire")
    };
    let (layout, bucket_shape) = inner
        .shard_server(0)
        .expect("shard 0")
        .batch_dimensions()
        .expect("batched");
    let db_mib = db.memory_bytes() as f64 / (1 << 20) as f64;
    println!(
        "\n== Respire batches: 2^{log_slots} slots, batches of {} elements ({lookups} lookups): {} buckets \
         of 2^{} x 2^{} x 2^{}; build {:.1} s; PIR database with bucket copies {db_mib:.0} MiB (peak RSS {:.0} MiB) ==",
        options.batch,
        layout.buckets(),
        bucket_shape.0,
        bucket_shape.1,
        bucket_shape.2,
        build.as_secs_f64(),
        status_kib("VmHWM:") as f64 / 1024.0
    );
    let (client, key_bytes) = ZoneClient::new(db.config().clone()).expect("client");
    let key = db.parse_key(&key_bytes).expect("key");
    let mut present = Vec::with_capacity(lookups);
    let mut probes = Vec::with_capacity(lookups);
    let mut oprf_bytes = 0;
    for q in 0..lookups {
        let is_present = q % 2 == 0;
        let (_, y, up, down) = oprf_of(&db, ids, is_present);
        oprf_bytes += up + down;
        present.push(is_present);
        probes.push(client.probe(&y, 0));
    }
    let started = Instant::now();
    let batches = client.batch_probes(&probes).expect("batch queries");
    let mut client_time = started.elapsed();
    let (mut cpu, mut all, mut up, mut down, mut queries) = (0.0, 0.0, 0, 0, 0);
    for batch in &batches {
        let (responses, c) = pool1.install(|| {
            let c = thread_cpu();
            let r: Vec<Vec<u8>> = batch
                .queries
                .iter()
                .map(|q| db.answer(batch.shard, &key, q).expect("answer"))
                .collect();
            (r, thread_cpu() - c)
        });
        cpu += ms(c);
        let w = Instant::now();
        let again: Vec<Vec<u8>> = {
            use rayon::prelude::*;
            batch
                .queries
                .par_iter()
                .map(|q| db.answer(batch.shard, &key, q).expect("answer"))
                .collect()
        };
        all += ms(w.elapsed());
        assert_eq!(again.len(), responses.len());
        queries += batch.queries.len();
        up += batch.queries.iter().map(Vec::len).sum::<usize>();
        down += responses.iter().map(Vec::len).sum::<usize>();
        let refs: Vec<&[u8]> = responses.iter().map(Vec::as_slice).collect();
        let started = Instant::now();
        let opened = client.open_batch(&probes, batch, &refs).expect("open");
        client_time += started.elapsed();
        for (&i, chunk) in batch.members.iter().zip(opened) {
            assert_eq!(chunk.expect("slot").is_some(), present[i], "lookup {i}");
        }
    }
    let per = lookups as f64;
    println!(
        "{} batch(es), {queries} bucket queries: server {:.0} ms CPU on one thread ({:.0} ms per lookup), \
         {:.0} ms wall on {} threads; client {:.0} ms; every lookup right",
        batches.len(),
        cpu,
        cpu / per,
        all,
        rayon::current_num_threads(),
        ms(client_time)
    );
    BatchRow {
        log_slots,
        lookups,
        buckets: layout.buckets(),
        bucket_shape,
        queries,
        up: up + oprf_bytes / 2,
        down: down + oprf_bytes / 2,
        server_cpu: cpu / per,
        server_all: all / per,
        client: ms(client_time) / per,
        db_mib,
        build_s: build.as_secs_f64(),
    }
}

/// Times `n` incremental updates (replace, remove, add in turn) of the built database.
fn time_updates(db: &ZoneDb, n: usize, ids: usize, build: Duration) {
    let mut rng = rand::thread_rng();
    let mut total = Vec::new();
    let (mut seal, mut table, mut encode, mut swap) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut buckets, mut plaintexts, mut evictions) = (0, 0, 0);
    for u in 0..n {
        let mut record = vec![0u8; 160];
        rng.fill_bytes(&mut record);
        let change = match u % 3 {
            0 => (
                format!("+1{:010}", 2_000_000_000 + rng.gen_range(0..ids)),
                vec![record],
            ),
            1 => (
                format!("+1{:010}", 2_000_000_000 + rng.gen_range(0..ids)),
                Vec::new(),
            ),
            _ => (
                format!("+1{:010}", 4_000_000_000u64 + u as u64),
                vec![record],
            ),
        };
        match db.update(vec![change]) {
            Ok(r) => {
                total.push(ms(r.elapsed));
                seal.push(ms(r.seal_time));
                table.push(ms(r.table_time));
                encode.push(ms(r.encode_time));
                swap.push(ms(r.swap_time));
                buckets += r.buckets_touched;
                plaintexts += r.plaintexts_reencoded;
                evictions += r.evictions;
            }
            Err(e) => println!("update {u}: {e}"),
        }
    }
    let done = total.len().max(1);
    let max = total.iter().copied().fold(0.0, f64::max);
    println!(
        "{} incremental updates: median {:.2} ms (max {:.2} ms) against a full build of {:.1} s; \
         median phases: OPRF+seal {:.2} ms, cuckoo {:.3} ms, re-encode {:.2} ms, swap {:.3} ms; \
         per update {:.1} buckets, {:.1} plaintexts, {:.2} evictions",
        total.len(),
        median(total),
        max,
        build.as_secs_f64(),
        median(seal),
        median(table),
        median(encode),
        median(swap),
        buckets as f64 / done as f64,
        plaintexts as f64 / done as f64,
        evictions as f64 / done as f64,
    );
}

fn main() {
    let args = parse_args();
    mimi_discovery::sys::tune_allocator();
    let pool1 = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("single-thread pool");
    println!(
        "MulPIR (BFV N={}, q = 28+27+27+27 bits, t = {}); Respire (Tables 3-5: d1 = 2048, q1 ~ 2^56, \
         d2 = 512, p = 16); {} cores for the all-cores runs",
        mulpir::DEGREE,
        mulpir::PLAINTEXT_MODULUS,
        rayon::current_num_threads()
    );
    let mut rows: Vec<Row> = Vec::new();
    for &k in &args.log_slots {
        for &scheme in &args.schemes {
            rows.push(run(&args, scheme, k, &pool1));
        }
    }
    let mut batch_rows = Vec::new();
    if args.schemes.contains(&Scheme::Respire) {
        for &k in &args.log_slots {
            for &lookups in &args.batches {
                batch_rows.push(run_batched(&args, k, lookups, &pool1));
            }
        }
    }
    let kb = |b: usize| b as f64 / 1000.0;
    println!("\n## Per PIR query (one bucket)\n");
    println!("| scheme | slots (identifiers) | query | response | eval keys | server 1 thread (CPU) | server all cores | client query + decode | keygen | build | PIR DB | peak RSS | noise margin | MulPIR 1-thread CPU: expand / inner products / ct products |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | 2^{} ({}) | {:.1} KB | {:.1} KB | {:.2} MB | {:.0} ms ({:.0} ms) | {:.0} ms | {:.1} + {:.1} ms | {:.0} ms | {:.1} s | {:.0} MiB | {:.0} MiB | {} | {} |",
            r.scheme,
            r.log_slots,
            r.ids,
            kb(r.query),
            kb(r.response),
            r.eval_key as f64 / 1e6,
            r.server_1t,
            r.server_1t_cpu,
            r.server_all,
            r.client_query,
            r.client_decode,
            r.keygen,
            r.build_s,
            r.db_mib,
            r.rss_mib,
            r.noise
                .map_or("see tests".to_string(), |n| format!("{} bits", 42 - n as i64)),
            match r.scheme {
                Scheme::MulPir => format!(
                    "{:.0} / {:.0} / {:.0} ms",
                    ms(r.phases.expand.cpu),
                    ms(r.phases.inner_products.cpu),
                    ms(r.phases.multiply.cpu)
                ),
                // Respire's split: tools/bench/respire.sh.
                Scheme::Respire => "-".to_string(),
            },
        );
    }
    println!("\n## Per lookup (OPRF + 2 PIR queries) beside draft-party-mimi-user-private-discovery, Table 2 (1M-record shard)\n");
    println!("| scheme | slots | upload (draft 14 KB) | download (draft 21 KB) | client keys (draft storage 5 MB) | client time (draft 0.1 s) | server 1 thread (draft 0.8-1 s) | server 1 thread, 2 queries batched |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let up = r.oprf_up + 2 * r.query;
        let down = r.oprf_down + 2 * r.response;
        let client = 2.0 * (r.client_query + r.client_decode);
        let server = 2.0 * r.server_1t_cpu;
        let pair = r.server_pair_1t_cpu;
        println!(
            "| {} | 2^{} | {:.1} KB ({:.1}x) | {:.1} KB ({:.1}x) | {:.2} MB ({:.2}x) | {:.0} ms ({:.1}x) | {:.0} ms ({:.1}x-{:.1}x) | {:.0} ms ({:.1}x-{:.1}x) |",
            r.scheme,
            r.log_slots,
            kb(up),
            kb(up) / 14.0,
            kb(down),
            kb(down) / 21.0,
            r.eval_key as f64 / 1e6,
            r.eval_key as f64 / 5e6,
            client,
            client / 100.0,
            server,
            server / 1000.0,
            server / 800.0,
            pair,
            pair / 1000.0,
            pair / 800.0,
        );
    }
    if batch_rows.is_empty() {
        return;
    }
    println!("\n## Respire batch queries, per lookup (issue 13's goals at 2^20: 14 KB up, 21 KB down, 0.5 s server in batches of 64, one thread)\n");
    println!("| slots | lookups per batch | PIR buckets (shape) | bucket queries | upload | download | server 1 thread CPU | server all cores | client | PIR DB with copies | build |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &batch_rows {
        let per = r.lookups as f64;
        println!(
            "| 2^{} | {} | {} (2^{} x 2^{} x 2^{}) | {} | {:.1} KB ({:.2}x) | {:.1} KB ({:.2}x) | {:.0} ms ({:.2}x of 0.5 s) | {:.0} ms | {:.1} ms | {:.0} MiB | {:.0} s |",
            r.log_slots,
            r.lookups,
            r.buckets,
            r.bucket_shape.0,
            r.bucket_shape.1,
            r.bucket_shape.2,
            r.queries,
            kb(r.up) / per,
            kb(r.up) / per / 14.0,
            kb(r.down) / per,
            kb(r.down) / per / 21.0,
            r.server_cpu,
            r.server_cpu / 500.0,
            r.server_all,
            r.client,
            r.db_mib,
            r.build_s,
        );
    }
}
