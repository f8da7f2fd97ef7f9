//! What `mimi resolver serve` shows Prometheus (`[metrics] listen`, docs/operations.md):
//! lookups, the cache and the upstream transport, read at each scrape.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use super::Resolver;
use crate::metrics::{Scrape, Source};

impl Source for Resolver {
    fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
        let st = &self.stats;
        s.counter(
            "mimi_resolver_lookups",
            "Lookups asked of the resolver (public and private).",
            st.lookups.load(Relaxed),
        )?;
        s.counter(
            "mimi_resolver_cache_hits",
            "Lookups answered from the cache.",
            st.cache_hits.load(Relaxed),
        )?;
        s.counter(
            "mimi_resolver_queries_sent",
            "Queries sent to DPs by iterative lookups.",
            st.queries_sent.load(Relaxed),
        )?;
        s.counter(
            "mimi_resolver_rejected_records",
            "Records that failed verification and were dropped.",
            st.rejected_records.load(Relaxed),
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
        s.gauge(
            "mimi_resolver_cache_entries",
            "Entries in the cache (answers, denials, delegations, keys).",
            i64::try_from(self.cache().len()).unwrap_or(i64::MAX),
        )
    }
}
