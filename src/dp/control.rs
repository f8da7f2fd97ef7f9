//! `mimi ctl` against `mimi dp serve` (docs/operations.md): the commands, carried out in
//! the server's loop beside the signals (`DpServer::run_until_signalled`).

use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;

use super::DpServer;
use crate::control::{counters_json, Reply, Request};
use crate::name::Name;

const COMMANDS: &str = "status, reload [ZONE], zone-status ZONE, stats, stop";

impl DpServer {
    /// The reply to one control request; `stop` is answered here and acted on by the loop.
    pub async fn control(&self, request: &Request) -> Reply {
        match (request.command.as_str(), request.zone.as_deref()) {
            ("status", _) => self.status(),
            ("reload", None) => match self.reload().await {
                Ok(failures) if failures.is_empty() => Reply::done("reloaded", json!({})),
                Ok(failures) => Reply {
                    ok: false,
                    message: format!(
                        "reloaded; {} zone(s) kept at their previous version: {}",
                        failures.len(),
                        failures.join("; ")
                    ),
                    data: json!({ "failures": failures }),
                },
                Err(e) => Reply::refused(format!(
                    "reload failed, still serving the previous zones: {e}"
                )),
            },
            ("reload", Some(zone)) => self.reload_one(zone).await,
            ("zone-status", Some(zone)) => self.zone_status(zone),
            ("zone-status", None) => Reply::refused("zone-status needs a zone"),
            ("stats", _) => {
                let summary = self.stats().summary();
                let access = self.shared.access.load().summary();
                let mut data = counters_json(&summary);
                data["access"] = json!(access);
                Reply::done(summary, data)
            }
            ("stop", _) => Reply::done("stopping", json!({})),
            ("flush", _) => {
                Reply::refused("a DP keeps no cache to flush (flush is the resolver's)")
            }
            (other, _) => {
                Reply::refused(format!("unknown command {other:?}; a DP takes {COMMANDS}"))
            }
        }
    }

    fn status(&self) -> Reply {
        let zones = self.shared.zones.load().served();
        let listen: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        let queries = self.stats().queries.load(Relaxed);
        Reply::done(
            format!(
                "serving {} zone(s) on {}; {queries} queries",
                zones.len(),
                listen.join(", ")
            ),
            json!({
                "zones": zones.len(),
                "listen": listen,
                "tls": self.tls_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "metrics": self.metrics_addr.map(|a| a.to_string()),
                "queries": queries,
            }),
        )
    }

    fn zone_status(&self, zone: &str) -> Reply {
        let Ok(origin) = Name::parse(zone, Some(&Name::root())) else {
            return Reply::refused(format!("{zone:?} is not a domain name"));
        };
        let served = self.shared.zones.load().served();
        let Some(z) = served.iter().find(|z| *z.store.origin() == origin) else {
            return Reply::refused(format!("zone {origin} is not served here"));
        };
        let serial = z.store.soa().serial;
        let records = z.store.record_count();
        let epoch = z.pir.as_ref().map(|p| p.pir.db.config().epoch);
        Reply::done(
            format!(
                "zone {origin}: serial {serial}, {records} records, journal depth {}{}{}",
                z.history.len(),
                if z.store.signer().is_some() {
                    ", signed"
                } else {
                    ""
                },
                epoch.map_or(String::new(), |e| format!(", private-lookup epoch {e}"))
            ),
            json!({
                "zone": origin.to_string(),
                "serial": serial,
                "records": records,
                "journal_depth": z.history.len(),
                "rejected_at_load": z.rejected,
                "signed": z.store.signer().is_some(),
                "pir_epoch": epoch,
            }),
        )
    }

    /// Re-reads one configured zone's file, as a reload does for every zone.
    async fn reload_one(&self, zone: &str) -> Reply {
        let Ok(origin) = Name::parse(zone, Some(&Name::root())) else {
            return Reply::refused(format!("{zone:?} is not a domain name"));
        };
        let config = self.config.load_full();
        let Some(zc) = config.zones.iter().find(|z| z.origin == origin) else {
            return Reply::refused(format!(
                "zone {origin} is not configured here (a zone directory's zones reload with its scan)"
            ));
        };
        let trust = self.shared.trust.load_full();
        let checked = match super::read_checked(&config, zc, &trust).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Reply::refused(format!("zone {origin} kept at its version: {e}")),
            Err(e) => return Reply::refused(format!("zone {origin} kept at its version: {e}")),
        };
        let writer = self.shared.writers_lock().get(&origin).cloned();
        let Some(writer) = writer else {
            return Reply::refused(format!("zone {origin} has no writer (not started)"));
        };
        match writer.reload(checked, zc.dnssec.clone()).await {
            Ok(serial) => Reply::done(
                format!("zone {origin} reloaded: serial {serial}"),
                json!({ "zone": origin.to_string(), "serial": serial }),
            ),
            Err(e) => Reply::refused(format!("zone {origin} kept at its version: {e}")),
        }
    }
}
