//! `mimi publish` and `mimi withdraw`: an app provider's signed mappings sent to a zone's
//! primary DP by DNS UPDATE with TSIG. Exit 0 when the DP accepted everything, 1 when it
//! refused something (the RCODE and its extended error on stderr), 2 on bad input or a
//! failure to reach the DP.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use rayon::prelude::*;

use super::zone::{ContextArg, MethodArg};
use super::{parse_name, EXIT_ERROR, EXIT_NEGATIVE};
use crate::name::Name;
use crate::publish::{
    self, Mapping, PublishError, Publisher, SignOptions, SignedMapping, DEFAULT_BATCH,
    DEFAULT_PORT, DEFAULT_PRIORITY, DEFAULT_TTL, DEFAULT_VALID_DAYS,
};
use crate::record::{format_time, Method, ProviderKey};
use crate::tsig::TsigKey;

/// Where and as whom to publish.
#[derive(Args, Debug)]
pub struct Target {
    /// The zone's primary DP: IP, IP:PORT, [IPv6]:PORT or HOST[:PORT] (port 53 by default).
    #[arg(long)]
    pub dp: String,
    /// The zone to update (its origin), e.g. 5.5.5.1.e164.mimi.arpa.
    #[arg(long)]
    pub zone: String,
    /// TSIG key file (`mimi key tsig generate`) the DP binds to this provider.
    #[arg(long)]
    pub tsig: PathBuf,
    /// The app provider's signing key file (`mimi key generate`).
    #[arg(long)]
    pub key: PathBuf,
    /// Seconds to wait for the DP's answer to each UPDATE.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub target: Target,
    /// The identifier: a phone number (+1 555 111 2222) or an email address.
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    pub sii: Option<String>,
    /// The account: a mimi:// URI whose host is the key's provider.
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    pub ssi: Option<String>,
    /// Many mappings: the CSV of `mimi zone import` (sii,ssi[,context,priority,ttl]);
    /// --context, --priority and --ttl fill its empty columns.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Records per UPDATE with --csv.
    #[arg(long, default_value_t = DEFAULT_BATCH as u64, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    #[arg(long, value_enum, default_value_t = ContextArg::Any)]
    pub context: ContextArg,
    /// Lower is preferred.
    #[arg(long, default_value_t = DEFAULT_PRIORITY)]
    pub priority: u16,
    /// The DP's cache TTL for the record, seconds.
    #[arg(long, default_value_t = DEFAULT_TTL)]
    pub ttl: u32,
    /// How long the mapping stays valid before it must be re-verified.
    #[arg(long, default_value_t = DEFAULT_VALID_DAYS)]
    pub valid_days: u32,
    /// Sequence number (default: the current time in milliseconds, so it always rises).
    #[arg(long, conflicts_with = "csv")]
    pub seq: Option<u64>,
    /// How ownership of the identifier was verified (default: sms-otp for phone
    /// numbers, email-link for email addresses).
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// Region for national-format numbers (ISO 3166, e.g. US).
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Args, Debug)]
pub struct WithdrawArgs {
    #[command(flatten)]
    pub target: Target,
    /// The identifier whose mapping (of the key's provider) is withdrawn.
    #[arg(long)]
    pub sii: String,
    /// URI carried by the tombstone (default mimi://<provider>/withdrawn); it withdraws
    /// the provider's mapping at the identifier whatever its URI was.
    #[arg(long)]
    pub ssi: Option<String>,
    /// Sequence number (default: the current time in milliseconds); must exceed the
    /// withdrawn mapping's.
    #[arg(long)]
    pub seq: Option<u64>,
    /// How long the DP keeps serving the tombstone; at least the withdrawn mapping's
    /// remaining validity, so no cache can revive it.
    #[arg(long, default_value_t = DEFAULT_VALID_DAYS)]
    pub valid_days: u32,
    #[arg(long, default_value_t = DEFAULT_TTL)]
    pub ttl: u32,
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    #[arg(long)]
    pub region: Option<String>,
}

/// Parses `--dp`: an address with an optional port (port 53 by default), or a host name.
pub fn parse_dp(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = crate::config::parse_listen(text, DEFAULT_PORT) {
        return Ok(addr);
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| anyhow::anyhow!("--dp {text:?}: {p:?} is not a port number"))?;
            (h, port)
        }
        _ => (text, DEFAULT_PORT),
    };
    if host.is_empty() {
        bail!("--dp {text:?}: expected IP, IP:PORT, [IPv6]:PORT or HOST[:PORT]");
    }
    (host, port)
        .to_socket_addrs()
        .with_context(|| {
            format!("--dp {text:?}: not an address, and the name {host:?} does not resolve")
        })?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--dp {text:?}: {host:?} has no address"))
}

struct Prepared {
    server: SocketAddr,
    zone: Name,
    tsig: TsigKey,
    key: ProviderKey,
    timeout: Duration,
}

fn prepare(t: &Target) -> anyhow::Result<Prepared> {
    let server = parse_dp(&t.dp)?;
    let zone = parse_name(&t.zone, "--zone")?;
    let tsig = TsigKey::load(&t.tsig).context("--tsig")?;
    let key = ProviderKey::load(&t.key).context("--key")?;
    if t.timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    Ok(Prepared {
        server,
        zone,
        tsig,
        key,
        timeout: Duration::from_secs(t.timeout),
    })
}

