//! `mimi zone release`, `mimi zone port-out` and `mimi zone port-in`: the zone operator's
//! lifecycle operations (docs/lifecycle.md), on a zone file or on a live DP through the
//! operator's DNS UPDATE (`crate::operate`). Exit 0 done, 1 refused by the DP, 2 error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

use super::{now, parse_name, parse_ns, EXIT_NEGATIVE};
use crate::name::Name;
use crate::operate;
use crate::publish::{PublishError, Publisher};
use crate::record::{format_time, parse_time};
use crate::sii::Sii;
use crate::tsig::TsigKey;
use crate::zone::release::{self, Releases};
use crate::zone::{RData, WriteStyle, ZoneFile};

const DEFAULT_TTL: u32 = 3600;

/// A live DP and the operator's key, instead of a file.
#[derive(Args, Debug)]
pub struct Live {
    /// The zone's primary DP (IP, IP:PORT, [IPv6]:PORT or HOST[:PORT]), instead of a file.
    #[arg(long, requires_all = ["zone", "tsig"])]
    pub dp: Option<String>,
    /// The zone holding the identifier (its origin), with --dp.
    #[arg(long, requires = "dp")]
    pub zone: Option<String>,
    /// The operator's TSIG key file (the DP's `[[operator]]`), with --dp.
    #[arg(long, requires = "dp")]
    pub tsig: Option<PathBuf>,
    /// Seconds to wait for the DP.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The zone file (or --dp for a live DP).
    #[arg(required_unless_present = "dp", conflicts_with = "dp")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub live: Live,
    /// The identifier released: a phone number or an email address.
    #[arg(long)]
    pub sii: String,
    /// Time of the release (RFC 3339; default now). A live DP always uses its own clock.
    #[arg(long, conflicts_with = "dp")]
    pub at: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Args, Debug)]
pub struct PortOutArgs {
    /// The donor's zone file (or --dp for a live DP).
    #[arg(required_unless_present = "dp", conflicts_with = "dp")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub live: Live,
    /// The number ported out.
    #[arg(long)]
    pub sii: String,
    /// The recipient's name server as NAME=IP (glue for names below the number); repeat.
    #[arg(long, required = true)]
    pub ns: Vec<String>,
    /// Where the number's signed mappings are handed over (a zone-file fragment).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = DEFAULT_TTL)]
    pub ttl: u32,
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Args, Debug)]
pub struct PortInArgs {
    /// The number ported in.
    #[arg(long)]
    pub sii: String,
    /// The donor's hand-over file (`mimi zone port-out --out`).
    #[arg(long)]
    pub mappings: PathBuf,
    /// This DP's name server for the new zone as NAME=IP; repeat.
    #[arg(long, required = true)]
    pub ns: Vec<String>,
    /// The new zone file, or a DP's zone directory (the file is then <origin>.zone in it,
    /// which a running DP picks up).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = DEFAULT_TTL)]
    pub ttl: u32,
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Args, Debug)]
pub struct DsArgs {
    #[command(flatten)]
    pub live: Live,
    /// A DS line to publish (`CHILD [TTL] IN DS tag 15 2 hex`); repeat.
    #[arg(long)]
    pub add: Vec<String>,
    /// A DS line to withdraw; repeat.
    #[arg(long)]
    pub remove: Vec<String>,
    #[arg(long, default_value_t = DEFAULT_TTL)]
    pub ttl: u32,
}

