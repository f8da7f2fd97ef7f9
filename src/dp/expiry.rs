//! The writer's expiry index: when each owner's next record retires (SSI and APKEY
//! `not_after`; tombstones at the latest `not_after` of the mapping they replaced).
//!
//! A DP holds an entry for nearly every owner, and most share a handful of seconds, so
//! each second keeps its owners as wire names back to back in fixed-size chunks rather
//! than one allocation per name: about 40 bytes per owner at a million instead of about
//! 75, and no buffer that grows by copying. An owner may be listed twice for one second;
//! taking the due owners dedups them.

use std::collections::{BTreeMap, BTreeSet};

use crate::name::Name;

/// Bytes per chunk: a few hundred names.
const CHUNK: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct Expiry {
    by_second: BTreeMap<u64, Vec<Vec<u8>>>,
}

impl Expiry {
    /// Lists `owner` to be looked at in second `at`.
    pub fn add(&mut self, at: u64, owner: &Name) {
        let wire = owner.as_wire();
        let chunks = self.by_second.entry(at).or_default();
        match chunks.last_mut() {
            Some(c) if c.len() + wire.len() <= c.capacity() => c.extend_from_slice(wire),
            _ => {
                let mut c = Vec::with_capacity(CHUNK.max(wire.len()));
                c.extend_from_slice(wire);
                chunks.push(c);
            }
        }
    }

    /// The next second anything is listed for.
    pub fn next(&self) -> Option<u64> {
        self.by_second.keys().next().copied()
    }

    /// Takes every owner listed for `now` or earlier.
    pub fn take_due(&mut self, now: u64) -> BTreeSet<Name> {
        let mut owners = BTreeSet::new();
        while let Some(entry) = self.by_second.first_entry() {
            if *entry.key() > now {
                break;
            }
            for chunk in entry.remove() {
                let mut rest = &chunk[..];
                while let Some(len) = wire_len(rest) {
                    owners.insert(Name::from_wire_trusted(&rest[..len]));
                    rest = &rest[len..];
                }
            }
        }
        owners
    }
}

/// The length of the wire name at the start of `b` (only names from `Name::as_wire` are
/// stored, so each ends with the root label).
fn wire_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let len = usize::from(*b.get(i)?);
        i += 1 + len;
        if len == 0 {
            return (i <= b.len()).then_some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        s.parse().unwrap()
    }

    #[test]
    fn due_owners_come_out_once_each_and_later_ones_stay() {
        let mut e = Expiry::default();
        assert_eq!(e.next(), None);
        e.add(20, &n("b.example."));
        e.add(10, &n("a.example."));
        e.add(10, &n("b.example."));
        e.add(10, &n("a.example."));
        e.add(30, &n("."));
        for i in 0..1_000 {
            e.add(40, &n(&format!("{i}.many.example.")));
        }
        assert_eq!(e.next(), Some(10));
        assert!(e.take_due(9).is_empty());
        let due: Vec<Name> = e.take_due(20).into_iter().collect();
        assert_eq!(due, [n("a.example."), n("b.example.")]);
        assert_eq!(e.next(), Some(30));
        assert_eq!(e.take_due(30).into_iter().collect::<Vec<_>>(), [n(".")]);
        assert_eq!(e.take_due(u64::MAX).len(), 1_000);
        assert_eq!(e.next(), None);
    }
}
