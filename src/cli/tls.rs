//! `mimi tls ...`: a deployment's CA and its server and client certificates for DNS over
//! TLS (docs/security.md), and the SPKI pin of a certificate.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use rustls::pki_types::pem::PemObject;

use super::now;
use crate::tls::{self, Issued};

#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// Make a deployment CA: PREFIX.pem (certificate) and PREFIX.key (mode 0600).
    Ca {
        /// The CA's common name.
        #[arg(long, default_value = "mimi-discovery deployment CA")]
        name: String,
        /// Writes PREFIX.pem and PREFIX.key; refuses to overwrite either.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate signed by the CA, for a DP or resolver (server) and for an app
    /// provider's resolver presenting itself (client); prints its SPKI pin.
    Issue {
        /// The CA's PREFIX (PREFIX.pem and PREFIX.key from `mimi tls ca`).
        #[arg(long)]
        ca: PathBuf,
        /// A DNS name or IP address the certificate is for; repeat for more.
        #[arg(long, required = true)]
        name: Vec<String>,
        /// Writes PREFIX.pem and PREFIX.key; refuses to overwrite either.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Print the SPKI pin of a PEM certificate (its first): base64 SHA-256, as `kdig
    /// +tls-pin` and a resolver's `pin` take it.
    Pin { cert: PathBuf },
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut p = prefix.as_os_str().to_owned();
    p.push(ext);
    PathBuf::from(p)
}

/// Writes PREFIX.pem (0644 by umask) and PREFIX.key (0600), refusing existing files.
fn save(prefix: &Path, issued: &Issued) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (with_ext(prefix, ".pem"), with_ext(prefix, ".key"));
    for p in [&cert, &key] {
        if p.exists() {
            anyhow::bail!("{} already exists; not overwriting it", p.display());
        }
    }
    crate::record::write_secret_file_new(&key, issued.key_pem.as_bytes())?;
    crate::zone::write_file_atomic(&cert, issued.cert_pem.as_bytes())
        .with_context(|| cert.display().to_string())?;
    Ok((cert, key))
}

fn pin_of(pem: &str) -> anyhow::Result<String> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
    Ok(tls::spki_pin(&der)?)
}

pub fn run(cmd: TlsCommand) -> anyhow::Result<u8> {
    let now = now();
    match cmd {
        TlsCommand::Ca { name, out, days } => {
            let ca = tls::make_ca(&name, now - 3600, now + u64::from(days) * 86400)?;
            let (cert, key) = save(&out, &ca)?;
            println!("CA {name:?}: {} and {}", cert.display(), key.display());
            Ok(0)
        }
        TlsCommand::Issue {
            ca,
            name,
            out,
            days,
        } => {
            let read =
                |p: PathBuf| std::fs::read_to_string(&p).with_context(|| p.display().to_string());
            let ca = Issued {
                cert_pem: read(with_ext(&ca, ".pem"))?,
                key_pem: read(with_ext(&ca, ".key"))?,
            };
            let issued = tls::issue(&ca, &name, now - 3600, now + u64::from(days) * 86400)?;
            let (cert, key) = save(&out, &issued)?;
            println!(
                "certificate for {}: {} and {}; pin {}",
                name.join(", "),
                cert.display(),
                key.display(),
                pin_of(&issued.cert_pem)?
            );
            Ok(0)
        }
        TlsCommand::Pin { cert } => {
            let pem = std::fs::read_to_string(&cert).with_context(|| cert.display().to_string())?;
            println!("{}", pin_of(&pem)?);
            Ok(0)
        }
    }
}
