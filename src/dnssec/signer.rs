//! A served zone's signer: the key that signs, the keys only published beside it (a
//! rollover), and how long signatures live.
//!
//! The zone store holds one ([`crate::zone::ZoneStore::sign_with`]) and signs every RRset it
//! makes or changes with it, so a signed zone never has an unsigned authoritative RRset;
//! the DP signs its negative answers with it online (compact denial, [`super::denial`]).
//!
//! A rollover (docs/dnssec.md, "Rollover") publishes the next key before it signs and keeps
//! the previous one published after it stops, so every validator always holds a DNSKEY set
//! and a DS set under which what it is served verifies; one key signs at any time, so each
//! set carries one RRSIG.

use super::key::DnssecKey;
use super::sign::{sign_rrset, RrsigFields, SignatureWindow};
use crate::name::Name;

/// Signature lifetime unless configured: two weeks, refreshed when a week is left (Knot's
/// defaults are of this order; a validator then has days of margin over a DP outage).
pub const DEFAULT_LIFETIME: u32 = 14 * 86400;
pub const DEFAULT_REFRESH: u32 = 7 * 86400;

#[derive(Debug)]
pub struct ZoneSigner {
    key: DnssecKey,
    /// In the DNSKEY set without signing: the next key, or the previous one.
    published: Vec<DnssecKey>,
    /// Seconds a new signature is valid for.
    lifetime: u32,
    /// A signature with less than this left is made again.
    refresh: u32,
}

impl ZoneSigner {
    /// A signer for `key`'s zone; `refresh` is kept below `lifetime`.
    pub fn new(key: DnssecKey, lifetime: u32, refresh: u32) -> ZoneSigner {
        ZoneSigner::with_published(key, Vec::new(), lifetime, refresh)
    }

    /// A signer for `key`'s zone whose DNSKEY set also holds `published` (keys of the same
    /// zone that do not sign).
    pub fn with_published(
        key: DnssecKey,
        published: Vec<DnssecKey>,
        lifetime: u32,
        refresh: u32,
    ) -> ZoneSigner {
        ZoneSigner {
            key,
            published,
            lifetime,
            refresh: refresh.min(lifetime / 2),
        }
    }

    pub fn zone(&self) -> &Name {
        &self.key.zone
    }

    pub fn key(&self) -> &DnssecKey {
        &self.key
    }

    pub fn lifetime(&self) -> u32 {
        self.lifetime
    }

    /// The DNSKEY RDATAs of the zone's DNSKEY set: the signing key's, then the published.
    pub fn dnskey_rdatas(&self) -> Vec<Vec<u8>> {
        std::iter::once(&self.key)
            .chain(&self.published)
            .map(DnssecKey::dnskey_rdata)
            .collect()
    }

    /// True when `other` signs with the same key and publishes the same DNSKEY set.
    pub fn same_keys(&self, other: &ZoneSigner) -> bool {
        let mut mine = self.dnskey_rdatas();
        let mut theirs = other.dnskey_rdatas();
        mine.sort();
        theirs.sort();
        self.key.dnskey_rdata() == other.key.dnskey_rdata() && mine == theirs
    }

    /// The RRSIG RDATA over an RRset, valid from an hour before `now` for the lifetime.
    pub fn sign(
        &self,
        owner: &Name,
        rtype: u16,
        ttl: u32,
        rdatas: &[&[u8]],
        now: u64,
    ) -> Box<[u8]> {
        sign_rrset(
            &self.key,
            owner,
            rtype,
            ttl,
            rdatas,
            SignatureWindow::starting(now, self.lifetime),
        )
        .into_boxed_slice()
    }

    /// True when `rrsig` expires within the refresh margin of `now`, was made with another
    /// key, or cannot be read: it is to be made again.
    pub fn is_stale(&self, rrsig: &[u8], now: u64) -> bool {
        match RrsigFields::parse(rrsig) {
            Ok(f) => {
                f.key_tag != self.key.key_tag()
                    || u64::from(f.window.expiration) < now.saturating_add(u64::from(self.refresh))
            }
            Err(_) => true,
        }
    }
}
