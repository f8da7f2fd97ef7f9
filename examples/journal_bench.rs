//! Measures the zone journal: durable appends one at a time and in group commits.
//!
//! `cargo run --release --example journal_bench -- [DIR] [ENTRIES]` (DIR defaults to a
//! temporary directory; put it on the disk the DP's journals will use).

use std::time::Instant;

use mimi_discovery::zone::journal::Journal;
use mimi_discovery::zone::{Diff, RData, Record, Soa};

fn diff(serial: u32, payload: usize) -> Diff {
    let soa = |s| {
        (
            Soa {
                mname: "ns1.5.5.5.1.e164.mimi.arpa.".parse().unwrap(),
                rname: "hostmaster.5.5.5.1.e164.mimi.arpa.".parse().unwrap(),
                serial: s,
                refresh: 3600,
                retry: 600,
                expire: 1_209_600,
                minimum: 300,
            },
            3600,
        )
    };
    Diff {
        from: soa(serial),
        to: soa(serial + 1),
        removed: vec![],
        added: vec![Record {
            name: format!("{}.1.1.1.5.5.5.1.e164.mimi.arpa.", serial % 10)
                .parse()
                .unwrap(),
            ttl: 300,
            data: RData::Unknown {
                rtype: 65534,
                data: vec![0xab; payload].into(),
            },
            line: 0,
        }],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let n: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let path = dir.join("bench.journal");
    let _ = std::fs::remove_file(&path);
    let (mut j, _) = Journal::open(&path).expect("journal");
    let diffs: Vec<Diff> = (0..n).map(|i| diff(i, 160)).collect();
    let t = Instant::now();
    for d in &diffs {
        j.append(&[d], &[]).expect("append");
    }
    let single = t.elapsed();
    for batch in [10usize, 100] {
        let t = Instant::now();
        for chunk in diffs.chunks(batch) {
            let refs: Vec<&Diff> = chunk.iter().collect();
            j.append(&refs, &[]).expect("append");
        }
        let e = t.elapsed();
        println!(
            "group commit of {batch:>3}: {:>8.1} us per change, {:>8.0} changes/s",
            e.as_secs_f64() * 1e6 / f64::from(n),
            f64::from(n) / e.as_secs_f64()
        );
    }
    println!(
        "one sync per change: {:>8.1} us per change, {:>8.0} changes/s",
        single.as_secs_f64() * 1e6 / f64::from(n),
        f64::from(n) / single.as_secs_f64()
    );
    let t = Instant::now();
    let (_, replay) = Journal::open(&path).expect("reopen");
    println!(
        "replay of {} entries ({} bytes): {:.1} ms",
        replay.diffs.len(),
        j.size(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_file(&path);
}
