//! The CHANGES record (type 65284, DESIGN section 8.3): which names of a zone changed
//! between two serials, as short digest prefixes rather than names, so a subscribed
//! resolver can drop exactly the cached entries that may be stale without the feed
//! becoming a list of fresh identifiers. The wire format is in docs/invalidation.md.
//!
//! A name's digest is SHA-256 over its uncompressed, lowercase wire form; its prefix is
//! the first `bits` bits of that digest, read as a big-endian integer.

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::name::Name;

/// RR type of CHANGES (private use, RFC 6895).
pub const TYPE_CHANGES: u16 = 65284;
/// EDNS option carrying the last serial the asker saw (4 octets, network order).
pub const SERIAL_OPTION: u16 = 65002;
/// The label CHANGES is asked at: `_changes.<zone>`.
pub const LABEL: &str = "_changes";
/// Default digest width: in a block of 10^7 numbers one prefix stands for ~2,400 names.
pub const DEFAULT_BITS: u8 = 12;
/// Narrowest and widest digest widths accepted.
pub const MIN_BITS: u8 = 1;
pub const MAX_BITS: u8 = 32;
/// Most prefix octets one answer carries; more changes make a reset answer instead
/// (it must fit one DNS message over TCP with room for the header and TSIG).
pub const MAX_PREFIX_OCTETS: usize = 60_000;

/// Flag: the journal does not reach back to the asked serial (or none was given): the
/// asker must drop everything it holds of the zone.
pub const FLAG_RESET: u8 = 0x01;

/// Fixed part of the RDATA: from (4), to (4), bits (1), flags (1), count (4).
const HEADER: usize = 14;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChangesError {
    #[error("CHANGES record too short ({0} octets)")]
    Short(usize),
    #[error("CHANGES digest width {0} is outside {MIN_BITS}..={MAX_BITS}")]
    Bits(u8),
    #[error("CHANGES record holds {have} prefix octets where its count needs {want}")]
    Length { have: usize, want: usize },
    #[error("CHANGES prefixes are not sorted and distinct")]
    Order,
    #[error("CHANGES prefix {0:#x} is wider than the digest width")]
    Wide(u32),
}

/// The `_changes.<zone>` owner name.
pub fn owner(zone: &Name) -> Result<Name, crate::name::NameError> {
    Name::from_labels([LABEL.as_bytes()], zone)
}

/// The first 32 bits of SHA-256 over the name's canonical wire form.
pub fn digest32(name: &Name) -> u32 {
    // Names are kept lowercase, so this is the canonical form.
    let d = Sha256::digest(name.as_wire());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The `bits`-bit prefix of a 32-bit digest.
pub fn prefix_of(digest: u32, bits: u8) -> u32 {
    let bits = bits.clamp(MIN_BITS, MAX_BITS);
    if bits == 32 {
        digest
    } else {
        digest >> (32 - u32::from(bits))
    }
}

/// Octets one prefix takes on the wire.
pub fn prefix_octets(bits: u8) -> usize {
    usize::from(bits.div_ceil(8))
}

/// One CHANGES answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The serial the list starts from (the asked one; on a reset, the current one).
    pub from: u32,
    /// The zone's serial the list brings the asker to.
    pub to: u32,
    pub bits: u8,
    /// Drop everything of the zone: the list does not reach back to the asked serial.
    pub reset: bool,
    /// Sorted, distinct prefixes of every name whose answer changed in (from, to].
    pub prefixes: Vec<u32>,
}

impl Changes {
    /// A reset answer: no prefixes, drop the zone.
    pub fn reset(to: u32, bits: u8) -> Changes {
        Changes {
            from: to,
            to,
            bits,
            reset: true,
            prefixes: Vec::new(),
        }
    }

