//! `mimi zone ...`: zone files and the signed mappings in them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Subcommand, ValueEnum};
use rayon::prelude::*;

use super::{now, parse_name, parse_ns, EXIT_NEGATIVE};
use crate::name::Name;
use crate::record::{
    apkey_owner, format_time, parse_time, ApKey, Context, Method, ProviderKey, Ssi, TrustStore,
};
use crate::sii::Sii;
use crate::zone::{check, RData, Severity, WriteStyle, ZoneFile};

const DEFAULT_TTL: u32 = 3600;

#[derive(Subcommand, Debug)]
pub enum ZoneCommand {
    /// Create a zone file with SOA, NS and glue.
    New {
        origin: String,
        #[arg(long)]
        out: PathBuf,
        /// Name server as NAME=IP; repeat for more.
        #[arg(long, required = true)]
        ns: Vec<String>,
        #[arg(long, default_value_t = DEFAULT_TTL)]
        ttl: u32,
    },
    /// Sign a mapping SII -> SSI with an app provider's key and put it in the zone.
    Add {
        file: PathBuf,
        #[arg(long)]
        sii: String,
        /// The account: a mimi:// URI whose host is the key's provider.
        #[arg(long)]
        ssi: String,
        /// The app provider's signing key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long, value_enum, default_value_t = ContextArg::Any)]
        context: ContextArg,
        /// Lower is preferred.
        #[arg(long, default_value_t = 10)]
        priority: u16,
        #[arg(long, default_value_t = DEFAULT_TTL)]
        ttl: u32,
        /// How long the mapping stays valid before it must be re-verified.
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        /// End of validity as an RFC 3339 time (overrides --valid-days).
        #[arg(long)]
        not_after: Option<String>,
        /// How ownership of the identifier was verified (default: sms-otp for phone
        /// numbers, email-link for email addresses).
        #[arg(long, value_enum)]
        method: Option<MethodArg>,
        /// Region for national-format numbers (ISO 3166, e.g. US).
        #[arg(long)]
        region: Option<String>,
    },
    /// Remove the mappings of an identifier (only one provider's with --provider).
    Remove {
        file: PathBuf,
        #[arg(long)]
        sii: String,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        region: Option<String>,
    },
    /// List the mappings in a zone.
    List {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Delegate a child zone: NS records and glue.
    Delegate {
        file: PathBuf,
        #[arg(long)]
        child: String,
        #[arg(long, required = true)]
        ns: Vec<String>,
        #[arg(long, default_value_t = DEFAULT_TTL)]
        ttl: u32,
    },
    /// Check syntax, signatures, owners, providers and validity; exit 0 only when no errors.
    Check {
        file: PathBuf,
        /// Trust file listing providers' public keys (from `mimi key public`).
        #[arg(long)]
        trust: PathBuf,
    },
    /// Print the zone; with --generic, SSI and APKEY in RFC 3597 form for other DNS servers.
    Export {
        file: PathBuf,
        #[arg(long)]
        generic: bool,
        /// Sign the export with this zone key (DNSKEY, an RRSIG on every set and a classic
        /// NSEC chain) for DNS servers that cannot sign (docs/dnssec.md "Export"); the chain
        /// lets anyone who queries them list the zone's names.
        #[arg(long)]
        dnssec: Option<PathBuf>,
        /// Days the export's signatures are valid, with --dnssec.
        #[arg(long, default_value_t = 14, requires = "dnssec")]
        lifetime_days: u32,
        /// Write to this file (atomically) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Bulk add mappings from CSV (columns: sii, ssi, context, priority, ttl).
    Import {
        file: PathBuf,
        #[arg(long)]
        csv: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        #[arg(long, value_enum)]
        method: Option<MethodArg>,
        #[arg(long)]
        region: Option<String>,
    },
    /// Release an identifier (as its number or domain authority): its mappings go, and
    /// mappings verified before the release are refused from then on; on a file or, with
    /// --dp, on a live DP.
    Release(super::lifecycle::ReleaseArgs),
    /// Port a number out: hand its signed mappings over as a file and delegate it to the
    /// recipient's name servers; on a file or, with --dp, on a live DP.
    PortOut(super::lifecycle::PortOutArgs),
    /// Port a number in: a zone for the number from the donor's hand-over file.
    PortIn(super::lifecycle::PortInArgs),
    /// Add and remove a child zone's DS records at a live parent DP (the operator's DNS
    /// UPDATE): the DS lines `mimi key dnssec ds` prints; one UPDATE, signed at commit.
    Ds(super::lifecycle::DsArgs),
    /// Publish an app provider's public key as an APKEY record at <provider>.ap.<apex>.
    PublishKey {
        file: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        #[arg(long, default_value_t = DEFAULT_TTL)]
        ttl: u32,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ContextArg {
    Personal,
    Business,
    Any,
}

impl From<ContextArg> for Context {
    fn from(c: ContextArg) -> Context {
        match c {
            ContextArg::Personal => Context::Personal,
            ContextArg::Business => Context::Business,
            ContextArg::Any => Context::Any,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    SmsOtp,
    VoiceOtp,
    EmailLink,
    NumberProvider,
    EnterpriseDirectory,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::SmsOtp => Method::SmsOtp,
            MethodArg::VoiceOtp => Method::VoiceOtp,
            MethodArg::EmailLink => Method::EmailLink,
            MethodArg::NumberProvider => Method::NumberProvider,
            MethodArg::EnterpriseDirectory => Method::EnterpriseDirectory,
        }
    }
}

pub fn run(cmd: ZoneCommand, apex: &Name) -> anyhow::Result<u8> {
    match cmd {
        ZoneCommand::New {
            origin,
            out,
            ns,
            ttl,
        } => {
            let origin = parse_name(&origin, "origin")?;
            let ns = ns
                .iter()
                .map(|a| parse_ns(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if out.exists() {
                bail!("{} already exists; not overwriting it", out.display());
            }
            let zone = ZoneFile::new_zone(origin, &ns, ttl, date_serial(now()));
            zone.save(&out, WriteStyle::Native)?;
            println!("created zone {} in {}", zone.origin, out.display());
            Ok(0)
        }
        ZoneCommand::Add {
            file,
            sii,
            ssi,
            key,
            context,
            priority,
            ttl,
            valid_days,
            not_after,
            method,
            region,
        } => {
            let mut zone = ZoneFile::load(&file)?;
            let key = ProviderKey::load(&key)?;
            let mut params = SignParams::new(valid_days, method, region);
            if let Some(t) = not_after {
                params.not_after = Some(parse_time("--not-after", &t)?);
            }
            let row = MappingRow {
                sii,
                ssi,
                context: context.into(),
                priority,
                ttl,
            };
            let (owner, ttl, signed) = row.sign(&zone.origin, apex, &key, &params, |o, p| {
                zone.next_seq(o, p)
            })?;
            let seq = signed.seq;
            zone.put_ssi(owner.clone(), ttl, signed);
            zone.bump_serial();
            zone.save(&file, WriteStyle::Native)?;
            println!("{owner} -> {} (seq {seq})", row.ssi);
            Ok(0)
        }
        ZoneCommand::Remove {
            file,
            sii,
            provider,
            region,
        } => {
            let mut zone = ZoneFile::load(&file)?;
            let owner = Sii::parse(&sii, region.as_deref())
                .and_then(|s| s.owner_name(apex))
                .with_context(|| format!("invalid identifier {sii:?}"))?;
            let provider = provider.map(|p| parse_name(&p, "--provider")).transpose()?;
            let removed = zone.remove_ssi(&owner, provider.as_ref());
            if removed == 0 {
                eprintln!("no mapping of {owner} to remove");
                return Ok(EXIT_NEGATIVE);
            }
            zone.bump_serial();
            zone.save(&file, WriteStyle::Native)?;
            println!("removed {removed} mapping(s) of {owner}");
            Ok(0)
        }
        ZoneCommand::List { file, json } => {
            let zone = ZoneFile::load(&file)?;
            list(&zone, apex, json);
            Ok(0)
        }
        ZoneCommand::Delegate {
            file,
            child,
            ns,
            ttl,
        } => {
            let mut zone = ZoneFile::load(&file)?;
            let child = parse_name(&child, "--child")?;
            if child == zone.origin || !child.is_subdomain_of(&zone.origin) {
                bail!("--child {child} must be below the zone {}", zone.origin);
            }
            let ns = ns
                .iter()
                .map(|a| parse_ns(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            zone.set_delegation(&child, &ns, ttl);
            zone.bump_serial();
            zone.save(&file, WriteStyle::Native)?;
            println!("delegated {child} to {} name server(s)", ns.len());
            Ok(0)
        }
        ZoneCommand::Check { file, trust } => check_cmd(&file, &trust, apex),
        ZoneCommand::Release(args) => super::lifecycle::release(args, apex),
        ZoneCommand::PortOut(args) => super::lifecycle::port_out(args, apex),
        ZoneCommand::PortIn(args) => super::lifecycle::port_in(args, apex),
        ZoneCommand::Ds(args) => super::lifecycle::ds(args),
        ZoneCommand::Export {
            file,
            generic,
            dnssec,
            lifetime_days,
            out,
        } => {
            let mut zone = ZoneFile::load(&file)?;
            if let Some(key) = dnssec {
                let key = crate::dnssec::DnssecKey::load(&key)?;
                if !(1..=365).contains(&lifetime_days) {
                    anyhow::bail!("--lifetime-days must be 1 to 365");
                }
                presign_zone(&mut zone, &key, lifetime_days * 86400)?;
            }
            let style = if generic {
                WriteStyle::Generic
            } else {
                WriteStyle::Native
            };
            match out {
                Some(out) => zone.save(&out, style)?,
                None => print!("{}", crate::zone::to_text(&zone, style)),
            }
            Ok(0)
        }
        ZoneCommand::Import {
            file,
            csv,
            key,
            valid_days,
            method,
            region,
        } => {
            let mut zone = ZoneFile::load(&file)?;
            let key = ProviderKey::load(&key)?;
            let params = SignParams::new(valid_days, method, region);
            let n = import(&mut zone, &csv, &key, &params, apex)?;
            zone.bump_serial();
            zone.save(&file, WriteStyle::Native)?;
            println!("imported {n} mapping(s) into {}", file.display());
            Ok(0)
        }
        ZoneCommand::PublishKey {
            file,
            key,
            valid_days,
            ttl,
        } => {
            let mut zone = ZoneFile::load(&file)?;
            let key = ProviderKey::load(&key)?;
            let owner = apkey_owner(&key.provider, apex)?;
            if !owner.is_subdomain_of(&zone.origin) {
                bail!("{owner} is outside the zone {}", zone.origin);
            }
            let start = now();
            let record = ApKey {
                version: 1,
                algorithm: 15,
                not_before: start,
                not_after: start + u64::from(valid_days) * 86400,
                public_key: key.verifying_key().to_bytes(),
            };
            zone.put_apkey(owner.clone(), ttl, record);
            zone.bump_serial();
            zone.save(&file, WriteStyle::Native)?;
            println!(
                "published {}'s key {} at {owner}",
                key.provider,
                hex::encode(key.key_id())
            );
            Ok(0)
        }
    }
}

/// A YYYYMMDD00 serial for a new zone, the common convention.
pub(super) fn date_serial(now: u64) -> u32 {
    let date: String = format_time(now)
        .chars()
        .take(10)
        .filter(char::is_ascii_digit)
        .collect();
    date.parse::<u32>().map_or(1, |d| d.saturating_mul(100))
}

/// Settings shared by every mapping of one `add` or `import`.
struct SignParams {
    now: u64,
    valid_days: u32,
    not_after: Option<u64>,
    method: Option<MethodArg>,
    region: Option<String>,
}

impl SignParams {
    fn new(valid_days: u32, method: Option<MethodArg>, region: Option<String>) -> SignParams {
        SignParams {
            now: now(),
            valid_days,
            not_after: None,
            method,
            region,
        }
    }
}

/// One mapping to sign, as given on the command line or in a CSV row.
struct MappingRow {
    sii: String,
    ssi: String,
    context: Context,
    priority: u16,
    ttl: u32,
}

impl MappingRow {
    /// Validates the row against the zone and key and signs it; `seq_for` gives the
    /// sequence number for (owner, provider).
    fn sign(
        &self,
        origin: &Name,
        apex: &Name,
        key: &ProviderKey,
        params: &SignParams,
        seq_for: impl FnOnce(&Name, &Name) -> u64,
    ) -> anyhow::Result<(Name, u32, Ssi)> {
        let sii = Sii::parse(&self.sii, params.region.as_deref())
            .with_context(|| format!("invalid identifier {:?}", self.sii))?;
        let owner = sii.owner_name(apex)?;
        if !owner.is_subdomain_of(origin) {
            bail!("{} ({owner}) is outside the zone {origin}", self.sii);
        }
        let method = params.method.map(Method::from).unwrap_or(match sii {
            Sii::Phone { .. } => Method::SmsOtp,
            Sii::Email { .. } => Method::EmailLink,
        });
        let span = u64::from(params.valid_days) * 86400;
        let not_after = params.not_after.unwrap_or(params.now + span);
        // An end already past (test data, a record re-signed for the record) keeps a
        // window of the usual length before it, so the mapping reads as expired.
        let not_before = if not_after < params.now {
            not_after.saturating_sub(span)
        } else {
            params.now
        };
        let mut ssi = Ssi {
            version: 1,
            context: self.context,
            withdrawn: false,
            priority: self.priority,
            seq: 0,
            not_before,
            not_after,
            method,
            verified_at: not_before,
            provider: key.provider.clone(),
            uri: self.ssi.clone(),
            key_id: [0; 8],
            signature: [0; 64],
        };
        ssi.check_provider().with_context(|| {
            format!(
                "{}: the key {} belongs to {}",
                self.ssi,
                hex::encode(key.key_id()),
                key.provider
            )
        })?;
        ssi.seq = seq_for(&owner, &key.provider);
        ssi.sign(&owner, &key.signing);
        Ok((owner, self.ttl, ssi))
    }
}

fn check_cmd(file: &Path, trust: &Path, apex: &Name) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    let zone = match ZoneFile::load(file) {
        Ok(z) => z,
        Err(crate::zone::ZoneError::Syntax(errors)) => {
            for e in &errors {
                println!("{}:{}: error: {}", e.file, e.line, e.message);
            }
            println!("{}: {} error(s)", file.display(), errors.len());
            return Ok(EXIT_NEGATIVE);
        }
        Err(e) => return Err(e.into()),
    };
    let parsed = started.elapsed();
    let trust = TrustStore::load(trust)?;
    let report = check(&zone, &trust, apex, now());
    let checked = started.elapsed() - parsed;
    for p in &report.problems {
        let level = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        println!("{}:{}: {level}: {}", file.display(), p.line, p.message);
    }
    println!(
        "{}: {} records, {} mappings, {} signatures verified, {} error(s), {} warning(s)",
        file.display(),
        zone.records.len(),
        report.mappings,
        report.signatures_verified,
        report.errors(),
        report.warnings()
    );
    println!(
        "{}: parsed in {:.2} s, checked and verified in {:.2} s",
        file.display(),
        parsed.as_secs_f64(),
        checked.as_secs_f64()
    );
    Ok(if report.errors() == 0 {
        0
    } else {
        EXIT_NEGATIVE
    })
}

fn list(zone: &ZoneFile, apex: &Name, json: bool) {
    let mut rows: Vec<_> = zone.mappings().collect();
    rows.sort_by(|a, b| (&a.0.name, a.1.priority).cmp(&(&b.0.name, b.1.priority)));
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(r, s)| {
                serde_json::json!({
                    "owner": r.name.to_string(),
                    "phone": phone_of(&r.name, apex),
                    "provider": s.provider.to_string(),
                    "ssi": s.uri,
                    "context": s.context.to_string(),
                    "priority": s.priority,
                    "seq": s.seq,
                    "ttl": r.ttl,
                    "not_before": format_time(s.not_before),
                    "not_after": format_time(s.not_after),
                    "method": s.method.to_string(),
                    "withdrawn": s.withdrawn,
                    "key_id": hex::encode(s.key_id),
                    "line": r.line,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return;
    }
    println!(
        "{:<22} {:<9} {:>4} {:>4} {:<20} ssi",
        "identifier", "context", "prio", "seq", "valid until"
    );
    for (r, s) in rows {
        let who = phone_of(&r.name, apex).unwrap_or_else(|| r.name.to_string());
        let ctx = if s.withdrawn {
            format!("{},withdrawn", s.context)
        } else {
            s.context.to_string()
        };
        println!(
            "{:<22} {:<9} {:>4} {:>4} {:<20} {}",
            who,
            ctx,
            s.priority,
            s.seq,
            format_time(s.not_after),
            s.uri
        );
    }
}

/// The E.164 number behind a phone owner name (email owners are hashed: None).
fn phone_of(owner: &Name, apex: &Name) -> Option<String> {
    let suffix = Name::parse("e164", Some(apex)).ok()?;
    if !owner.is_subdomain_of(&suffix) || *owner == suffix {
        return None;
    }
    let digits = owner.label_count() - suffix.label_count();
    let mut out = String::from("+");
    for l in owner
        .labels()
        .take(digits)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        out.push_str(std::str::from_utf8(l).ok()?);
    }
    Some(out)
}

#[derive(serde::Deserialize)]
struct CsvRow {
    sii: String,
    ssi: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    priority: Option<u16>,
    #[serde(default)]
    ttl: Option<u32>,
}

/// Bulk import: rows are validated, signed on every core, then merged into the zone with
/// `seq` bumped for (identifier, provider) pairs it already has. Any bad row stops the
/// import before the zone is touched, with the row's line.
fn import(
    zone: &mut ZoneFile,
    csv_path: &Path,
    key: &ProviderKey,
    params: &SignParams,
    apex: &Name,
) -> anyhow::Result<usize> {
    let text =
        std::fs::read(csv_path).with_context(|| format!("cannot read {}", csv_path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(&text[..]);
    // The reader's own line count skips blank lines; count newlines up to each record's
    // byte offset instead (offsets only grow, so the count is incremental).
    let (mut counted_to, mut line_at) = (0usize, 1usize);
    let mut line_of = |byte: usize| {
        // A record's position is where reading it began, before any blank lines.
        let mut byte = byte.min(text.len());
        while matches!(text.get(byte), Some(b'\n' | b'\r')) {
            byte += 1;
        }
        line_at += text[counted_to..byte]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted_to = byte;
        line_at
    };
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header row", csv_path.display()))?
        .clone();
    if headers.get(0) != Some("sii") || headers.get(1) != Some("ssi") {
        bail!(
            "{}:1: the header row must start with sii,ssi (then optional context,priority,ttl)",
            csv_path.display()
        );
    }
    let mut rows = Vec::new();
    for result in reader.records() {
        let record = result.with_context(|| format!("{}", csv_path.display()))?;
        // The csv reader skips blank lines and quoted fields span lines: ask it.
        let line = record.position().map_or(0, |p| line_of(p.byte() as usize));
        let row: CsvRow = record
            .deserialize(Some(&headers))
            .with_context(|| format!("{}:{line}", csv_path.display()))?;
        let context = match row.context.as_deref() {
            None | Some("") => Context::Any,
            Some(c) => c.parse().map_err(|e| {
                anyhow::anyhow!("{}:{line}: context {c:?}: {e}", csv_path.display())
            })?,
        };
        rows.push((
            line,
            MappingRow {
                sii: row.sii,
                ssi: row.ssi,
                context,
                priority: row.priority.unwrap_or(10),
                ttl: row.ttl.unwrap_or(DEFAULT_TTL),
            },
        ));
    }

    let bar = progress_bar(rows.len() as u64);
    let index = zone.mapping_index();
    let origin = zone.origin.clone();
    let records = &zone.records;
    let signed: Vec<(Name, u32, Ssi)> = rows
        .par_iter()
        .map(|(line, row)| {
            let seq_for = |owner: &Name, provider: &Name| {
                index
                    .get(&(owner.as_wire().into(), provider.as_wire().into()))
                    .and_then(|&i| match &records[i].data {
                        RData::Ssi(s) => Some(s.seq + 1),
                        _ => None,
                    })
                    .unwrap_or(1)
            };
            let out = row
                .sign(&origin, apex, key, params, seq_for)
                .with_context(|| format!("{}:{line}", csv_path.display()));
            bar.inc(1);
            out
        })
        .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();

    // Merge: replace in place where (owner, provider) exists, append otherwise; a pair
    // repeated in the CSV keeps its last row.
    let mut index = index;
    let count = signed.len();
    for (owner, ttl, ssi) in signed {
        let k = (owner.as_wire().into(), ssi.provider.as_wire().into());
        let record = crate::zone::Record {
            name: owner,
            ttl,
            data: RData::Ssi(Box::new(ssi)),
            line: 0,
        };
        match index.get(&k) {
            Some(&i) => zone.records[i] = record,
            None => {
                index.insert(k, zone.records.len());
                zone.records.push(record);
            }
        }
    }
    Ok(count)
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "signing {bar:40} {pos}/{len} mappings ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Adds to `zone` what `dnssec::presign` makes for it with `key`, after dropping any
/// DNSSEC records it held (DS records are the parent's data and stay).
fn presign_zone(
    zone: &mut ZoneFile,
    key: &crate::dnssec::DnssecKey,
    lifetime: u32,
) -> anyhow::Result<()> {
    use crate::dnssec::presign::{presign, Set};
    use crate::dnssec::{SignatureWindow, TYPE_DNSKEY, TYPE_NSEC, TYPE_RRSIG};
    if key.zone != zone.origin {
        anyhow::bail!("the key is for {}, the zone is {}", key.zone, zone.origin);
    }
    zone.records
        .retain(|r| ![TYPE_DNSKEY, TYPE_NSEC, TYPE_RRSIG].contains(&r.data.rtype()));
    let (soa_ttl, minimum) = zone
        .records
        .iter()
        .find_map(|r| match &r.data {
            RData::Soa(soa) if r.name == zone.origin => Some((r.ttl, soa.minimum)),
            _ => None,
        })
        .context("the zone has no SOA at its origin")?;
    let mut sets: std::collections::BTreeMap<(Name, u16), Set> = Default::default();
    for r in &zone.records {
        let rdata = r.data.to_wire();
        let s = sets
            .entry((r.name.clone(), r.data.rtype()))
            .or_insert_with(|| Set {
                owner: r.name.clone(),
                rtype: r.data.rtype(),
                ttl: r.ttl,
                rdatas: Vec::new(),
            });
        s.ttl = s.ttl.min(r.ttl);
        if !s.rdatas.contains(&rdata) {
            s.rdatas.push(rdata);
        }
    }
    let sets: Vec<Set> = sets.into_values().collect();
    let window = SignatureWindow::starting(super::now(), lifetime);
    for s in presign(
        &zone.origin,
        &sets,
        key,
        soa_ttl,
        soa_ttl.min(minimum),
        window,
    ) {
        for rdata in s.rdatas {
            zone.records.push(crate::zone::Record {
                name: s.owner.clone(),
                ttl: s.ttl,
                data: RData::Unknown {
                    rtype: s.rtype,
                    data: rdata.into_boxed_slice(),
                },
                line: 0,
            });
        }
    }
    Ok(())
}
