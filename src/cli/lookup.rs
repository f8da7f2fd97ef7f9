//! `mimi lookup` and `mimi resolver serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use super::zone::ContextArg;
use super::{EXIT_ERROR, EXIT_NEGATIVE};
use crate::name::Name;
use crate::record::{format_time, Context, Ssi, TrustStore, TYPE_SSI};
use crate::resolver::{LookupResult, NotFound, Outcome, ResolveError, Resolver};
use crate::sii::Sii;

#[derive(Args, Debug)]
pub struct LookupArgs {
    /// Phone number (+1 555 111 2222) or email address.
    #[arg(required_unless_present = "batch")]
    pub sii: Option<String>,
    /// With --private: look up every identifier in FILE (one per line; `#` starts a
    /// comment), a contact sync. Prints one JSON line per identifier, in order, and a
    /// progress bar on a terminal. Exit 0 when every lookup ran (found or not), 2 when any
    /// failed (an invalid identifier, a lookup error).
    #[arg(
        long,
        value_name = "FILE",
        requires = "private",
        conflicts_with = "sii"
    )]
    pub batch: Option<PathBuf>,
    /// Ask this resolver (`mimi resolver serve` or another DNS resolver) instead of
    /// resolving here; IP or IP:PORT.
    #[arg(long, conflicts_with = "config")]
    pub server: Option<String>,
    /// Resolve here, iterating from the root servers in this resolver config.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Private lookup (OPRF + PIR): the DPs learn the zone and a shard number, not the
    /// identifier. Needs --config.
    #[arg(long, requires = "config")]
    pub private: bool,
    /// With --server: also verify the answer against this trust file.
    #[arg(long, requires = "server")]
    pub trust: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub context: Option<ContextArg>,
    /// Region for national-format numbers (ISO 3166, e.g. US).
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: LookupArgs, apex: &Name) -> anyhow::Result<u8> {
    let context = args.context.map(Context::from);
    // One public lookup waits on one datagram at a time: a single-threaded runtime spares
    // each of them a wake-up handed from an I/O thread to the waiting one. Private
    // lookups and batches keep the worker threads for their concurrent work.
    let runtime = if args.batch.is_none() && !args.private {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    if let (Some(file), Some(config)) = (&args.batch, &args.config) {
        return runtime.block_on(batch(file, config, context, args.region.as_deref()));
    }
    let text = args.sii.as_deref().unwrap_or_default();
    let sii = match Sii::parse(text, args.region.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mimi: invalid identifier {text:?}: {e}");
            return Ok(EXIT_ERROR);
        }
    };
    let result = match (&args.server, &args.config) {
        (Some(server), _) => runtime.block_on(ask_server(
            server,
            &sii,
            apex,
            context,
            args.trust.as_deref(),
        ))?,
        (None, Some(config)) => {
            let resolver = Resolver::from_config_file(config)?;
            if args.private {
                runtime.block_on(replicate_configured(&resolver));
                runtime.block_on(resolver.lookup_private(&sii, context))
            } else {
                runtime.block_on(resolver.lookup(&sii, context))
            }
        }
        (None, None) => anyhow::bail!(
            "give --config RESOLVER.toml (resolve here) or --server ADDR (ask a resolver)"
        ),
    };
    Ok(print_result(&sii, &result, args.json))
}

/// Brings the replicas `[replica] zones` names up to date (reopened from disk and a
/// delta, or downloaded), so private lookups there need no PIR; a zone that fails is
/// looked up by PIR, with a warning.
async fn replicate_configured(resolver: &Resolver) {
    let zones = resolver
        .replicas
        .settings()
        .map(|s| s.zones.clone())
        .unwrap_or_default();
    for zone in zones {
        if let Err(e) = resolver.replicate(&zone).await {
            eprintln!("mimi: no replica of {zone} (private lookups there use PIR): {e}");
        }
    }
}

