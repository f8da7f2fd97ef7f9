//! One lookup through the library API: build a resolver from a config file, ask it for an
//! identifier's verified mappings, print them, the reason it is not discoverable, or the
//! step that failed.
//!
//! ```sh
//! cargo run --release --example lookup -- "+1 555 111 2222" [CONFIG] [personal|business|any]
//! ```
//!
//! CONFIG defaults to zones/resolver.toml, which expects the demo tree on port 53 (see the
//! comments in that file). Exit code as `mimi lookup`: 0 found, 1 not discoverable, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use mimi_discovery::record::{format_time, Context};
use mimi_discovery::resolver::{Outcome, ResolveError, Resolver, ResolverConfig};
use mimi_discovery::sii::Sii;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(identifier) = args.next() else {
        eprintln!("usage: lookup IDENTIFIER [CONFIG] [personal|business|any]");
        return ExitCode::from(2);
    };
    let config_path = PathBuf::from(args.next().unwrap_or_else(|| "zones/resolver.toml".into()));
    // None: the policy from the config file (`context`, default any).
    let context: Option<Context> = match args.next().map(|c| c.parse()) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };

    // The identifier: a phone number in international format, or an email address.
    let sii = match Sii::parse(&identifier, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invalid identifier {identifier:?}: {e}");
            return ExitCode::from(2);
        }
    };

    // The config names the tree's root servers, its port and the trust file. `from_config_file`
    // loads both; `Resolver::new(config, trust)` does the same from values built in code.
    let config = match ResolverConfig::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "resolving {sii} under {} from root servers {:?}, port {}",
        config.apex, config.roots, config.port
    );
    let resolver = match Resolver::from_config_file(&config_path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };

    // The resolver is async (tokio); a lookup needs a runtime.
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(resolver.lookup(&sii, context));

    match result {
        Ok(r) => {
            println!(
                "owner name {} ({} queries, {:?})",
                r.owner, r.queries, r.elapsed
            );
            let code = match &r.outcome {
                Outcome::Found(mappings) => {
                    for m in mappings {
                        println!(
                            "  priority {:>3}  {}  (provider {}, context {}, valid until {})",
                            m.ssi.priority,
                            m.ssi.uri,
                            m.ssi.provider,
                            m.ssi.context,
                            format_time(m.ssi.not_after)
                        );
                    }
                    0
                }
                Outcome::NotDiscoverable(reason) => {
                    println!("  not discoverable: {reason}");
                    1
                }
            };
            // Records that failed verification next to valid ones are dropped, with reasons.
            for x in &r.rejected {
                println!("  rejected {} ({}): {}", x.ssi, x.provider, x.reason);
            }
            if let (Some(zone), Some(server)) = (&r.zone, r.server) {
                println!("  answered by zone {zone} at {server}");
            }
            ExitCode::from(code)
        }
        Err(ResolveError::AllRejected { owner, rejected }) => {
            println!("every record at {owner} failed verification:");
            for x in &rejected {
                println!("  {} ({}): {}", x.ssi, x.provider, x.reason);
            }
            ExitCode::from(2)
        }
        Err(e) => {
            // No server answered, a server answered badly, limits hit, ...: the message
            // names the zone and the servers tried.
            eprintln!("lookup failed: {e}");
            ExitCode::from(2)
        }
    }
}
