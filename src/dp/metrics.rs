//! What `mimi dp serve` shows Prometheus (`[metrics] listen`, docs/operations.md): its
//! counters, its access classes and its zones, read at each scrape.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use super::handler::Shared;
use crate::metrics::{Scrape, Source};

impl Source for Shared {
    fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
        let st = &self.stats;
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
        s.counter(
            "mimi_dp_queries",
            "DNS messages received over UDP, TCP and DNS over TLS.",
            n(&st.queries),
        )?;
        s.counters(
            "mimi_dp_responses",
            "Responses sent, by RCODE.",
            "rcode",
            &[
                ("NOERROR", n(&st.noerror)),
                ("NXDOMAIN", n(&st.nxdomain)),
                ("REFUSED", n(&st.refused)),
                ("FORMERR", n(&st.formerr)),
                ("NOTIMP", n(&st.notimp)),
                ("SERVFAIL", n(&st.servfail)),
                ("other", n(&st.other_rcode)),
            ],
        )?;
        s.counters(
            "mimi_dp_answers",
            "Answers that were referrals or NODATA.",
            "kind",
            &[("referral", n(&st.referrals)), ("nodata", n(&st.nodata))],
        )?;
        s.counter(
            "mimi_dp_truncated",
            "UDP answers sent truncated (TC).",
            n(&st.truncated),
        )?;
        s.counter(
            "mimi_dp_transfers",
            "Zone transfers sent (AXFR, IXFR).",
            n(&st.transfers),
        )?;
        s.counter(
            "mimi_dp_ixfr_incremental",
            "IXFR answered with differences rather than the whole zone.",
            n(&st.ixfr_incremental),
        )?;
        s.counters(
            "mimi_dp_replica_runs",
            "Encrypted-replica runs sent to resolvers.",
            "kind",
            &[
                ("full", n(&st.replica_full)),
                ("delta", n(&st.replica_delta)),
            ],
        )?;
        s.counters(
            "mimi_dp_updates",
            "DNS UPDATEs, by result.",
            "result",
            &[
                ("accepted", n(&st.updates_accepted)),
                ("refused", n(&st.updates_refused)),
            ],
        )?;
        s.counter(
            "mimi_dp_changes_answered",
            "CHANGES questions answered (cache invalidation).",
            n(&st.changes_answered),
        )?;
        s.counter(
            "mimi_dp_notify_sent",
            "NOTIFY messages sent to secondaries and subscribed resolvers.",
            n(&st.notify_sent),
        )?;
        s.counter(
            "mimi_dp_tls_handshake_failures",
            "DNS-over-TLS connections whose handshake failed or did not finish in time.",
            n(&st.tls_handshake_failures),
        )?;
        let access = self.access.load();
        let report = access.report();
        let mut refused: Vec<(String, u64)> =
            vec![("anonymous".into(), access.refused_anonymous())];
        refused.extend(report.iter().map(|c| (c.provider.to_string(), c.refused)));
        s.counters(
            "mimi_dp_quota_refusals",
            "Requests refused because their access class was over its quota, by class.",
            "class",
            &refused,
        )?;
        let lookups: Vec<(String, u64)> = report
            .iter()
            .map(|c| (c.provider.to_string(), c.lookups))
            .collect();
        s.counters(
            "mimi_dp_class_lookups",
            "Lookups counted against each identified provider's quota.",
            "class",
            &lookups,
        )?;
        let mut zones = self.zones.load().served();
        zones.sort_by(|a, b| a.store.origin().cmp(b.store.origin()));
        let serials: Vec<(String, i64)> = zones
            .iter()
            .map(|z| {
                (
                    z.store.origin().to_string(),
                    i64::from(z.store.soa().serial),
                )
            })
            .collect();
        s.gauges(
            "mimi_dp_zone_serial",
            "SOA serial of each zone served.",
            "zone",
            &serials,
        )?;
        let records: Vec<(String, i64)> = zones
            .iter()
            .map(|z| {
                let count = i64::try_from(z.store.record_count()).unwrap_or(i64::MAX);
                (z.store.origin().to_string(), count)
            })
            .collect();
        s.gauges(
            "mimi_dp_zone_records",
            "Records in each zone served.",
            "zone",
            &records,
        )
    }
}
