//! `mimi ctl --socket PATH COMMAND [ZONE]`: steer a running `mimi dp serve` or `mimi
//! resolver serve` through its control socket (`crate::control`). Exit 0 done, 1 refused
//! by the server, 2 when the socket cannot be reached.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::EXIT_NEGATIVE;
use crate::control::{send, Request};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CtlCommand {
    /// What the server serves or resolves, and its query or lookup count.
    Status,
    /// A DP: re-read the config and every zone (or ZONE's file), as SIGHUP does.
    Reload,
    /// A DP: ZONE's serial, records, journal depth, signing and private-lookup epoch.
    ZoneStatus,
    /// A resolver: empty the cache (or drop ZONE's entries).
    Flush,
    /// The server's counters.
    Stats,
    /// Stop the server, as SIGTERM does.
    Stop,
}

impl CtlCommand {
    fn name(self) -> &'static str {
        match self {
            CtlCommand::Status => "status",
            CtlCommand::Reload => "reload",
            CtlCommand::ZoneStatus => "zone-status",
            CtlCommand::Flush => "flush",
            CtlCommand::Stats => "stats",
            CtlCommand::Stop => "stop",
        }
    }
}

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The server's control socket (its `[control] socket`).
    #[arg(long)]
    pub socket: PathBuf,
    /// Print the server's reply as JSON.
    #[arg(long)]
    pub json: bool,
    #[arg(value_enum)]
    pub command: CtlCommand,
    /// The zone, for reload (optional), zone-status and flush (optional).
    pub zone: Option<String>,
}

pub fn run(args: CtlArgs) -> anyhow::Result<u8> {
    if matches!(args.command, CtlCommand::ZoneStatus) && args.zone.is_none() {
        bail!("zone-status needs a zone: mimi ctl --socket PATH zone-status ZONE");
    }
    let request = Request {
        command: args.command.name().to_string(),
        zone: args.zone,
    };
    let reply = super::runtime()?.block_on(send(&args.socket, &request))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else if reply.ok {
        println!("{}", reply.message);
    } else {
        eprintln!("mimi: {}", reply.message);
    }
    Ok(if reply.ok { 0 } else { EXIT_NEGATIVE })
}