pub fn publish(args: PublishArgs, apex: &Name) -> anyhow::Result<u8> {
    let p = prepare(&args.target)?;
    let mut options = SignOptions::now();
    options.seq = args.seq;
    options.valid_days = args.valid_days;
    options.method = args.method.map(Method::from);
    options.region = args.region.clone();
    let defaults = Mapping {
        sii: String::new(),
        ssi: None,
        context: args.context.into(),
        priority: args.priority,
        ttl: args.ttl,
    };
    match (&args.csv, &args.sii, &args.ssi) {
        (Some(csv), _, _) => {
            let batch = usize::try_from(args.batch).unwrap_or(DEFAULT_BATCH);
            publish_csv(&p, csv, &defaults, &options, batch, apex)
        }
        (None, Some(sii), Some(ssi)) => {
            let mapping = Mapping {
                sii: sii.clone(),
                ssi: Some(ssi.clone()),
                ..defaults
            };
            let signed = publish::sign_mapping(&mapping, &p.zone, apex, &p.key, &options)?;
            send_one(&p, signed)
        }
        // clap enforces --sii and --ssi without --csv.
        _ => bail!("give --sii and --ssi, or --csv"),
    }
}

pub fn withdraw(args: WithdrawArgs, apex: &Name) -> anyhow::Result<u8> {
    let p = prepare(&args.target)?;
    let mut options = SignOptions::now();
    options.seq = args.seq;
    options.valid_days = args.valid_days;
    options.method = args.method.map(Method::from);
    options.region = args.region.clone();
    options.withdrawn = true;
    let mapping = Mapping {
        sii: args.sii.clone(),
        ssi: args.ssi.clone(),
        context: crate::record::Context::Any,
        priority: DEFAULT_PRIORITY,
        ttl: args.ttl,
    };
    let signed = publish::sign_mapping(&mapping, &p.zone, apex, &p.key, &options)?;
    send_one(&p, signed)
}

fn send_one(p: &Prepared, signed: SignedMapping) -> anyhow::Result<u8> {
    let mut publisher =
        Publisher::new(p.server, p.zone.clone(), p.tsig.clone()).with_timeout(p.timeout);
    match super::runtime()?.block_on(publisher.send(std::slice::from_ref(&signed))) {
        Ok(published) => {
            for r in &published.records {
                if r.withdrawn {
                    println!(
                        "withdrew {} for {} (tombstone seq {}, served until {})",
                        r.owner,
                        r.provider,
                        r.seq,
                        format_time(r.not_after)
                    );
                } else {
                    println!(
                        "published {} -> {} (seq {}, valid until {})",
                        r.owner,
                        r.uri,
                        r.seq,
                        format_time(r.not_after)
                    );
                }
            }
            println!("zone {} at {}", published.zone, published.server);
            Ok(0)
        }
        Err(e @ PublishError::Refused(_)) => {
            eprintln!("mimi: {}: {e}", signed.owner);
            Ok(EXIT_NEGATIVE)
        }
        Err(e) => Err(e.into()),
    }
}

fn publish_csv(
    p: &Prepared,
    csv: &std::path::Path,
    defaults: &Mapping,
    options: &SignOptions,
    batch: usize,
    apex: &Name,
) -> anyhow::Result<u8> {
    let rows = publish::read_csv(csv, defaults)?;
    if rows.is_empty() {
        println!("{}: no mappings", csv.display());
        return Ok(0);
    }
    // Sign everything first: a bad row stops the run before anything is sent, with its
    // line (as `mimi zone import` does).
    let signed: Vec<SignedMapping> = rows
        .par_iter()
        .map(|(line, m)| {
            publish::sign_mapping(m, &p.zone, apex, &p.key, options)
                .with_context(|| format!("{}:{line}", csv.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    // One seq for the run: the same identifier twice would have the second refused as a
    // replay, so say so now.
    let mut seen: HashMap<&Name, usize> = HashMap::new();
    for (s, (line, m)) in signed.iter().zip(&rows) {
        if let Some(first) = seen.insert(&s.owner, *line) {
            bail!(
                "{}:{line}: {} is also on line {first}; publish one mapping per identifier",
                csv.display(),
                m.sii
            );
        }
    }

    let bar = progress_bar(signed.len() as u64);
    let mut publisher =
        Publisher::new(p.server, p.zone.clone(), p.tsig.clone()).with_timeout(p.timeout);
    let report = super::runtime()?
        .block_on(publisher.send_batched(&signed, batch, |done| bar.set_position(done as u64)));
    bar.finish_and_clear();

    for (i, refusal) in &report.refused {
        let (line, m) = &rows[*i];
        eprintln!("{}:{line}: {}: {refusal}", csv.display(), m.sii);
    }
    println!(
        "published {} of {} mapping(s) to {} at {} in {} UPDATE(s); {} refused",
        report.accepted.len(),
        signed.len(),
        p.zone,
        p.server,
        report.updates,
        report.refused.len()
    );
    if let Some((e, rest)) = &report.stopped {
        eprintln!("mimi: {e}");
        eprintln!("mimi: stopped; {} mapping(s) not published", rest.len());
        return Ok(if e.is_refusal() {
            EXIT_NEGATIVE
        } else {
            EXIT_ERROR
        });
    }
    Ok(if report.refused.is_empty() {
        0
    } else {
        EXIT_NEGATIVE
    })
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "publishing {bar:40} {pos}/{len} mappings ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}
