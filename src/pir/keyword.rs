//! Keyword derivation: from the OPRF output `y` to everything the lookup needs, with
//! HKDF-SHA256 (RFC 5869, crate `hkdf`).
//!
//! `PRK = HKDF-Extract(salt = "MIMI-PIR-v2 keyword\0" || epoch, IKM = y)`, then one
//! `HKDF-Expand` per purpose, each with its own versioned label (domain separation):
//!
//! | purpose | info | output |
//! |---|---|---|
//! | shard | `MIMI-PIR-v2 shard` | 16 bytes -> u128 mod shard count |
//! | buckets | `MIMI-PIR-v2 buckets` \|\| table seed \|\| index | 32 bytes -> two distinct buckets |
//! | tag | `MIMI-PIR-v2 tag` \|\| index | 16 bytes |
//! | AEAD | `MIMI-PIR-v2 aead` \|\| index | 32-byte key |
//!
//! `index` (u32, big endian) is the spill index: 0 for an identifier's first slot, 1, 2, ...
//! for further slots when its records do not fit one slot. The table seed (u64) only moves
//! the buckets, so a DP that must rebuild a cuckoo table with a new seed keeps tags and keys.
//! The shard does not depend on the index: all slots of an identifier live in one shard.
//! Reductions modulo n take 128 bits of output, a bias below 2^-96 for any n < 2^32.
//!
//! There is no derived nonce: a slot may be sealed again within an epoch (incremental
//! updates), so every sealing draws a fresh random 24-byte XChaCha20-Poly1305 nonce and keeps
//! it in the slot ([`super::db::seal`]). The key alone is a function of `y`.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::oprf::OUTPUT_LEN;
use super::PIR_VERSION;

/// Bytes of the slot tag.
pub const TAG_LEN: usize = 16;
/// Bytes of the AEAD key (XChaCha20-Poly1305).
pub const KEY_LEN: usize = 32;

fn label(purpose: &str) -> Vec<u8> {
    format!("MIMI-PIR-v{PIR_VERSION} {purpose}").into_bytes()
}

/// The per-slot secrets of one (identifier, spill index). The nonce is not among them: it is
/// drawn afresh at every sealing and stored in the slot.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SlotKeys {
    pub tag: [u8; TAG_LEN],
    pub key: [u8; KEY_LEN],
}

impl std::fmt::Debug for SlotKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotKeys(..)")
    }
}

/// The HKDF pseudorandom key of one identifier in one epoch; derives all its keywords.
#[derive(Clone)]
pub struct KeywordSource {
    hk: Hkdf<Sha256>,
}

impl std::fmt::Debug for KeywordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeywordSource(..)")
    }
}

impl KeywordSource {
    /// Extracts the PRK from the OPRF output `y`. The epoch is part of the salt, so keywords of
    /// different epochs are unrelated even if a key were reused.
    pub fn new(y: &[u8; OUTPUT_LEN], epoch: u64) -> KeywordSource {
        let mut salt = label("keyword");
        salt.push(0);
        salt.extend_from_slice(&epoch.to_be_bytes());
        KeywordSource {
            hk: Hkdf::<Sha256>::new(Some(&salt), y),
        }
    }

    fn expand<const N: usize>(&self, info: &[&[u8]]) -> [u8; N] {
        let mut out = [0u8; N];
        // N is at most 32 here, far below HKDF-SHA256's 8160-byte limit.
        if self.hk.expand_multi_info(info, &mut out).is_err() {
            unreachable!("HKDF output of {N} bytes is within the limit");
        }
        out
    }

    /// The shard holding this identifier, in `0..shard_count` (sent in clear to the DP).
    pub fn shard(&self, shard_count: u32) -> u32 {
        if shard_count <= 1 {
            return 0;
        }
        let l = label("shard");
        let v = u128::from_be_bytes(self.expand::<16>(&[&l]));
        (v % shard_count as u128) as u32
    }

    /// The two cuckoo buckets (distinct when `buckets >= 2`) of spill `index` in a table of
    /// `buckets` buckets built with `table_seed`.
    pub fn buckets(&self, index: u32, table_seed: u64, buckets: u32) -> [u32; 2] {
        let l = label("buckets");
        let out = self.expand::<32>(&[&l, &table_seed.to_be_bytes(), &index.to_be_bytes()]);
        if buckets <= 1 {
            return [0, 0];
        }
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        a.copy_from_slice(&out[..16]);
        b.copy_from_slice(&out[16..]);
        let h1 = (u128::from_be_bytes(a) % buckets as u128) as u32;
        let mut h2 = (u128::from_be_bytes(b) % (buckets as u128 - 1)) as u32;
        if h2 >= h1 {
            h2 += 1;
        }
        [h1, h2]
    }

    /// Tag and AEAD key of spill `index`.
    pub fn slot_keys(&self, index: u32) -> SlotKeys {
        let lt = label("tag");
        let la = label("aead");
        let tag = self.expand::<TAG_LEN>(&[&lt, &index.to_be_bytes()]);
        let key = self.expand::<KEY_LEN>(&[&la, &index.to_be_bytes()]);
        SlotKeys { tag, key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(b: u8) -> [u8; 64] {
        [b; 64]
    }

    #[test]
    fn derivation_is_deterministic() {
        let a = KeywordSource::new(&y(1), 5);
        let b = KeywordSource::new(&y(1), 5);
        assert_eq!(a.shard(1000), b.shard(1000));
        assert_eq!(a.buckets(0, 9, 1 << 20), b.buckets(0, 9, 1 << 20));
        assert_eq!(a.slot_keys(0), b.slot_keys(0));
        assert_eq!(a.slot_keys(3), b.slot_keys(3));
    }

    #[test]
    fn derivation_is_domain_separated() {
        let a = KeywordSource::new(&y(1), 5);
        let k0 = a.slot_keys(0);
        let k1 = a.slot_keys(1);
        // Different purposes give unrelated outputs for the same input.
        assert_ne!(k0.tag, k0.key[..TAG_LEN]);
        assert_ne!(k0.tag, k1.tag);
        assert_ne!(k0.key, k1.key);
        // Another epoch or another y changes everything.
        let e = KeywordSource::new(&y(1), 6);
        assert_ne!(e.slot_keys(0), k0);
        let o = KeywordSource::new(&y(2), 5);
        assert_ne!(o.slot_keys(0), k0);
        // The table seed moves the buckets but not the tag or the key.
        let big = 1u32 << 30;
        assert_ne!(a.buckets(0, 1, big), a.buckets(0, 2, big));
        assert_ne!(a.buckets(0, 1, big), a.buckets(1, 1, big));
        // The raw HKDF output for the tag is not reused as bucket material.
        let raw = a.expand::<16>(&[&label("buckets"), &1u64.to_be_bytes(), &0u32.to_be_bytes()]);
        assert_ne!(raw, k0.tag);
    }

    #[test]
    fn buckets_are_distinct_and_in_range() {
        for i in 0..200u8 {
            let s = KeywordSource::new(&y(i), 1);
            for n in [2u32, 3, 7, 1000] {
                let [a, b] = s.buckets(u32::from(i), 4, n);
                assert!(a < n && b < n);
                assert_ne!(a, b);
            }
            assert!(s.shard(16) < 16);
            assert_eq!(s.shard(1), 0);
        }
    }

    #[test]
    fn shards_spread_evenly() {
        let mut counts = [0u32; 8];
        for i in 0..4000u32 {
            let mut seed = [0u8; 64];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            counts[KeywordSource::new(&seed, 1).shard(8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (400..600).contains(&c)),
            "{counts:?}"
        );
    }
}