    /// Prefixes of `names` (sorted, deduplicated); a reset when they would not fit.
    pub fn of_names<'a>(
        from: u32,
        to: u32,
        bits: u8,
        names: impl IntoIterator<Item = &'a Name>,
    ) -> Changes {
        let mut prefixes: Vec<u32> = names
            .into_iter()
            .map(|n| prefix_of(digest32(n), bits))
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        if prefixes.len() * prefix_octets(bits) > MAX_PREFIX_OCTETS {
            return Changes::reset(to, bits);
        }
        Changes {
            from,
            to,
            bits,
            reset: false,
            prefixes,
        }
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let w = prefix_octets(self.bits);
        let mut out = Vec::with_capacity(HEADER + self.prefixes.len() * w);
        out.extend_from_slice(&self.from.to_be_bytes());
        out.extend_from_slice(&self.to.to_be_bytes());
        out.push(self.bits);
        out.push(if self.reset { FLAG_RESET } else { 0 });
        out.extend_from_slice(&(self.prefixes.len() as u32).to_be_bytes());
        for p in &self.prefixes {
            out.extend_from_slice(&p.to_be_bytes()[4 - w..]);
        }
        out
    }

    pub fn from_wire(b: &[u8]) -> Result<Changes, ChangesError> {
        if b.len() < HEADER {
            return Err(ChangesError::Short(b.len()));
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let (from, to, bits, flags, count) = (u32_at(0), u32_at(4), b[8], b[9], u32_at(10));
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(ChangesError::Bits(bits));
        }
        let w = prefix_octets(bits);
        let body = &b[HEADER..];
        let want = (count as usize).saturating_mul(w);
        if body.len() != want {
            return Err(ChangesError::Length {
                have: body.len(),
                want,
            });
        }
        let mut prefixes = Vec::with_capacity(count as usize);
        for chunk in body.chunks_exact(w) {
            let p = chunk.iter().fold(0u32, |acc, o| (acc << 8) | u32::from(*o));
            if bits < 32 && p >> bits != 0 {
                return Err(ChangesError::Wide(p));
            }
            if prefixes.last().is_some_and(|last| *last >= p) {
                return Err(ChangesError::Order);
            }
            prefixes.push(p);
        }
        Ok(Changes {
            from,
            to,
            bits,
            reset: flags & FLAG_RESET != 0,
            prefixes,
        })
    }

    /// A membership test for the prefixes.
    pub fn set(&self) -> PrefixSet {
        PrefixSet {
            bits: self.bits,
            sorted: self.prefixes.clone(),
        }
    }
}

/// The prefixes of one CHANGES answer, to test cached names against.
#[derive(Debug, Clone)]
pub struct PrefixSet {
    bits: u8,
    sorted: Vec<u32>,
}

impl PrefixSet {
    /// Whether a name with this 32-bit digest is listed.
    pub fn contains_digest(&self, digest: u32) -> bool {
        self.sorted
            .binary_search(&prefix_of(digest, self.bits))
            .is_ok()
    }

    pub fn contains(&self, name: &Name) -> bool {
        self.contains_digest(digest32(name))
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        s.parse().unwrap()
    }

    #[test]
    fn round_trip_at_every_width() {
        let names: Vec<Name> = (0..500)
            .map(|i| n(&format!("{i}.5.5.5.1.e164.mimi.arpa.")))
            .collect();
        for bits in [1u8, 7, 8, 12, 16, 20, 32] {
            let c = Changes::of_names(7, 9, bits, &names);
            assert!(!c.reset);
            assert!(c.prefixes.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(Changes::from_wire(&c.to_wire()).unwrap(), c);
            let set = c.set();
            assert!(names.iter().all(|x| set.contains(x)), "bits {bits}");
        }
    }

    #[test]
    fn hostile_bytes_are_errors() {
        assert!(matches!(
            Changes::from_wire(&[0; 5]),
            Err(ChangesError::Short(5))
        ));
        let mut c = Changes::of_names(1, 2, 12, &[n("a.example."), n("b.example.")]).to_wire();
        c[8] = 0;
        assert_eq!(Changes::from_wire(&c), Err(ChangesError::Bits(0)));
        let mut c = Changes::of_names(1, 2, 12, &[n("a.example.")]).to_wire();
        c[13] = 9; // count 9, one prefix present
        assert!(matches!(
            Changes::from_wire(&c),
            Err(ChangesError::Length { .. })
        ));
        let mut c = Changes {
            from: 1,
            to: 2,
            bits: 12,
            reset: false,
            prefixes: vec![5, 3],
        }
        .to_wire();
        assert_eq!(Changes::from_wire(&c), Err(ChangesError::Order));
        c[14] = 0xff; // 0xff03 is wider than 12 bits
        assert!(matches!(Changes::from_wire(&c), Err(ChangesError::Wide(_))));
    }

    #[test]
    fn too_many_changes_make_a_reset() {
        let names: Vec<Name> = (0..40_000).map(|i| n(&format!("{i}.example."))).collect();
        let c = Changes::of_names(1, 2, 32, &names);
        assert!(c.reset && c.prefixes.is_empty() && c.from == 2);
    }

    #[test]
    fn digest_ignores_case() {
        assert_eq!(
            digest32(&n("Alice.Example.")),
            digest32(&n("alice.example."))
        );
    }
}
