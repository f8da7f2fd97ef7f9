//! What `mimi resolver serve` shows Prometheus (`[metrics] listen`, docs/operations.md):
//! lookups, the cache and the upstream transport, read at each scrape.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use super::stats::OUTCOMES;
use super::{RejectReason, Resolver};
use crate::metrics::{Scrape, Source};

impl Source for Resolver {
    fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
        let st = &self.stats;
        s.counter(
            "mimi_resolver_lookups",
            "Lookups asked of the resolver (public and private).",
            st.lookups.load(Relaxed),
        )?;
        let outcomes: Vec<(&str, u64)> = OUTCOMES
            .iter()
            .zip(&st.outcomes)
            .map(|(label, c)| (*label, c.load(Relaxed)))
            .collect();
        s.counters(
            "mimi_resolver_lookup_outcomes",
            "Lookups by how they ended: mappings found, not discoverable, DNSSEC bogus, failed.",
            "outcome",
            &outcomes,
        )?;
        s.counters(
            "mimi_resolver_cache_lookups",
            "Lookups the cache answered (hit) or could not (miss).",
            "result",
            &[
                ("hit", st.cache_hits.load(Relaxed)),
                ("miss", st.cache_misses.load(Relaxed)),
            ],
        )?;
        s.counter(
            "mimi_resolver_queries_sent",
            "Queries sent to DPs by iterative lookups.",
            st.queries_sent.load(Relaxed),
        )?;
        let rejected: Vec<(&str, u64)> = RejectReason::ALL
            .iter()
            .zip(&st.rejected_by)
            .map(|(k, c)| (k.label(), c.load(Relaxed)))
            .collect();
        s.counters(
            "mimi_resolver_rejected_records",
            "Records that failed verification and were dropped, by reason.",
            "reason",
            &rejected,
        )?;
        let inv = &self.invalidation.stats;
        s.counters(
            "mimi_resolver_notify",
            "NOTIFYs from DPs: accepted, or ignored (not subscribed, bad TSIG).",
            "result",
            &[
                ("accepted", inv.notify_accepted.load(Relaxed)),
                ("ignored", inv.notify_ignored.load(Relaxed)),
            ],
        )?;
        s.counters(
            "mimi_resolver_changes_fetched",
            "CHANGES fetched after a NOTIFY or a poll: applied, or failed.",
            "result",
            &[
                ("applied", inv.changes_fetched.load(Relaxed)),
                ("failed", inv.changes_failed.load(Relaxed)),
            ],
        )?;
        s.counters(
            "mimi_resolver_invalidated",
            "Cache invalidation: entries dropped for changed names, and zones dropped whole (the DP's journal no longer reached the cached serial).",
            "what",
            &[
                ("entries", inv.entries_dropped.load(Relaxed)),
                ("zones", inv.zone_resets.load(Relaxed)),
            ],
        )?;
        s.counter(
            "mimi_resolver_pir_decode_failures",
            "Private lookups whose answer failed authentication.",
            st.pir_decode_failures.load(Relaxed),
        )?;
        s.counters(
            "mimi_resolver_pir_batches",
            "Private-lookup batch queries sent, and the lookups they served.",
            "what",
            &[
                ("batches", st.pir_batches.load(Relaxed)),
                ("lookups", st.pir_batched_lookups.load(Relaxed)),
            ],
        )?;
        let up = &self.upstream().stats;
        s.counters(
            "mimi_resolver_tls_connections",
            "DNS-over-TLS exchanges with DPs: over a new connection, or a kept one.",
            "kind",
            &[
                ("new", up.tls_handshakes.load(Relaxed)),
                ("reused", up.tls_reused.load(Relaxed)),
            ],
        )?;
        s.latency(
            "mimi_resolver_upstream_seconds",
            "Time from a query sent to a DP to its answer, for every answered query of a walk.",
            &up.latency,
        )?;
        let rs = &self.replicas.stats;
        s.counters(
            "mimi_resolver_replica_runs",
            "Encrypted-replica runs received: whole tables (a shard each) and deltas.",
            "kind",
            &[
                ("full", rs.full_runs.load(Relaxed)),
                ("delta", rs.delta_runs.load(Relaxed)),
            ],
        )?;
        s.counter(
            "mimi_resolver_replica_lookups",
            "Private lookups answered from a local replica.",
            rs.lookups.load(Relaxed),
        )?;
        let sizes = self.replicas.sizes();
        let bytes: Vec<(String, i64)> = sizes
            .iter()
            .map(|(z, b, _)| (z.to_string(), i64::try_from(*b).unwrap_or(i64::MAX)))
            .collect();
        s.gauges(
            "mimi_resolver_replica_bytes",
            "Disk taken by each zone's replica.",
            "zone",
            &bytes,
        )?;
        let serials: Vec<(String, i64)> = sizes
            .iter()
            .map(|(z, _, serial)| (z.to_string(), i64::from(*serial)))
            .collect();
        s.gauges(
            "mimi_resolver_replica_serial",
            "Serial of each zone's replica (of its first shard).",
            "zone",
            &serials,
        )?;
        s.gauge(
            "mimi_resolver_cache_entries",
            "Entries in the cache (answers, denials, delegations, keys).",
            i64::try_from(self.cache().len()).unwrap_or(i64::MAX),
        )
    }
}
