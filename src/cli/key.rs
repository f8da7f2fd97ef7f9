//! `mimi key ...`: app-provider signing keys.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::parse_name;
use crate::name::Name;
use crate::record::{trust_entry_toml, ProviderKey};

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
