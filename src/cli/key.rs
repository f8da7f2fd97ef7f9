//! `mimi key ...`: app-provider signing keys.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};

use super::parse_name;
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