/// `mimi zone ds`: one operator UPDATE adding and deleting DS records at the parent.
pub fn ds(args: DsArgs) -> anyhow::Result<u8> {
    if args.live.dp.is_none() {
        bail!("mimi zone ds needs --dp, --zone and --tsig (the parent's DP and operator key)");
    }
    let parse = |line: &String, flag: &str| -> anyhow::Result<(Name, Vec<u8>)> {
        match crate::zone::parse_key_line(line) {
            Ok((owner, crate::dnssec::TYPE_DS, rdata)) => Ok((owner, rdata)),
            Ok(_) => bail!("{flag} {line:?}: a DS line is needed (mimi key dnssec ds prints it)"),
            Err(e) => bail!("{flag} {line:?}: {e}"),
        }
    };
    let add = args
        .add
        .iter()
        .map(|l| parse(l, "--add"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let remove = args
        .remove
        .iter()
        .map(|l| parse(l, "--remove"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if add.is_empty() && remove.is_empty() {
        bail!("nothing to do: give --add or --remove");
    }
    let mut dp = operator(&args.live)?;
    if !send(&mut dp, &operate::ds_update(&add, &remove, args.ttl))? {
        return Ok(EXIT_NEGATIVE);
    }
    println!(
        "{} DS record(s) added and {} removed at {}",
        add.len(),
        remove.len(),
        args.live.dp.as_deref().unwrap_or_default()
    );
    Ok(0)
}

fn owner_of(sii: &str, region: Option<&str>, apex: &Name) -> anyhow::Result<Name> {
    Sii::parse(sii, region)
        .and_then(|s| s.owner_name(apex))
        .with_context(|| format!("invalid identifier {sii:?}"))
}

/// The live DP of `live`, as a publisher signing with the operator's key.
fn operator(live: &Live) -> anyhow::Result<Publisher> {
    let (Some(dp), Some(zone), Some(tsig)) = (&live.dp, &live.zone, &live.tsig) else {
        bail!("--dp needs --zone and --tsig");
    };
    if live.timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    let server = super::publish::parse_dp(dp)?;
    let zone = parse_name(zone, "--zone")?;
    let tsig = TsigKey::load(tsig).context("--tsig")?;
    Ok(Publisher::new(server, zone, tsig).with_timeout(Duration::from_secs(live.timeout)))
}

/// Sends the operator's UPDATE; Ok(false) when the DP refused it (reason on stderr).
fn send(publisher: &mut Publisher, updates: &[hickory_proto::rr::Record]) -> anyhow::Result<bool> {
    match super::runtime()?.block_on(publisher.send_raw(updates)) {
        Ok(()) => Ok(true),
        Err(e @ PublishError::Refused(_)) => {
            eprintln!("mimi: {e}");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn release(args: ReleaseArgs, apex: &Name) -> anyhow::Result<u8> {
    let owner = owner_of(&args.sii, args.region.as_deref(), apex)?;
    let Some(file) = &args.file else {
        let mut dp = operator(&args.live)?;
        if !send(&mut dp, &operate::release_update(&owner))? {
            return Ok(EXIT_NEGATIVE);
        }
        println!(
            "released {owner} at {}: its mappings are gone and mappings verified before now are refused",
            args.live.dp.as_deref().unwrap_or_default()
        );
        return Ok(0);
    };
    let at = match &args.at {
        Some(t) => parse_time("--at", t)?,
        None => now(),
    };
    let mut zone = ZoneFile::load(file)?;
    if !owner.is_subdomain_of(&zone.origin) {
        bail!("{owner} is outside the zone {}", zone.origin);
    }
    // The marker first: a crash between the two writes leaves the mappings refused at
    // the next load, never a release without its marker.
    let markers = release::path_for(file);
    let mut releases = Releases::load(&markers)?;
    releases.mark(owner.clone(), at);
    releases.save(&markers)?;
    let removed = zone.remove_ssi(&owner, None);
    zone.bump_serial();
    zone.save(file, WriteStyle::Native)?;
    println!(
        "released {owner}: removed {removed} mapping(s); mappings verified before {} are refused ({})",
        format_time(at),
        markers.display()
    );
    Ok(0)
}

fn parse_all_ns(ns: &[String]) -> anyhow::Result<Vec<(Name, std::net::IpAddr)>> {
    ns.iter().map(|a| parse_ns(a)).collect()
}

pub fn port_out(args: PortOutArgs, apex: &Name) -> anyhow::Result<u8> {
    let owner = owner_of(&args.sii, args.region.as_deref(), apex)?;
    let ns = parse_all_ns(&args.ns)?;
    if args.out.exists() {
        bail!("{} already exists; not overwriting it", args.out.display());
    }
    let Some(file) = &args.file else {
        let mut dp = operator(&args.live)?;
        let server = super::publish::parse_dp(args.live.dp.as_deref().unwrap_or_default())?;
        let wait = Duration::from_secs(args.live.timeout.max(1));
        let mappings = super::runtime()?.block_on(operate::fetch_mappings(server, &owner, wait))?;
        // Handed over before the delegation: the mappings are never only in a zone
        // that no longer serves them.
        operate::mappings_file(&owner, &mappings).save(&args.out, WriteStyle::Native)?;
        if !send(&mut dp, &operate::delegation_update(&owner, &ns, args.ttl))? {
            return Ok(EXIT_NEGATIVE);
        }
        println!(
            "ported out {owner}: {} mapping(s) handed over in {}; {server} delegates it to {}",
            mappings.len(),
            args.out.display(),
            names(&ns)
        );
        return Ok(0);
    };
    let mut zone = ZoneFile::load(file)?;
    if owner == zone.origin || !owner.is_subdomain_of(&zone.origin) {
        bail!("{owner} is not a name below the zone {}", zone.origin);
    }
    let mappings: Vec<(u32, crate::record::Ssi)> = zone
        .records
        .iter()
        .filter(|r| r.name == owner)
        .filter_map(|r| match &r.data {
            RData::Ssi(s) => Some((r.ttl, (**s).clone())),
            _ => None,
        })
        .collect();
    operate::mappings_file(&owner, &mappings).save(&args.out, WriteStyle::Native)?;
    // Whatever lay at or below the number moves with it.
    zone.records
        .retain(|r| !r.name.is_subdomain_of(&owner) || matches!(r.data, RData::Ns(_)));
    zone.set_delegation(&owner, &ns, args.ttl);
    zone.bump_serial();
    zone.save(file, WriteStyle::Native)?;
    println!(
        "ported out {owner}: {} mapping(s) handed over in {}; {} delegates it to {}",
        mappings.len(),
        args.out.display(),
        file.display(),
        names(&ns)
    );
    Ok(0)
}

fn names(ns: &[(Name, std::net::IpAddr)]) -> String {
    ns.iter()
        .map(|(n, _)| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The zone file of a ported number in a DP's zone directory: `<origin>.zone`.
pub fn zone_file_in(dir: &Path, origin: &Name) -> PathBuf {
    let name = origin.to_string();
    dir.join(format!("{}.zone", name.trim_end_matches('.')))
}

pub fn port_in(args: PortInArgs, apex: &Name) -> anyhow::Result<u8> {
    let owner = owner_of(&args.sii, args.region.as_deref(), apex)?;
    let ns = parse_all_ns(&args.ns)?;
    let mappings = operate::read_mappings(&args.mappings, &owner)?;
    let out = if args.out.is_dir() {
        zone_file_in(&args.out, &owner)
    } else {
        args.out.clone()
    };
    if out.exists() {
        bail!("{} already exists; not overwriting it", out.display());
    }
    let mut zone = ZoneFile::new_zone(
        owner.clone(),
        &ns,
        args.ttl,
        super::zone::date_serial(now()),
    );
    let n = mappings.len();
    zone.records.extend(mappings);
    zone.save(&out, WriteStyle::Native)?;
    println!(
        "ported in {owner}: zone {owner} with {n} mapping(s) in {}",
        out.display()
    );
    Ok(0)
}
