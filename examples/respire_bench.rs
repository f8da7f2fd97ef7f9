//! Respire single-query benchmark (src/pir/respire): for each size 2^k records of 256 bytes
//! (four records per large-ring plaintext, ν3 = 2, and ν1 = 9 where possible, as the paper's
//! single-query set), builds a database of random records, then times Q queries at random
//! indexes: the client's query and decoding, and the server's expansion, first dimension,
//! folding + rotation and response (projection, vectorisation, compression) on one thread
//! (thread CPU time). Every decoded record must equal the record at its index. Run through
//! `tools/bench/respire.sh`, which documents the arguments.
//!
//! Usage: respire_bench [--log-records 16,18] [--queries N]
//!
//! Sizes are computed from the parameters and the query actually built (module docs of
//! `query.rs` and `response.rs`); times and memory are measured. The Respire code runs on the
//! calling thread only (no rayon), so thread CPU time is the single-thread server cost.

use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use mimi_discovery::pir::respire::compress::client_phase;
use mimi_discovery::pir::respire::keyswitch::residue_bits;
use mimi_discovery::pir::respire::record::{pack_records, record_to_coeffs};
use mimi_discovery::pir::respire::{
    decode_record, decode_response, Ciphertext, Database, ExpansionKeys, QueryParams, Responder,
    ResponseKeys, ResponseParams, RingElement, PLAINTEXT_MODULUS,
};
use mimi_discovery::sys::thread_cpu_time as thread_cpu;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Respire Table 1, 2^20 x 256 B (`/work/shared/notes/pir-schemes.md`, section 1): query,
/// response and public parameters in the paper's KB/MB (2^10, 2^20 bytes), seconds per fetch
/// on one core of a Xeon 8488C.
const PAPER_QUERY_KIB: f64 = 4.1;
const PAPER_RESPONSE_KIB: f64 = 2.0;
const PAPER_KEYS_MIB: f64 = 3.9;
const PAPER_SERVER_S: f64 = 1.26;
/// Issue 13's goals per lookup of two fetches (the draft's Table 2, kB = 1000 bytes) and per
/// fetch on one thread, unbatched.
const GOAL_UP_KB: f64 = 14.0;
const GOAL_DOWN_KB: f64 = 21.0;
const GOAL_SERVER_S: f64 = 1.0;

#[path = "support/measure.rs"]
mod measure;
use measure::{median, ms, status_kib};

struct Args {
    log_records: Vec<usize>,
    queries: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        log_records: vec![16, 18],
        queries: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--log-records" => {
                a.log_records = value
                    .split(',')
                    .map(|v| v.trim().parse().context("--log-records"))
                    .collect::<Result<_>>()?
            }
            "--queries" => a.queries = value.parse().context("--queries")?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// Record `index` of the database: 256 bytes from ChaCha20 keyed by the run's seed and the
/// index, so the records need not be kept beside the database to check the answers.
fn record_at(seed: &[u8; 32], index: usize, len: usize) -> Vec<u8> {
    let mut rng = ChaCha20Rng::from_seed(*seed);
    rng.set_stream(index as u64);
    let mut r = vec![0u8; len];
    rng.fill_bytes(&mut r);
    r
}

/// The shape of 2^k records with ν3 = 2: ν1 = 9 where possible (at least one column).
fn shape(log_records: usize) -> Result<(usize, usize, usize)> {
    let nu3 = 2;
    ensure!(log_records >= nu3 + 2, "2^{log_records} records is too few");
    let log_plaintexts = log_records - nu3;
    let nu1 = 9.min(log_plaintexts - 1);
    Ok((nu1, log_plaintexts - nu1, nu3))
}

/// Bytes of `n` residues at `bits` bits each, bit-packed and padded to a byte.
fn packed(n: usize, bits: u32) -> usize {
    (n * bits as usize).div_ceil(8)
}

