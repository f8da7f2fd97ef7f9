//! The `mimi` command line: argument parsing and the edge where errors become messages
//! and exit codes.

mod ctl;
mod demo;
mod key;
mod lifecycle;
mod lookup;
mod publish;
mod tls;
mod zone;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::name::Name;
use crate::sii::{Sii, DEFAULT_APEX};

/// Exit code for a check that found problems or a lookup that found nothing.
pub const EXIT_NEGATIVE: u8 = 1;
/// Exit code for bad input or a failure.
pub const EXIT_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "mimi",
    version,
    about = "Discovery for interoperable end-to-end encrypted messaging (IETF MIMI)"
)]
pub struct Cli {
    /// Apex of the discovery tree.
    #[arg(long, global = true, env = "MIMI_APEX", default_value = DEFAULT_APEX)]
    pub apex: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the DNS owner name of a phone number or email address.
    Name {
        /// E.164 number (+1 555 111 2222) or email address.
        sii: String,
        /// Region for national-format numbers (ISO 3166, e.g. US, GB).
        #[arg(long)]
        region: Option<String>,
    },
    /// App-provider signing keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Zone files: create, sign mappings into, check, export.
    #[command(subcommand)]
    Zone(zone::ZoneCommand),
    /// The discovery provider's authoritative DNS server.
    #[command(subcommand)]
    Dp(DpCommand),
    /// The app provider's verifying, caching resolver.
    #[command(subcommand)]
    Resolver(ResolverCommand),
    /// Look up an identifier's verified mappings; exit 0 found, 1 not discoverable, 2 error.
    Lookup(lookup::LookupArgs),
    /// Publish signed mappings to a zone's primary DP by DNS UPDATE with TSIG; exit 0
    /// accepted, 1 refused (the DP's reason on stderr), 2 error.
    Publish(publish::PublishArgs),
    /// Withdraw a mapping: send a signed tombstone by DNS UPDATE with TSIG; exit codes as
    /// publish.
    Withdraw(publish::WithdrawArgs),
    /// A deployment's CA and certificates for DNS over TLS.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
    /// Start the demo tree from zones/ on loopback with a resolver, and run sample lookups.
    Demo {
        /// Directory with the demo zones (default: ./zones, then the source tree's).
        #[arg(long)]
        zones: Option<std::path::PathBuf>,
        /// After the checks, keep the tree and a resolver (DNS and DNS over TLS) running and
        /// print commands to try against them, until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
    /// Steer a running DP or resolver through its control socket ([control] socket).
    Ctl(ctl::CtlArgs),
    /// Write the manual pages (mimi.1, mimi-dp-serve.1, ...) into a directory.
    Man {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print the shell completion script for SHELL (source it, or install it where the
    /// shell looks: /usr/share/bash-completion/completions/mimi, ...).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum ResolverCommand {
    /// Answer SSI queries over DNS with verified records only, until SIGTERM/SIGINT.
    Serve {
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum DpCommand {
    /// Serve the configured zones until SIGTERM/SIGINT; SIGHUP reloads, SIGUSR1 logs counters.
    Serve {
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Check a DP config and load every zone in it as `serve` would, then exit.
    Check {
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

/// Runs the CLI and turns the outcome into an exit code; errors are printed once, here.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Servers log what they do; one-shot commands only their problems.
    let default_level = match cli.command {
        // hickory-server's own lines only when something is wrong; one line per query is
        // ours, at debug.
        Command::Dp(_) | Command::Resolver(_) => "info,hickory_server=warn",
        // The demo shows rejections in its table; the log would repeat them.
        Command::Demo { .. } => "error",
        _ => "warn",
    };
    init_tracing(default_level);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mimi: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIMI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let apex = parse_apex(&cli.apex)?;
    match cli.command {
        Command::Name { sii, region } => {
            let parsed = Sii::parse(&sii, region.as_deref()).and_then(|s| s.owner_name(&apex));
            match parsed {
                Ok(name) => {
                    println!("{name}");
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("mimi: invalid identifier {sii:?}: {e}");
                    Ok(EXIT_ERROR)
                }
            }
        }
        Command::Key(cmd) => key::run(cmd, &apex),
        Command::Zone(cmd) => zone::run(cmd, &apex),
        Command::Tls(cmd) => tls::run(cmd),
        Command::Dp(cmd) => dp(cmd),
        Command::Resolver(ResolverCommand::Serve { config }) => lookup::serve(config),
        Command::Lookup(args) => lookup::run(args, &apex),
        Command::Publish(args) => publish::publish(args, &apex),
        Command::Withdraw(args) => publish::withdraw(args, &apex),
        Command::Demo { zones, serve } => demo::run(zones, &apex, serve),
        Command::Man { out } => man(&out),
        Command::Ctl(args) => ctl::run(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write as _;
            // Into memory first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mimi", &mut script);
            let mut out = std::io::stdout().lock();
            match out.write_all(&script).and_then(|()| out.flush()) {
                Ok(()) => Ok(0),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn dp(cmd: DpCommand) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cmd {
        DpCommand::Serve { config } => runtime.block_on(async {
            let server = crate::dp::DpServer::start(&config).await?;
            server.run_until_signalled().await?;
            Ok(0)
        }),
        DpCommand::Check { config } => {
            let cfg = crate::dp::DpConfig::load(&config)?;
            let trust = crate::record::TrustStore::load(&cfg.trust)?;
            for zc in &cfg.zones {
                let checked = crate::dp::zones::read_zone(
                    zc,
                    &trust,
                    &cfg.apex,
                    now(),
                    cfg.serve_invalid_records,
                )
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{e} (zone {} at {}:{})",
                        zc.origin,
                        cfg.path.display(),
                        zc.line
                    )
                })?;
                crate::zone::ZoneStore::build(zc.origin.clone(), checked.records)
                    .map_err(anyhow::Error::msg)?;
            }
            crate::dp::update::load_updaters(&cfg).map_err(anyhow::Error::msg)?;
            println!(
                "{}: {} zone(s) load; listen on {:?}",
                config.display(),
                cfg.zones.len(),
                cfg.listen
            );
            Ok(0)
        }
    }
}

fn parse_apex(text: &str) -> anyhow::Result<Name> {
    parse_name(text, "--apex")
}

/// Parses a domain name given on the command line (absolute, trailing dot optional).
pub fn parse_name(text: &str, what: &str) -> anyhow::Result<Name> {
    Name::parse(text, Some(&Name::root())).map_err(|e| anyhow::anyhow!("{what} {text:?}: {e}"))
}

/// Seconds since the Unix epoch.
/// A runtime for one command's network exchanges (publish, release, port).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses `NAME=IP` as given to `--ns`. Names on the command line are absolute, with
/// or without the trailing dot.
pub fn parse_ns(arg: &str) -> anyhow::Result<(Name, std::net::IpAddr)> {
    let (name, ip) = arg.split_once('=').ok_or_else(|| {
        anyhow::anyhow!("--ns {arg:?}: expected NAME=IP, e.g. ns1.example.=127.0.0.1")
    })?;
    let name =
        Name::parse(name, Some(&Name::root())).map_err(|e| anyhow::anyhow!("--ns {arg:?}: {e}"))?;
    let ip = ip
        .parse()
        .map_err(|_| anyhow::anyhow!("--ns {arg:?}: {ip:?} is not an IP address"))?;
    Ok((name, ip))
}

/// `mimi man --out DIR`: a page per command and subcommand (hidden ones left out), each
/// written to a temporary name and renamed into place.
fn man(out: &std::path::Path) -> anyhow::Result<u8> {
    use anyhow::Context as _;
    use clap::CommandFactory;
    fn pages(
        cmd: &clap::Command,
        out: &std::path::Path,
        written: &mut usize,
    ) -> anyhow::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            pages(sub, out, written)?;
        }
        let page = clap_mangen::Man::new(cmd.clone())
            .section("1")
            .manual("mimi-discovery");
        let mut text = Vec::new();
        page.render(&mut text)?;
        let path = out.join(page.get_filename());
        crate::zone::write_file_atomic(&path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        *written += 1;
        Ok(())
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = 0;
    pages(&cmd, out, &mut written)?;
    println!("{written} manual pages written to {}", out.display());
    Ok(0)
}
