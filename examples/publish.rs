//! Publishing one mapping through the library API: sign it with the app provider's key,
//! send it to the zone's primary DP as a TSIG-signed DNS UPDATE, print what was published
//! or the DP's refusal.
//!
//! ```sh
//! cargo run --release --example publish -- DP_ADDR ZONE TSIG_FILE KEY_FILE SII SSI
//! cargo run --release --example publish -- 127.53.0.4:53 5.5.5.1.e164.mimi.arpa. \
//!     chat.tsig zones/keys/chat.example.key "+1 555 111 2222" mimi://chat.example/u/alice
//! ```
//!
//! Exit code as `mimi publish`: 0 published, 1 refused by the DP, 2 error.

use std::process::ExitCode;

use mimi_discovery::name::Name;
use mimi_discovery::publish::{self, Mapping, PublishError, SignOptions};
use mimi_discovery::record::ProviderKey;
use mimi_discovery::sii::DEFAULT_APEX;
use mimi_discovery::tsig::TsigKey;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dp, zone, tsig_file, key_file, sii, ssi] = args.as_slice() else {
        eprintln!("usage: publish DP_ADDR ZONE TSIG_FILE KEY_FILE SII SSI");
        return ExitCode::from(2);
    };
    match run(dp, zone, tsig_file, key_file, sii, ssi).await {
        Ok(()) => ExitCode::SUCCESS,
        // The DP answered and said no: the RCODE and its extended error name the reason.
        Err(e @ PublishError::Refused(_)) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

async fn run(
    dp: &str,
    zone: &str,
    tsig_file: &str,
    key_file: &str,
    sii: &str,
    ssi: &str,
) -> Result<(), PublishError> {
    let invalid = |what: &str, reason: String| PublishError::Invalid {
        what: what.to_string(),
        reason,
    };
    let server = dp
        .parse()
        .map_err(|e| invalid(dp, format!("not IP:PORT: {e}")))?;
    let zone: Name = zone.parse().map_err(|e| invalid(zone, format!("{e}")))?;
    let apex: Name = DEFAULT_APEX
        .parse()
        .map_err(|e| invalid(DEFAULT_APEX, format!("{e}")))?;
    // The TSIG key the DP binds to this provider, and the provider's Ed25519 signing key.
    let tsig = TsigKey::load(tsig_file).map_err(|e| invalid(tsig_file, e.to_string()))?;
    let key = ProviderKey::load(key_file).map_err(|e| invalid(key_file, e.to_string()))?;

    // Sign: the owner name is bound in, seq is the time in milliseconds, valid 365 days.
    let mapping = Mapping::new(sii, ssi);
    let signed = publish::sign_mapping(&mapping, &zone, &apex, &key, &SignOptions::now())?;

    // One UPDATE over TCP; NOERROR only with a verified TSIG on the answer.
    let published = publish::publish(server, &zone, &tsig, &[signed]).await?;
    for r in &published.records {
        println!(
            "published {r} to {} at {}",
            published.zone, published.server
        );
    }
    Ok(())
}
