//! `mimi key ...`: app-provider signing keys, TSIG keys and DNSSEC zone keys.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};

use super::parse_name;
use crate::dnssec::{DnssecKey, FLAGS_CSK, FLAGS_ZSK};
use crate::name::Name;
use crate::record::{trust_entry_toml, ProviderKey};
use crate::tsig::{KeyFileFormat, TsigKey};

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Make a new Ed25519 signing key for an app provider (file mode 0600; never overwrites).
    Generate {
        /// The app provider's domain, the host of its mimi:// URIs.
        #[arg(long)]
        provider: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the provider's trust entry (TOML) for a key file, ready to append to a trust file.
    Public { file: PathBuf },
    /// TSIG keys (RFC 8945, hmac-sha256) that authenticate DNS UPDATEs to a DP.
    #[command(subcommand)]
    Tsig(TsigCommand),
    /// DNSSEC signing keys of a zone (Ed25519, algorithm 15; docs/dnssec.md).
    #[command(subcommand)]
    Dnssec(DnssecCommand),
}

#[derive(Subcommand, Debug)]
pub enum DnssecCommand {
    /// Make a new Ed25519 signing key for a zone (file mode 0600; never overwrites).
    Generate {
        /// The zone the key signs (its apex).
        #[arg(long)]
        zone: String,
        #[arg(long)]
        out: PathBuf,
        /// csk: signs every RRset and the DS points at it (flags 257); zsk: flags 256.
        #[arg(long, value_enum, default_value_t = DnssecRole::Csk)]
        role: DnssecRole,
    },
    /// Print the key's DNSKEY and the DS record its parent publishes (zone-file lines).
    Ds { file: PathBuf },
    /// Start a key rollover: make the next key of the current key's zone (same role) and
    /// print the steps that take the zone to it without leaving validators a broken chain.
    Rollover {
        /// The key the zone is signed with now (its `dnssec_key`).
        current: PathBuf,
        /// Where the next key goes (file mode 0600; never overwrites).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DnssecRole {
    Csk,
    Zsk,
}

#[derive(Subcommand, Debug)]
pub enum TsigCommand {
    /// Make a new hmac-sha256 TSIG key file (mode 0600; never overwrites).
    Generate {
        /// The key's name, as the DP's config and the TSIG record carry it.
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
        /// bind: `key "NAME" { ... };` (nsupdate -k, named.conf, mimi); knot: the
        /// one-line `hmac-sha256:NAME:SECRET` that knsupdate -k and kdig -k read.
        #[arg(long, value_enum, default_value_t = TsigFormat::Bind)]
        format: TsigFormat,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TsigFormat {
    Bind,
    Knot,
}

pub fn run(cmd: KeyCommand, _apex: &Name) -> anyhow::Result<u8> {
    match cmd {
        KeyCommand::Generate { provider, out } => {
            let provider = parse_name(&provider, "--provider")?;
            let key = ProviderKey::generate(provider);
            key.save_new(&out)
                .with_context(|| format!("cannot write key file {}", out.display()))?;
            let public = key.verifying_key();
            println!("provider   {}", key.provider);
            println!(
                "public key {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    public.to_bytes()
                )
            );
            println!("key id     {}", hex::encode(key.key_id()));
            println!("written to {} (mode 0600: keep it secret)", out.display());
            Ok(0)
        }
        KeyCommand::Tsig(TsigCommand::Generate { name, out, format }) => {
            let name = parse_name(&name, "--name")?;
            let key = TsigKey::generate(name);
            let format = match format {
                TsigFormat::Bind => KeyFileFormat::Bind,
                TsigFormat::Knot => KeyFileFormat::Knot,
            };
            key.save_new(&out, format)
                .with_context(|| format!("cannot write TSIG key file {}", out.display()))?;
            println!("name       {}", key.name);
            println!("algorithm  {}", key.algorithm);
            println!("written to {} (mode 0600: keep it secret)", out.display());
            match format {
                KeyFileFormat::Bind => println!(
                    "use it with `nsupdate -k {0}`, `mimi publish --tsig {0}`, and in the DP's config",
                    out.display()
                ),
                KeyFileFormat::Knot => println!(
                    "use it with `knsupdate -k {0}`, `kdig -k {0}`, `mimi publish --tsig {0}`",
                    out.display()
                ),
            }
            Ok(0)
        }
        KeyCommand::Dnssec(DnssecCommand::Generate { zone, out, role }) => {
            let zone = parse_name(&zone, "--zone")?;
            let flags = match role {
                DnssecRole::Csk => FLAGS_CSK,
                DnssecRole::Zsk => FLAGS_ZSK,
            };
            let key = DnssecKey::generate(zone, flags);
            key.save_new(&out)
                .with_context(|| format!("cannot write DNSSEC key file {}", out.display()))?;
            println!("zone       {}", key.zone);
            println!("algorithm  15 (Ed25519)");
            println!("flags      {}", key.flags);
            println!("key tag    {}", key.key_tag());
            println!("written to {} (mode 0600: keep it secret)", out.display());
            println!("the parent's DS: mimi key dnssec ds {}", out.display());
            Ok(0)
        }
        KeyCommand::Dnssec(DnssecCommand::Rollover { current, out }) => {
            let old = DnssecKey::load(&current)?;
            let new = DnssecKey::generate(old.zone.clone(), old.flags);
            new.save_new(&out)
                .with_context(|| format!("cannot write DNSSEC key file {}", out.display()))?;
            print!("{}", rollover_plan(&old, &current, &new, &out));
            Ok(0)
        }
        KeyCommand::Dnssec(DnssecCommand::Ds { file }) => {
            let key = DnssecKey::load(&file)?;
            print!("{}", key.records_text());
            Ok(0)
        }
        KeyCommand::Public { file } => {
            let key = ProviderKey::load(&file)?;
            print!(
                "{}",
                trust_entry_toml(&key.provider, &[key.verifying_key()])
            );
            Ok(0)
        }
    }
}

/// The steps of a rollover from `old` to `new` (docs/dnssec.md, "Rollover"): publish the
/// next key, add its DS, switch signing, remove the old DS, then the old key, each after
/// the TTLs that let every cache move on.
fn rollover_plan(
    old: &DnssecKey,
    old_path: &std::path::Path,
    new: &DnssecKey,
    new_path: &std::path::Path,
) -> String {
    let ds = DnssecKey::ds_line;
    format!(
        "next key of {zone}: key tag {new_tag}, written to {new_file} (mode 0600)\n\
         \n\
         Roll {zone} from key {old_tag} to key {new_tag}; after each step, wait as said before the next:\n\
         1. Publish the next key. In the DP config, under this zone's [[zone]]:\n\
         \x20     dnssec_key = {old_file:?}\n\
         \x20     dnssec_publish = [{new_file:?}]\n\
         \x20  then reload the DP (SIGHUP). Wait the DNSKEY TTL (the zone's SOA TTL).\n\
         2. Add the next key's DS at the parent, beside the current one:\n\
         \x20     {new_ds}\n\
         \x20  Wait until every server of the parent serves it, then the parent's DS TTL.\n\
         3. Sign with the next key:\n\
         \x20     dnssec_key = {new_file:?}\n\
         \x20     dnssec_publish = [{old_file:?}]\n\
         \x20  then reload every server of the zone.\n\
         4. Remove the old key's DS at the parent:\n\
         \x20     {old_ds}\n\
         \x20  Wait the parent's DS TTL and the longest TTL in the zone (answers signed by\n\
         \x20  the old key that caches still hold need it published).\n\
         5. Retire the old key: drop dnssec_publish, reload. {old_file} may then be deleted.\n",
        zone = old.zone,
        old_tag = old.key_tag(),
        new_tag = new.key_tag(),
        old_file = old_path.display().to_string(),
        new_file = new_path.display().to_string(),
        new_ds = ds(new),
        old_ds = ds(old),
    )
}
