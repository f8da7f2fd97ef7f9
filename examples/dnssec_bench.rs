//! What DNSSEC signing costs the DP's write path (`tools/bench/dnssec.sh` runs it): a zone of
//! N mappings signed whole (as at load), then single-mapping commits through
//! `ZoneStore::apply` on the signed zone and on the same zone unsigned, timed per commit
//! (median and 99th percentile, wall time on this thread, after 100 warm-up commits), and
//! the extra bytes the signatures add. Prints one JSON object.
//!
//! Usage: dnssec_bench ZONE_FILE [COMMITS]

use std::sync::Arc;
use std::time::Instant;

use mimi_discovery::dnssec::{DnssecKey, ZoneSigner, FLAGS_CSK};
use mimi_discovery::name::Name;
use mimi_discovery::zone::update::next_serial;
use mimi_discovery::zone::{Changeset, RData, Record, ZoneFile, ZoneStore};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

/// `commits` commits of one TXT record each at fresh owners; per-commit microseconds.
fn commits(base: &ZoneStore, origin: &Name, n: usize) -> Vec<f64> {
    let mut z = base.clone();
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let owner = Name::parse(&format!("bench{i}"), Some(origin)).expect("owner");
        let cs = Changeset {
            remove: Vec::new(),
            add: vec![Record {
                name: owner,
                ttl: 3600,
                data: RData::Txt(vec![format!("commit {i}").into_bytes().into()]),
                line: 0,
            }],
        };
        let mut soa = z.soa().clone();
        soa.serial = next_serial(soa.serial);
        let started = Instant::now();
        z = z.apply(&cs, soa, z.soa_ttl()).expect("apply").0;
        if i >= 100 {
            times.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    times
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: dnssec_bench ZONE_FILE [COMMITS]");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let zone = ZoneFile::load(std::path::Path::new(path)).expect("zone file");
    let origin = zone.origin.clone();
    let unsigned = ZoneStore::build(origin.clone(), zone.records).expect("zone");
    let signer = Arc::new(ZoneSigner::new(
        DnssecKey::generate(origin.clone(), FLAGS_CSK),
        14 * 86400,
        7 * 86400,
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let started = Instant::now();
    let signed = unsigned.clone().sign_with(signer, now).expect("signing");
    let sign_all = started.elapsed().as_secs_f64();
    let sets = signed.record_count();
    let signature_bytes = signed.signature_bytes();
    let mut plain = commits(&unsigned, &origin, n);
    let mut with_sigs = commits(&signed, &origin, n);
    let threads = rayon::current_num_threads();
    println!(
        "{{\"records\": {sets}, \"sign_whole_zone_s\": {sign_all:.3}, \"sign_threads\": {threads}, \
         \"signature_bytes\": {signature_bytes}, \"commits\": {n}, \
         \"commit_unsigned_us_p50\": {:.1}, \"commit_unsigned_us_p99\": {:.1}, \
         \"commit_signed_us_p50\": {:.1}, \"commit_signed_us_p99\": {:.1}}}",
        percentile(&mut plain, 0.5),
        percentile(&mut plain, 0.99),
        percentile(&mut with_sigs, 0.5),
        percentile(&mut with_sigs, 0.99),
    );
}