/// `mimi lookup --private --batch FILE --config RESOLVER.toml`.
async fn batch(
    file: &std::path::Path,
    config: &std::path::Path,
    context: Option<Context>,
    region: Option<&str>,
) -> anyhow::Result<u8> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let resolver = Resolver::from_config_file(config)?;
    // (line number, what it says, the identifier when it parses)
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if !entry.is_empty() {
            lines.push((n + 1, entry.to_string(), Sii::parse(entry, region)));
        }
    }
    let siis: Vec<Sii> = lines
        .iter()
        .filter_map(|(_, _, s)| s.as_ref().ok().cloned())
        .collect();
    replicate_configured(&resolver).await;
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(siis.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} identifiers ({eta})")
        {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let results = resolver
        .lookup_private_batch_with(&siis, context, &|n| bar.inc(n as u64))
        .await;
    bar.finish_and_clear();
    let mut results = results.into_iter();
    let (mut found, mut negative, mut failed) = (0, 0, 0);
    for (line, entry, sii) in &lines {
        match sii {
            Err(e) => {
                failed += 1;
                println!(
                    "{}",
                    json!({"line": line, "input": entry, "status": "error", "error": format!("{}:{line}: invalid identifier: {e}", file.display())})
                );
            }
            Ok(sii) => {
                let Some(result) = results.next() else { break };
                match &result {
                    Ok(r) => {
                        match r.outcome {
                            Outcome::Found(_) => found += 1,
                            Outcome::NotDiscoverable(_) => negative += 1,
                        }
                        let mut v = result_json(sii, r);
                        v["line"] = json!(line);
                        println!("{v}");
                    }
                    Err(e) => {
                        failed += 1;
                        println!(
                            "{}",
                            json!({"line": line, "sii": sii.to_string(), "status": "error", "error": e.to_string()})
                        );
                    }
                }
            }
        }
    }
    eprintln!(
        "mimi: {} identifiers in {:.1} s: {found} found, {negative} not discoverable, {failed} failed",
        lines.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(if failed > 0 { EXIT_ERROR } else { 0 })
}

/// Prints a lookup for a person (or as JSON) and returns the exit code.
pub fn print_result(sii: &Sii, result: &Result<LookupResult, ResolveError>, as_json: bool) -> u8 {
    match result {
        Ok(r) => {
            if as_json {
                println!("{}", result_json(sii, r));
            } else {
                print_human(sii, r);
            }
            match r.outcome {
                Outcome::Found(_) => 0,
                Outcome::NotDiscoverable(_) => EXIT_NEGATIVE,
            }
        }
        Err(e) => {
            if as_json {
                println!(
                    "{}",
                    json!({"sii": sii.to_string(), "status": "error", "error": e.to_string()})
                );
            } else {
                eprintln!("mimi: lookup of {sii} failed: {e}");
            }
            EXIT_ERROR
        }
    }
}

fn mapping_json(m: &crate::resolver::Mapping) -> serde_json::Value {
    json!({
        "ssi": m.ssi.uri,
        "provider": m.ssi.provider.to_string().trim_end_matches('.'),
        "context": m.ssi.context.to_string(),
        "priority": m.ssi.priority,
        "seq": m.ssi.seq,
        "method": m.ssi.method.to_string(),
        "verified_at": format_time(m.ssi.verified_at),
        "not_after": format_time(m.ssi.not_after),
        "ttl": m.ttl,
    })
}

pub fn result_json(sii: &Sii, r: &LookupResult) -> serde_json::Value {
    let (status, mappings, reason) = match &r.outcome {
        Outcome::Found(m) => ("found", m.iter().map(mapping_json).collect(), None),
        Outcome::NotDiscoverable(nf) => ("not_discoverable", Vec::new(), Some(nf.to_string())),
    };
    json!({
        "sii": sii.to_string(),
        "owner": r.owner.to_string(),
        "status": status,
        "reason": reason,
        "mappings": mappings,
        "rejected": r.rejected.iter().map(|x| json!({"ssi": x.ssi, "provider": x.provider, "reason": x.reason})).collect::<Vec<_>>(),
        "zone": r.zone.as_ref().map(|z| z.to_string()),
        "server": r.server.map(|s| s.to_string()),
        "from_cache": r.from_cache,
        "stale": r.stale,
        "queries": r.queries,
        "elapsed_ms": r.elapsed.as_secs_f64() * 1000.0,
    })
}

fn print_human(sii: &Sii, r: &LookupResult) {
    println!("{sii}  ({})", r.owner);
    match &r.outcome {
        Outcome::Found(mappings) => {
            for (i, m) in mappings.iter().enumerate() {
                println!(
                    "  {}. {}  provider {}  context {}  priority {}  valid until {}",
                    i + 1,
                    m.ssi.uri,
                    m.ssi.provider.to_string().trim_end_matches('.'),
                    m.ssi.context,
                    m.ssi.priority,
                    format_time(m.ssi.not_after)
                );
            }
        }
        Outcome::NotDiscoverable(nf) => println!("  not discoverable: {nf}"),
    }
    for x in &r.rejected {
        println!("  rejected {} ({}): {}", x.ssi, x.provider, x.reason);
    }
    let source = match (&r.zone, r.server) {
        (Some(z), Some(s)) => format!("zone {z} at {s}"),
        _ => "the resolver".into(),
    };
    let how = if r.stale {
        " (stale cache: servers unreachable)".to_string()
    } else if r.from_cache {
        " (cache)".to_string()
    } else {
        format!(
            ", {} quer{}",
            r.queries,
            if r.queries == 1 { "y" } else { "ies" }
        )
    };
    println!(
        "  answered by {source} in {:.1} ms{how}",
        r.elapsed.as_secs_f64() * 1000.0
    );
}

/// Asks a resolver's DNS listener for the SSI records of `sii`.
async fn ask_server(
    server: &str,
    sii: &Sii,
    apex: &Name,
    context: Option<Context>,
    trust: Option<&std::path::Path>,
) -> anyhow::Result<Result<LookupResult, ResolveError>> {
    let addr: SocketAddr = crate::config::parse_listen(server, 53).map_err(anyhow::Error::msg)?;
    let owner = sii.owner_name(apex)?;
    let trust = trust.map(TrustStore::load).transpose()?;
    let started = Instant::now();
    let reply = crate::resolver::transport::exchange_with(
        addr,
        &owner,
        TYPE_SSI,
        std::time::Duration::from_secs(5),
        true,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{addr}: {e}"))
    .context("asking the resolver")?
    .0;
    let now = super::now();
    let rcode = reply.metadata.response_code;
    let outcome = match rcode {
        hickory_proto::op::ResponseCode::NXDomain => Outcome::NotDiscoverable(NotFound::NoSuchName),
        hickory_proto::op::ResponseCode::NoError => {
            // The same acceptance rule as every other lookup: a resolver that passes whole
            // RRsets through (as Unbound does) hands over superseded records and
            // tombstones too.
            let records: Vec<_> = reply
                .answers
                .iter()
                .filter(|r| u16::from(r.record_type()) == TYPE_SSI)
                .cloned()
                .collect();
            let mappings = match &trust {
                Some(t) => {
                    let (mappings, rejected) = crate::resolver::accept(&owner, &records, t, now);
                    if let Some(r) = rejected.first() {
                        anyhow::bail!(
                            "{addr} sent a record that fails verification: {} ({})",
                            r.reason,
                            r.ssi
                        );
                    }
                    mappings
                }
                None => {
                    let mut parsed = Vec::new();
                    for r in &records {
                        let hickory_proto::rr::RData::Unknown { rdata, .. } = &r.data else {
                            continue;
                        };
                        let ssi = Ssi::from_wire(&rdata.anything).map_err(|e| {
                            anyhow::anyhow!("{addr} sent a malformed SSI record: {e}")
                        })?;
                        parsed.push((ssi, r.ttl));
                    }
                    crate::resolver::select(&owner, parsed)
                }
            };
            let mappings: Vec<_> = mappings
                .into_iter()
                .filter(|m| context.is_none_or(|c| m.ssi.context.matches(c)))
                .collect();
            if mappings.is_empty() {
                Outcome::NotDiscoverable(NotFound::NoMappings)
            } else {
                Outcome::Found(mappings)
            }
        }
        other => {
            return Ok(Err(ResolveError::BadAnswer {
                zone: owner.clone(),
                details: vec![format!("{addr} answered {other}")],
            }))
        }
    };
    Ok(Ok(LookupResult {
        owner,
        outcome,
        zone: None,
        server: Some(addr),
        from_cache: false,
        stale: false,
        queries: 1,
        elapsed: started.elapsed(),
        rejected: Vec::new(),
        ttl: 0,
        soa: None,
    }))
}

/// `mimi resolver serve --config FILE`.
pub fn serve(config: PathBuf) -> anyhow::Result<u8> {
    let resolver = Arc::new(Resolver::from_config_file(&config)?);
    if resolver.config().listen.is_empty() {
        anyhow::bail!(
            "{}: `listen` is empty: nothing to serve on",
            config.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listen = resolver.config().listen.clone();
        let (mut server, bound) =
            crate::resolver::server::listen(resolver.clone(), &listen).await?;
        for b in &bound {
            tracing::info!("resolver listening on {b} (UDP and TCP)");
        }
        let mut tls_tasks = Vec::new();
        if let Some(tls) = &resolver.config().tls {
            let handler = crate::resolver::server::ResolverHandler(resolver.clone());
            let (tasks, tls_bound) =
                crate::resolver::server::listen_tls(handler, tls, crate::net::Limits::default())
                    .await?;
            for b in &tls_bound {
                tracing::info!("resolver listening on {b} (DNS over TLS)");
            }
            tls_tasks = tasks;
        }
        if let Some(listen) = resolver.config().metrics {
            let source: Arc<dyn crate::metrics::Source> = resolver.clone();
            let (task, bound) = crate::metrics::serve(listen, source)
                .await
                .with_context(|| format!("metrics.listen {listen}"))?;
            tracing::info!("metrics on http://{bound}/metrics");
            tls_tasks.push(task);
        }
        // Learn each subscribed zone's serial, so NOTIFYs bring short CHANGES lists.
        crate::resolver::invalidate::start(&resolver).await;
        // Replicas: the configured zones now, the rest as lookups find them; deltas on
        // NOTIFY and every poll.
        let replicas = {
            let resolver = resolver.clone();
            tokio::spawn(async move {
                replicate_configured(&resolver).await;
                crate::resolver::replica::maintain(resolver).await;
            })
        };
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        // `mimi ctl`'s commands come through the same loop as the signals.
        let mut control = crate::control::Control::open(resolver.config().control.as_deref())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                Some(job) = control.next() => {
                    tracing::info!(command = %job.request.command, "control");
                    let stop = job.request.command == "stop";
                    let _ = job.reply.send(resolver.control(&job.request));
                    if stop {
                        break;
                    }
                }
            }
        }
        control.close();
        let r = &resolver.replicas.stats;
        tracing::info!(
            "replicas: full_runs={} delta_runs={} bytes_received={} lookups={} failures={}",
            r.full_runs.load(std::sync::atomic::Ordering::Relaxed),
            r.delta_runs.load(std::sync::atomic::Ordering::Relaxed),
            r.bytes_received.load(std::sync::atomic::Ordering::Relaxed),
            r.lookups.load(std::sync::atomic::Ordering::Relaxed),
            r.failures.load(std::sync::atomic::Ordering::Relaxed)
        );
        let s = &resolver.stats;
        tracing::info!(
            "shutting down; lookups={} cache_hits={} queries_sent={} rejected_records={} pir_decode_failures={} pir_batches={} pir_batched_lookups={}",
            s.lookups.load(std::sync::atomic::Ordering::Relaxed),
            s.cache_hits.load(std::sync::atomic::Ordering::Relaxed),
            s.queries_sent.load(std::sync::atomic::Ordering::Relaxed),
            s.rejected_records(),
            s.pir_decode_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            s.pir_batches.load(std::sync::atomic::Ordering::Relaxed),
            s.pir_batched_lookups
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        replicas.abort();
        for t in tls_tasks {
            t.abort();
        }
        server.shutdown_gracefully().await?;
        Ok(0)
    })
}
