//! What `mimi dp serve` shows Prometheus (`[metrics] listen`, docs/operations.md): its
//! counters, its access classes and its zones, read at each scrape.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use super::handler::Shared;
use super::stats::{QUERY_TYPES, TRANSPORTS, UPDATE_REFUSALS};
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
        let types: Vec<(&str, u64)> = QUERY_TYPES
            .iter()
            .zip(&st.query_types)
            .map(|((_, label), c)| (*label, n(c)))
            .collect();
        s.counters(
            "mimi_dp_query_types",
            "Queries by type (QUERY messages; UPDATE and NOTIFY are counted apart).",
            "type",
            &types,
        )?;
        let transports: Vec<(&str, u64)> = TRANSPORTS
            .iter()
            .zip(&st.transports)
            .map(|(label, c)| (*label, n(c)))
            .collect();
        s.counters(
            "mimi_dp_query_transports",
            "Queries by transport: UDP, TCP, DNS over TLS.",
            "transport",
            &transports,
        )?;
        s.latency(
            "mimi_dp_answer_seconds",
            "Time from a query's arrival at the server to its answer handed to the transport (transfers and UPDATEs left out).",
            &st.answer_latency,
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
                ("refused", st.updates_refused()),
            ],
        )?;
        let refused: Vec<(&str, u64)> = UPDATE_REFUSALS
            .iter()
            .zip(&st.updates_refused_by)
            .map(|((_, label), c)| (*label, n(c)))
            .collect();
        s.counters(
            "mimi_dp_updates_refused",
            "DNS UPDATEs refused, by the RCODE they were answered with.",
            "rcode",
            &refused,
        )?;
        s.latency(
            "mimi_dp_journal_sync_seconds",
            "Time for one group commit's journal write to be durable (write and fsync).",
            &st.journal_sync,
        )?;
        let journals: Vec<(String, i64)> = st
            .journal_bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(zone, b)| (zone.to_string(), i64::try_from(*b).unwrap_or(i64::MAX)))
            .collect();
        s.gauges(
            "mimi_dp_journal_bytes",
            "Size of each zone's journal.",
            "zone",
            &journals,
        )?;
        if let Some(pir) = &self.pir {
            let ps = &pir.stats;
            s.counter(
                "mimi_dp_oprf_inputs",
                "Identifiers evaluated under the OPRF for private lookups.",
                n(&ps.oprf_inputs),
            )?;
            s.counter(
                "mimi_dp_pir_keys_accepted",
                "PIR evaluation keys uploaded whole and accepted.",
                n(&ps.keys_accepted),
            )?;
            s.counters(
                "mimi_dp_pir_queries",
                "PIR queries answered, or refused because the workers' queue was full.",
                "result",
                &[("answered", n(&ps.queries)), ("busy", n(&ps.busy))],
            )?;
            s.latency(
                "mimi_dp_pir_query_seconds",
                "A PIR worker's time on one query.",
                &ps.query_work,
            )?;
            s.gauge(
                "mimi_dp_pir_queue",
                "PIR queries queued or being answered now ([pir] max_queue bounds it).",
                i64::try_from(pir.queued()).unwrap_or(i64::MAX),
            )?;
            s.gauge(
                "mimi_dp_pir_key_bytes",
                "Memory held by clients' PIR evaluation keys.",
                i64::try_from(pir.key_bytes()).unwrap_or(i64::MAX),
            )?;
        }
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
