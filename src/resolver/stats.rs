//! The resolver's counters: plain atomics bumped by lookups, read by the SIGUSR1 summary,
//! `mimi ctl stats` and `/metrics` (resolver/metrics.rs).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{LookupResult, Outcome, ResolveError};
use crate::record::RecordError;

/// How lookups ended (`mimi_resolver_lookup_outcomes_total{outcome}`).
pub const OUTCOMES: [&str; 4] = ["found", "absent", "bogus", "failed"];

/// Why a record was dropped, as counted (`mimi_resolver_rejected_records_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Not SSI record data, or SSI data that does not parse.
    Malformed,
    /// Signed for another owner name than the one it was found at.
    WrongOwner,
    /// From a provider no trusted key (trust file or APKEY) vouches for.
    Untrusted,
    /// The signature does not verify under the provider's key.
    BadSignature,
    /// Outside its validity window: expired, or not valid yet.
    Expired,
    NotYetValid,
    /// The SSI's host is not its provider's, or the provider name is bad.
    BadProvider,
    Other,
}

impl RejectReason {
    pub const ALL: [RejectReason; 8] = [
        RejectReason::Malformed,
        RejectReason::WrongOwner,
        RejectReason::Untrusted,
        RejectReason::BadSignature,
        RejectReason::Expired,
        RejectReason::NotYetValid,
        RejectReason::BadProvider,
        RejectReason::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::WrongOwner => "wrong_owner",
            RejectReason::Untrusted => "untrusted_provider",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::Expired => "expired",
            RejectReason::NotYetValid => "not_yet_valid",
            RejectReason::BadProvider => "bad_provider",
            RejectReason::Other => "other",
        }
    }

    /// The reason a verification error stands for.
    pub fn of(e: &RecordError) -> RejectReason {
        match e {
            RecordError::UntrustedProvider { .. } | RecordError::UnknownKeyId { .. } => {
                RejectReason::Untrusted
            }
            RecordError::BadSignature { .. } | RecordError::KeyIdMismatch { .. } => {
                RejectReason::BadSignature
            }
            RecordError::Expired { .. } => RejectReason::Expired,
            RecordError::NotYetValid { .. } | RecordError::BadWindow { .. } => {
                RejectReason::NotYetValid
            }
            RecordError::HostNotProvider { .. } | RecordError::BadProvider { .. } => {
                RejectReason::BadProvider
            }
            _ => RejectReason::Other,
        }
    }
}

/// Counters for the resolver as a whole.
#[derive(Debug, Default)]
pub struct ResolverStats {
    /// Lookups asked (public and private), and how they ended ([`OUTCOMES`]).
    pub lookups: AtomicU64,
    pub outcomes: [AtomicU64; OUTCOMES.len()],
    pub cache_hits: AtomicU64,
    /// Lookups the cache could not answer (they walked the tree or asked by PIR).
    pub cache_misses: AtomicU64,
    pub queries_sent: AtomicU64,
    /// Records dropped, by [`RejectReason`] (indexed by its discriminant, the order of
    /// [`RejectReason::ALL`]).
    pub rejected_by: [AtomicU64; RejectReason::ALL.len()],
    /// Private lookups whose PIR answer decoded to a slot that failed authentication
    /// (a decryption failure of the scheme), answered as not found.
    pub pir_decode_failures: AtomicU64,
    /// Batch queries sent (each one query per PIR bucket) and the lookups they served.
    pub pir_batches: AtomicU64,
    pub pir_batched_lookups: AtomicU64,
}

impl ResolverStats {
    /// One lookup's end.
    pub(super) fn count_outcome(&self, r: &Result<LookupResult, ResolveError>) {
        let i = match r {
            Ok(r) if matches!(r.outcome, Outcome::Found(_)) => 0,
            Ok(_) => 1,
            Err(ResolveError::Bogus { .. }) => 2,
            Err(_) => 3,
        };
        self.outcomes[i].fetch_add(1, Relaxed);
    }

    /// A lookup answered from the cache without building a result (the server's fast
    /// path): found or absent.
    pub(super) fn count_cached(&self, found: bool) {
        self.lookups.fetch_add(1, Relaxed);
        self.cache_hits.fetch_add(1, Relaxed);
        self.outcomes[usize::from(!found)].fetch_add(1, Relaxed);
    }

    pub(super) fn count_rejected(&self, rejected: &[super::Rejection]) {
        for r in rejected {
            self.rejected_by[r.kind as usize].fetch_add(1, Relaxed);
        }
    }

    /// Records dropped, whatever the reason.
    pub fn rejected_records(&self) -> u64 {
        self.rejected_by.iter().map(|c| c.load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_at_their_own_index() {
        for (i, k) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{}", k.label());
        }
    }
}
