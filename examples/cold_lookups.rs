//! Cold lookups in one warm process: for each identifier read from standard input (one per
//! line), empty the resolver's cache and its memory of failed servers ([`Resolver::flush`]),
//! then look the identifier up from the roots; print one JSON line per lookup with the
//! status, the queries sent and the time taken. One uncounted lookup of the first
//! identifier goes first, so page faults and lazy set-up of a new process are not counted.
//!
//! This is what `tools/bench/resolver.sh` measures against Unbound with its cache flushed
//! (`flush_zone` + `flush_infra all`): both processes warm, both caches empty.
//!
//! ```sh
//! printf '+1 555 111 2222\n' | cargo run --release --example cold_lookups -- zones/resolver.toml
//! ```

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context as _;
use mimi_discovery::resolver::{Outcome, Resolver};
use mimi_discovery::sii::Sii;

fn main() -> anyhow::Result<()> {
    let config = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "zones/resolver.toml".into()),
    );
    let resolver = Resolver::from_config_file(&config)
        .with_context(|| format!("loading {}", config.display()))?;
    let mut numbers = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading standard input")?;
        if !line.trim().is_empty() {
            numbers.push(Sii::parse(line.trim(), None).with_context(|| format!("{line:?}"))?);
        }
    }
    // One public lookup waits on one datagram at a time, as `mimi lookup` runs it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        if let Some(first) = numbers.first() {
            resolver.flush();
            resolver.lookup(first, None).await?;
        }
        for sii in &numbers {
            resolver.flush();
            let r = resolver.lookup(sii, None).await?;
            let status = match r.outcome {
                Outcome::Found(_) => "found",
                Outcome::NotDiscoverable(_) => "not discoverable",
            };
            println!(
                "{{\"sii\":\"{sii}\",\"status\":\"{status}\",\"queries\":{},\"elapsed_ms\":{}}}",
                r.queries,
                r.elapsed.as_secs_f64() * 1000.0
            );
        }
        anyhow::Ok(())
    })
}
