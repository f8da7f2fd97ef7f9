//! `mimi ctl` against `mimi resolver serve` (docs/operations.md): the commands, carried
//! out in the server's loop beside the signals.

use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;

use super::Resolver;
use crate::control::{Reply, Request};
use crate::name::Name;

const COMMANDS: &str = "status, flush [ZONE], stats, stop";

impl Resolver {
    /// The reply to one control request; `stop` is answered here and acted on by the loop.
    pub fn control(&self, request: &Request) -> Reply {
        let st = &self.stats;
        match (request.command.as_str(), request.zone.as_deref()) {
            ("status", _) => Reply::done(
                format!(
                    "resolving {} from {} root server(s); {} cache entries, {} lookups",
                    self.config.apex,
                    self.config.roots.len(),
                    self.cache().len(),
                    st.lookups.load(Relaxed)
                ),
                json!({
                    "apex": self.config.apex.to_string(),
                    "roots": self.config.roots.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "listen": self.config.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "validating": self.config.dnssec.is_some(),
                    "cache_entries": self.cache().len(),
                    "lookups": st.lookups.load(Relaxed),
                }),
            ),
            ("flush", None) => {
                let entries = self.cache().len();
                self.flush();
                Reply::done(
                    format!("cache flushed ({entries} entries)"),
                    json!({ "dropped": entries }),
                )
            }
            ("flush", Some(zone)) => match Name::parse(zone, Some(&Name::root())) {
                Ok(origin) => {
                    let dropped = self.cache().invalidate(&origin, None);
                    Reply::done(
                        format!("dropped {dropped} cache entries of zone {origin}"),
                        json!({ "zone": origin.to_string(), "dropped": dropped }),
                    )
                }
                Err(e) => Reply::refused(format!("{zone:?} is not a domain name: {e}")),
            },
            ("stats", _) => {
                let counters = [
                    ("lookups", st.lookups.load(Relaxed)),
                    ("cache_hits", st.cache_hits.load(Relaxed)),
                    ("queries_sent", st.queries_sent.load(Relaxed)),
                    ("rejected_records", st.rejected_records()),
                    ("pir_decode_failures", st.pir_decode_failures.load(Relaxed)),
                    ("pir_batches", st.pir_batches.load(Relaxed)),
                    ("pir_batched_lookups", st.pir_batched_lookups.load(Relaxed)),
                    ("cache_entries", self.cache().len() as u64),
                ];
                let line: Vec<String> = counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Reply::done(
                    line.join(" "),
                    crate::control::counters_json(&line.join(" ")),
                )
            }
            ("stop", _) => Reply::done("stopping", json!({})),
            ("reload" | "zone-status", _) => Reply::refused(format!(
                "a resolver serves no zones; it takes {COMMANDS} (restart it to change its config)"
            )),
            (other, _) => Reply::refused(format!(
                "unknown command {other:?}; a resolver takes {COMMANDS}"
            )),
        }
    }
}
