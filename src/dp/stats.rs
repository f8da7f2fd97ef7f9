//! The DP's counters: plain atomics bumped on the answer and write paths, read by the
//! SIGUSR1 summary, `mimi ctl stats` and `/metrics` (dp/metrics.rs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hickory_proto::op::ResponseCode;
use hickory_server::net::xfer::Protocol;

use crate::metrics::Latency;
use crate::name::Name;

/// The query types counted apart (`mimi_dp_query_types_total{type}`); any other is
/// "other".
pub const QUERY_TYPES: [(u16, &str); 13] = [
    (crate::record::TYPE_SSI, "SSI"),
    (crate::record::TYPE_APKEY, "APKEY"),
    (crate::record::TYPE_PIRCFG, "PIRCFG"),
    (crate::record::TYPE_PIR, "PIR"),
    (crate::record::TYPE_SLOTS, "SLOTS"),
    (crate::changes::TYPE_CHANGES, "CHANGES"),
    (6, "SOA"),
    (2, "NS"),
    (crate::dnssec::TYPE_DS, "DS"),
    (crate::dnssec::TYPE_DNSKEY, "DNSKEY"),
    (252, "AXFR"),
    (251, "IXFR"),
    (0, "other"),
];

/// The transports counted apart (`mimi_dp_query_transports_total{transport}`).
pub const TRANSPORTS: [&str; 3] = ["udp", "tcp", "tls"];

/// The RCODEs an UPDATE is refused with (`mimi_dp_updates_total{result}`), after
/// "accepted".
pub const UPDATE_REFUSALS: [(ResponseCode, &str); 9] = [
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::YXRRSet, "YXRRSET"),
    (ResponseCode::NXRRSet, "NXRRSET"),
    (ResponseCode::NotAuth, "NOTAUTH"),
    (ResponseCode::NotZone, "NOTZONE"),
    (ResponseCode::Unknown(0), "other"),
];

/// Counters for the summary on SIGUSR1 and at shutdown.
#[derive(Debug, Default)]
pub struct Stats {
    pub queries: AtomicU64,
    pub noerror: AtomicU64,
    pub nxdomain: AtomicU64,
    pub refused: AtomicU64,
    pub formerr: AtomicU64,
    pub notimp: AtomicU64,
    pub servfail: AtomicU64,
    pub other_rcode: AtomicU64,
    pub referrals: AtomicU64,
    pub nodata: AtomicU64,
    pub truncated: AtomicU64,
    pub transfers: AtomicU64,
    pub ixfr_incremental: AtomicU64,
    /// Encrypted-replica runs sent: whole tables and deltas.
    pub replica_full: AtomicU64,
    pub replica_delta: AtomicU64,
    pub updates_accepted: AtomicU64,
    pub changes_answered: AtomicU64,
    pub notify_sent: AtomicU64,
    /// DNS-over-TLS connections whose handshake failed or did not finish in time.
    pub tls_handshake_failures: AtomicU64,
    /// Requests refused because their access class was over its quota.
    pub rate_limited: AtomicU64,
    /// Queries by type ([`QUERY_TYPES`]) and by transport ([`TRANSPORTS`]).
    pub query_types: [AtomicU64; QUERY_TYPES.len()],
    pub transports: [AtomicU64; TRANSPORTS.len()],
    /// From a query's arrival at the handler to its answer handed to the transport.
    pub answer_latency: Latency,
    /// UPDATEs refused, by RCODE ([`UPDATE_REFUSALS`]).
    pub updates_refused_by: [AtomicU64; UPDATE_REFUSALS.len()],
    /// How long each journal append took to be durable (write and sync).
    pub journal_sync: Latency,
    /// Each zone's journal size in bytes, as its writer last left it.
    pub journal_bytes: Mutex<BTreeMap<Name, u64>>,
}

impl Stats {
    /// One query of type `qtype` over `protocol` (counted once, by the path that answers).
    pub(super) fn count_query(&self, qtype: u16, protocol: Protocol) {
        self.query_types[row(&QUERY_TYPES, qtype)].fetch_add(1, Relaxed);
        let p = match protocol {
            Protocol::Udp => 0,
            Protocol::Tls => 2,
            _ => 1,
        };
        self.transports[p].fetch_add(1, Relaxed);
    }

    pub(super) fn note_journal(&self, zone: &Name, bytes: u64) {
        let mut sizes = self.journal_bytes.lock().unwrap_or_else(|p| p.into_inner());
        match sizes.get_mut(zone) {
            Some(b) => *b = bytes,
            None => {
                sizes.insert(zone.clone(), bytes);
            }
        }
    }

    /// One UPDATE refused with `rcode`.
    pub(super) fn count_update_refused(&self, rcode: ResponseCode) {
        self.updates_refused_by[row(&UPDATE_REFUSALS, rcode)].fetch_add(1, Relaxed);
    }

    /// UPDATEs refused, whatever the RCODE.
    pub fn updates_refused(&self) -> u64 {
        self.updates_refused_by
            .iter()
            .map(|c| c.load(Relaxed))
            .sum()
    }

    pub(super) fn count_rcode(&self, rcode: ResponseCode) {
        let c = match rcode {
            ResponseCode::NoError => &self.noerror,
            ResponseCode::NXDomain => &self.nxdomain,
            ResponseCode::Refused => &self.refused,
            ResponseCode::FormErr => &self.formerr,
            ResponseCode::NotImp => &self.notimp,
            ResponseCode::ServFail => &self.servfail,
            _ => &self.other_rcode,
        };
        c.fetch_add(1, Relaxed);
    }

    /// One line: `queries=.. noerror=.. ...`.
    pub fn summary(&self) -> String {
        let counters = [
            ("queries", &self.queries),
            ("noerror", &self.noerror),
            ("nxdomain", &self.nxdomain),
            ("nodata", &self.nodata),
            ("referrals", &self.referrals),
            ("refused", &self.refused),
            ("formerr", &self.formerr),
            ("notimp", &self.notimp),
            ("servfail", &self.servfail),
            ("other_rcode", &self.other_rcode),
            ("truncated", &self.truncated),
            ("transfers", &self.transfers),
            ("ixfr_incremental", &self.ixfr_incremental),
            ("replica_full", &self.replica_full),
            ("replica_delta", &self.replica_delta),
            ("updates_accepted", &self.updates_accepted),
            ("changes_answered", &self.changes_answered),
            ("notify_sent", &self.notify_sent),
            ("tls_handshake_failures", &self.tls_handshake_failures),
            ("rate_limited", &self.rate_limited),
        ];
        counters
            .iter()
            .map(|(k, v)| (*k, v.load(Relaxed)))
            .chain([("updates_refused", self.updates_refused())])
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The row of `key` in a table whose last row ("other") takes every key not listed.
fn row<K: PartialEq>(table: &[(K, &str)], key: K) -> usize {
    let last = table.len() - 1;
    table[..last]
        .iter()
        .position(|(k, _)| *k == key)
        .unwrap_or(last)
}