/// Bytes of expansion keys with seeded masks: per gadget row a 32-byte seed and one ring
/// element at `bits` bits a coefficient.
fn expansion_key_bytes(keys: &ExpansionKeys, row: usize) -> usize {
    keys.keys().iter().map(|k| k.gadget().digits() * row).sum()
}

#[derive(Default)]
struct Row {
    log_records: usize,
    query: usize,
    response: usize,
    keys_impl: usize,
    keys_shared: usize,
    db_mib: f64,
    build_s: f64,
    expand: f64,
    first: f64,
    fold: f64,
    respond: f64,
    total: f64,
    total_wall: f64,
    client_query: f64,
    client_decode: f64,
}

fn run(log_records: usize, queries: usize, rp: &ResponseParams) -> Result<Row> {
    let (nu1, nu2, nu3) = shape(log_records)?;
    let qp = QueryParams::respire_with_rotation(nu1, nu2, nu3)?;
    let ring = qp.rlwe().ring();
    let d = ring.degree();
    let per_plaintext = rp.records_per_plaintext();
    ensure!(per_plaintext == 1 << nu3, "records per plaintext");
    let record_bytes = rp.record_bytes();
    let n = 1usize << log_records;
    println!(
        "\n== 2^{log_records} records of {record_bytes} bytes: 2^{} plaintexts as 2^{nu1} x 2^{nu2}, \
         2^{nu3} records each ==",
        nu1 + nu2
    );
    let mut rng = rand::thread_rng();

    let (c, w) = (thread_cpu(), Instant::now());
    let (sk, keys) = qp.keygen(&mut rng)?;
    let (secrets, rkeys) = ResponseKeys::generate(rp, &sk, &mut rng)?;
    println!(
        "client keygen (query + response keys): {:.0} ms CPU ({:.0} ms wall)",
        ms(thread_cpu() - c),
        ms(w.elapsed())
    );

    // Database of random records.
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let rss0 = status_kib("VmRSS:");
    let (c, w) = (thread_cpu(), Instant::now());
    let plaintexts = (0..n / per_plaintext)
        .map(|j| {
            let records: Vec<Vec<u8>> = (0..per_plaintext)
                .map(|r| record_at(&seed, j * per_plaintext + r, record_bytes))
                .collect();
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            pack_records(&refs, PLAINTEXT_MODULUS, d)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let gen_cpu = thread_cpu() - c;
    let gen_wall = w.elapsed();
    let (c, w) = (thread_cpu(), Instant::now());
    let db = Database::from_plaintexts(qp.rlwe(), nu1, nu2, PLAINTEXT_MODULUS, &plaintexts)?;
    let enc_cpu = thread_cpu() - c;
    let enc_wall = w.elapsed();
    let peak_build = status_kib("VmHWM:");
    drop(plaintexts);
    let rss1 = status_kib("VmRSS:");
    // Database::words: 2^(ν1+ν2) plaintexts x limbs x d words of 4 bytes.
    let db_bytes = (1usize << (nu1 + nu2)) * ring.limbs() * d * 4;
    let db_mib = db_bytes as f64 / f64::from(1 << 20);
    println!(
        "build: records generated and packed {:.2} s CPU ({:.2} s wall); database encoding \
         (NTT of every plaintext) {:.2} s CPU ({:.2} s wall)",
        gen_cpu.as_secs_f64(),
        gen_wall.as_secs_f64(),
        enc_cpu.as_secs_f64(),
        enc_wall.as_secs_f64()
    );
    println!(
        "database {db_mib:.0} MiB (computed: 2^{} plaintexts x {} limbs x {d} u32 words); \
         process RSS {:.0} -> {:.0} MiB after dropping the plaintexts; peak {:.0} MiB during the build",
        nu1 + nu2,
        ring.limbs(),
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        peak_build as f64 / 1024.0
    );

    // Sizes, from the parameters.
    let q1_bits = residue_bits(ring.modulus());
    let row_bytes = 32 + packed(d, q1_bits);
    let rlwe_exp = expansion_key_bytes(&keys.rlwe_expansion, row_bytes);
    let gsw_exp = expansion_key_bytes(&keys.gsw_expansion, row_bytes);
    let conversion = 2 * keys.conversion.gadget().digits() * row_bytes;
    let resp_keys = rkeys.wire_bytes(rp);
    let keys_impl = rlwe_exp + gsw_exp + conversion + resp_keys.total();
    let keys_shared = keys_impl - resp_keys.projection;
    let query_rows = 1usize << nu1;
    let query_cols = (nu2 + nu3) * qp.gsw_gadget().digits();
    let query_bytes = 2 * 32 + packed(query_rows, q1_bits) + packed(query_cols, q1_bits);
    let response_bytes = rp.response_bytes();
    println!(
        "query {query_bytes} B (computed: two 32-byte seeds + {query_rows} row and {query_cols} \
         column coefficients of b at ceil(log2 q1) = {q1_bits} bits, bit-packed)"
    );
    println!("response {response_bytes} B (computed: 512 x 24-bit mask + 512 x 8-bit body)");
    println!(
        "public keys {keys_impl} B as implemented = RLWE expansion {rlwe_exp} + GSW expansion \
         {gsw_exp} + conversion {conversion} + projection {} + vectorisation {} + compression {}; \
         {keys_shared} B with the projection keys shared with the first two GSW-expansion keys \
         (the paper's count; not done yet). Computed with seeded masks (32-byte seed per row in \
         place of its mask, {row_bytes} B a row); the library has no key encoding yet",
        resp_keys.projection, resp_keys.vectorise, resp_keys.compression
    );

    let mut responder = Responder::new(rp, &rkeys)?;
    let mut bytes = vec![0u8; response_bytes];
    let (mut t_exp, mut t_first, mut t_fold, mut t_resp, mut t_total, mut t_wall) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut t_cq, mut t_cd) = (vec![], vec![]);
    let mut failures = 0;
    let (mut worst_margin, mut worst_final) = (f64::INFINITY, 0u64);
    for q in 0..queries {
        let index = rng.gen_range(0..n);
        let c = thread_cpu();
        let query = qp.query(&sk, index, &mut rng)?;
        t_cq.push(ms(thread_cpu() - c));
        ensure!(
            query.rows.coeffs.len() == query_rows && query.columns.coeffs.len() == query_cols,
            "query shape"
        );

        // Server, one thread: the steps of QueryParams::answer, then the response.
        let w = Instant::now();
        let c0 = thread_cpu();
        let expanded = qp.expand_query(&keys, &query)?;
        let c1 = thread_cpu();
        let rlwe = qp.rlwe();
        let zero = Ciphertext {
            a: ring.zero_ntt(),
            b: ring.zero_ntt(),
        };
        let mut columns = vec![zero; db.columns()];
        let mut scratch = rlwe.first_dimension_scratch();
        rlwe.first_dimension(&db, &expanded.rlwes, &mut scratch, &mut columns)?;
        let c2 = thread_cpu();
        let mut gsw_scratch = rlwe.gsw_scratch(qp.gsw_gadget());
        rlwe.fold(&mut columns, &expanded.gsws, &mut gsw_scratch)?;
        columns.truncate(1);
        let mut answer = columns.pop().context("empty fold")?;
        let mut rot_scratch = rlwe.rotation_scratch(nu3)?;
        rlwe.rotate(
            &mut answer,
            &expanded.rotations,
            &mut rot_scratch,
            &mut gsw_scratch,
        )?;
        let c3 = thread_cpu();
        let large_answer = answer.clone();
        let c3b = thread_cpu();
        responder.respond(&mut answer, &mut bytes)?;
        let c4 = thread_cpu();
        let wall = w.elapsed();
        // The clone for the noise check is not server work.
        let clone_cpu = c3b - c3;
        t_exp.push(ms(c1 - c0));
        t_first.push(ms(c2 - c1));
        t_fold.push(ms(c3 - c2));
        t_resp.push(ms(c4 - c3b));
        t_total.push(ms(c4 - c0 - clone_cpu));
        t_wall.push(ms(wall));

        // The steps above are QueryParams::answer_expanded's: check once.
        if q == 0 {
            let reference = qp.answer_expanded(&db, &expanded)?;
            ensure!(
                reference.a.words() == large_answer.a.words()
                    && reference.b.words() == large_answer.b.words(),
                "the timed steps differ from QueryParams::answer_expanded"
            );
        }

        let c = thread_cpu();
        let record = decode_record(rp, &secrets, &bytes)?;
        t_cd.push(ms(thread_cpu() - c));
        let expected = record_at(&seed, index, record_bytes);
        let ok = record == expected;
        if !ok {
            failures += 1;
        }

        // Noise (not timed): the large-ring answer against Δ·x^(-r)·plaintext, and the
        // client's phase mod q3 against (q3/p)·record.
        let base = index & !(per_plaintext - 1);
        let records: Vec<Vec<u8>> = (0..per_plaintext)
            .map(|r| record_at(&seed, base + r, record_bytes))
            .collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let m = pack_records(&refs, PLAINTEXT_MODULUS, d)?;
        let r = index - base;
        let delta = (ring.modulus() / PLAINTEXT_MODULUS) as i64;
        let rotated: Vec<i64> = (0..d)
            .map(|i| {
                if i + r < d {
                    delta * i64::from(m[i + r])
                } else {
                    -delta * i64::from(m[i + r - d])
                }
            })
            .collect();
        let mu = ring.poly_from_i64(&rotated)?;
        let noise = rlwe.noise(&sk, &large_answer, &mu)?;
        let margin = rlwe.margin_bits(noise, PLAINTEXT_MODULUS);
        worst_margin = worst_margin.min(margin);
        let compressed = decode_response(rp, &bytes)?;
        let d2 = rp.small().ring().degree();
        let mut phase = vec![0u32; d2];
        client_phase(
            rp.small(),
            secrets.small(),
            rp.response_modulus(),
            &compressed,
            &mut phase,
        )?;
        let mut msg = vec![0u32; d2];
        record_to_coeffs(&expected, PLAINTEXT_MODULUS, &mut msg)?;
        let q3 = rp.response_modulus() as i64;
        let scale = q3 / PLAINTEXT_MODULUS as i64;
        let final_err = phase
            .iter()
            .zip(&msg)
            .map(|(&x, &m)| {
                let e = (i64::from(x) - scale * i64::from(m)).rem_euclid(q3);
                e.min(q3 - e) as u64
            })
            .max()
            .unwrap_or(0);
        worst_final = worst_final.max(final_err);

        println!(
            "query {q} (record {index}): server 1 thread {:.0} ms CPU ({:.0} ms wall) = expansion \
             {:.0} + first dimension {:.0} + folding/rotation {:.0} + response {:.1}; client query \
             {:.1} ms, decode {:.2} ms; {}; noise: large-ring answer {:.1} bits of margin, final \
             phase max |e| = {final_err} (decoding needs |e| < {})",
            t_total[q],
            t_wall[q],
            t_exp[q],
            t_first[q],
            t_fold[q],
            t_resp[q],
            t_cq[q],
            t_cd[q],
            if ok { "record correct" } else { "RECORD WRONG" },
            margin,
            scale / 2,
        );
    }
    ensure!(
        failures == 0,
        "{failures} of {queries} records decoded wrong"
    );
    println!(
        "all {queries} records correct; worst large-ring margin {worst_margin:.1} bits, worst \
         final |e| {worst_final} of < {}; peak RSS {:.0} MiB",
        rp.response_modulus() / PLAINTEXT_MODULUS / 2,
        status_kib("VmHWM:") as f64 / 1024.0
    );
    Ok(Row {
        log_records,
        query: query_bytes,
        response: response_bytes,
        keys_impl,
        keys_shared,
        db_mib,
        build_s: enc_cpu.as_secs_f64(),
        expand: median(t_exp),
        first: median(t_first),
        fold: median(t_fold),
        respond: median(t_resp),
        total: median(t_total),
        total_wall: median(t_wall),
        client_query: median(t_cq),
        client_decode: median(t_cd),
    })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let rp = ResponseParams::respire()?;
    println!(
        "Respire single query (d1 = 2048, q1 = 268369921 x 249561089, d2 = 512, q2 = 16760833, \
         q3 = 256, p = 16); {} queries per size; server times are thread CPU time on one thread",
        args.queries
    );
    let rows = args
        .log_records
        .iter()
        .map(|&k| run(k, args.queries, &rp))
        .collect::<Result<Vec<_>>>()?;

    println!("\n## Per fetch (medians over the queries; times measured, sizes computed)\n");
    println!("| records | shape | query | response | public keys (impl / shared proj.) | database | DB encoding | server 1 thread CPU (wall) | expansion / first dim / fold+rot / response | client query + decode |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let (nu1, nu2, nu3) = shape(r.log_records)?;
        println!(
            "| 2^{} | 2^{nu1} x 2^{nu2} x 2^{nu3} | {} B | {} B | {:.2} / {:.2} MiB | {:.0} MiB | {:.2} s | {:.0} ms ({:.0} ms) | {:.0} / {:.0} / {:.0} / {:.1} ms | {:.1} + {:.2} ms |",
            r.log_records,
            r.query,
            r.response,
            r.keys_impl as f64 / f64::from(1 << 20),
            r.keys_shared as f64 / f64::from(1 << 20),
            r.db_mib,
            r.build_s,
            r.total,
            r.total_wall,
            r.expand,
            r.first,
            r.fold,
            r.respond,
            r.client_query,
            r.client_decode,
        );
    }

    println!(
        "\n## Against Respire Table 1 (2^20 x 256 B, Xeon 8488C, one core) and issue 13's goals\n"
    );
    for r in &rows {
        let size = if r.log_records == 20 {
            "2^20, the paper's size".to_string()
        } else {
            format!(
                "2^{}: NOT the paper's 2^20, size ratios of a smaller database",
                r.log_records
            )
        };
        let kib = |b: usize| b as f64 / 1024.0;
        let mib = |b: usize| b as f64 / f64::from(1 << 20);
        println!(
            "{size}: query {:.2} KiB ({:.2}x paper's {PAPER_QUERY_KIB}), response {:.2} KiB \
             ({:.2}x paper's {PAPER_RESPONSE_KIB}), keys {:.2} MiB shared / {:.2} MiB as \
             implemented ({:.2}x / {:.2}x paper's {PAPER_KEYS_MIB}), server {:.2} s CPU ({:.2}x \
             paper's {PAPER_SERVER_S} s on other hardware)",
            kib(r.query),
            kib(r.query) / PAPER_QUERY_KIB,
            kib(r.response),
            kib(r.response) / PAPER_RESPONSE_KIB,
            mib(r.keys_shared),
            mib(r.keys_impl),
            mib(r.keys_shared) / PAPER_KEYS_MIB,
            mib(r.keys_impl) / PAPER_KEYS_MIB,
            r.total / 1e3,
            r.total / 1e3 / PAPER_SERVER_S,
        );
        let up = 2.0 * r.query as f64 / 1e3;
        let down = 2.0 * r.response as f64 / 1e3;
        println!(
            "  goals per lookup (two fetches, unbatched, kB = 1000 B): up {up:.1} kB ({:.2}x of \
             {GOAL_UP_KB}), down {down:.1} kB ({:.2}x of {GOAL_DOWN_KB}); server {:.2} s per fetch \
             on one thread ({:.2}x of {GOAL_SERVER_S} s){}",
            up / GOAL_UP_KB,
            down / GOAL_DOWN_KB,
            r.total / 1e3,
            r.total / 1e3 / GOAL_SERVER_S,
            if r.log_records == 20 {
                ""
            } else {
                " (at a smaller size than the goal's 2^20)"
            }
        );
    }
    Ok(())
}
