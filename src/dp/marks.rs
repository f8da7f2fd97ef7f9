//! The seq watermarks a zone's writer keeps: for each (owner, provider) mapping, the
//! highest `seq` accepted and the latest `not_after` of any of its versions, so that an
//! older version can never come back while it could still be valid (the journal keeps
//! them across restarts as [`Watermark`]s).
//!
//! A mapping the zone holds is its own watermark (the writer reads its seq and
//! `not_after` from the record), so marks are kept only for mappings that left the zone:
//! replaced, withdrawn, released, expired or edited out of the file. Loading a zone of a
//! million mappings makes none. They are kept compact all the same: providers (few) are
//! numbered, and an owner's marks sit in one table entry keyed by the owner alone.

use std::collections::HashMap;

use crate::name::Name;
use crate::record::Ssi;
use crate::zone::journal::Watermark;

/// One mapping's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub seq: u64,
    pub until: u64,
}

/// An owner's marks by provider number; nearly every owner has one provider.
#[derive(Debug, Clone)]
enum Marks {
    One(u32, Mark),
    Many(Vec<(u32, Mark)>),
}

impl Marks {
    fn get(&self, provider: u32) -> Option<Mark> {
        match self {
            Marks::One(p, m) => (*p == provider).then_some(*m),
            Marks::Many(v) => v.iter().find(|(p, _)| *p == provider).map(|(_, m)| *m),
        }
    }

    fn set(&mut self, provider: u32, mark: Mark) {
        match self {
            Marks::One(p, m) if *p == provider => *m = mark,
            Marks::One(p, m) => *self = Marks::Many(vec![(*p, *m), (provider, mark)]),
            Marks::Many(v) => match v.iter_mut().find(|(p, _)| *p == provider) {
                Some((_, m)) => *m = mark,
                None => v.push((provider, mark)),
            },
        }
    }

    /// Drops `provider`'s mark; true when none is left.
    fn remove(&mut self, provider: u32) -> bool {
        match self {
            Marks::One(p, _) => *p == provider,
            Marks::Many(v) => {
                v.retain(|(p, _)| *p != provider);
                v.is_empty()
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u32, Mark)> + '_ {
        let (one, many) = match self {
            Marks::One(p, m) => (Some((*p, *m)), &[][..]),
            Marks::Many(v) => (None, &v[..]),
        };
        one.into_iter().chain(many.iter().copied())
    }
}

/// A mark as it was before a batch changed it, to undo a batch that failed.
#[derive(Debug)]
pub struct Saved {
    owner: Name,
    provider: u32,
    mark: Option<Mark>,
}

#[derive(Debug, Default)]
pub struct Watermarks {
    providers: Vec<Name>,
    numbers: HashMap<Name, u32>,
    owners: HashMap<Name, Marks>,
}

impl Watermarks {
    pub fn from_journal(marks: Vec<Watermark>) -> Watermarks {
        let mut w = Watermarks::default();
        for m in marks {
            let p = w.number(&m.provider);
            w.set(
                &m.owner,
                p,
                Mark {
                    seq: m.seq,
                    until: m.until,
                },
            );
        }
        w
    }

    fn number(&mut self, provider: &Name) -> u32 {
        if let Some(&n) = self.numbers.get(provider) {
            return n;
        }
        let n = self.providers.len() as u32;
        self.providers.push(provider.clone());
        self.numbers.insert(provider.clone(), n);
        n
    }

    fn set(&mut self, owner: &Name, provider: u32, mark: Mark) {
        match self.owners.get_mut(owner) {
            Some(marks) => marks.set(provider, mark),
            None => {
                self.owners
                    .insert(owner.clone(), Marks::One(provider, mark));
            }
        }
    }

    pub fn get(&self, owner: &Name, provider: &Name) -> Option<Mark> {
        let p = *self.numbers.get(provider)?;
        self.owners.get(owner)?.get(p)
    }

    /// Records an SSI record's seq and validity window.
    pub fn note(&mut self, owner: &Name, ssi: &Ssi) {
        let p = self.number(&ssi.provider);
        let old = self.owners.get(owner).and_then(|m| m.get(p));
        let mark = Mark {
            seq: old.map_or(0, |m| m.seq).max(ssi.seq),
            until: old.map_or(0, |m| m.until).max(ssi.not_after),
        };
        self.set(owner, p, mark);
    }

    /// `note`, returning what to give `restore` to undo it.
    pub fn note_saving(&mut self, owner: &Name, ssi: &Ssi) -> Saved {
        let provider = self.number(&ssi.provider);
        let mark = self.owners.get(owner).and_then(|m| m.get(provider));
        self.note(owner, ssi);
        Saved {
            owner: owner.clone(),
            provider,
            mark,
        }
    }

    pub fn restore(&mut self, saved: Saved) {
        match saved.mark {
            Some(m) => self.set(&saved.owner, saved.provider, m),
            None => {
                if self
                    .owners
                    .get_mut(&saved.owner)
                    .is_some_and(|marks| marks.remove(saved.provider))
                {
                    self.owners.remove(&saved.owner);
                }
            }
        }
    }

    /// Forgets the marks of mappings no version of which can be valid at `now` or later.
    pub fn retain_valid(&mut self, now: u64) {
        self.owners.retain(|_, marks| {
            let kept: Vec<(u32, Mark)> = marks.iter().filter(|(_, m)| m.until >= now).collect();
            match kept[..] {
                [] => false,
                [(p, m)] => {
                    *marks = Marks::One(p, m);
                    true
                }
                _ => {
                    *marks = Marks::Many(kept);
                    true
                }
            }
        });
    }

    /// Every mark, for the journal.
    pub fn to_journal(&self) -> Vec<Watermark> {
        self.owners
            .iter()
            .flat_map(|(owner, marks)| {
                marks.iter().map(move |(p, m)| Watermark {
                    owner: owner.clone(),
                    provider: self.providers[p as usize].clone(),
                    seq: m.seq,
                    until: m.until,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(owner: &str, provider: &str, seq: u64, until: u64) -> Watermark {
        Watermark {
            owner: owner.parse().unwrap(),
            provider: provider.parse().unwrap(),
            seq,
            until,
        }
    }

    #[test]
    fn marks_by_owner_and_provider_round_trip_and_undo() {
        let mut w = Watermarks::from_journal(vec![
            wm("1.e164.", "chat.example.", 3, 100),
            wm("1.e164.", "talk.example.", 7, 50),
            wm("2.e164.", "chat.example.", 1, 10),
        ]);
        let n = |s: &str| s.parse::<Name>().unwrap();
        assert_eq!(
            w.get(&n("1.e164."), &n("talk.example.")),
            Some(Mark { seq: 7, until: 50 })
        );
        assert_eq!(w.get(&n("2.e164."), &n("talk.example.")), None);
        let saved = w.restore_point(&n("2.e164."), &n("talk.example."));
        w.set(&n("2.e164."), 1, Mark { seq: 9, until: 9 });
        w.restore(saved);
        assert_eq!(w.get(&n("2.e164."), &n("talk.example.")), None);
        w.retain_valid(60);
        let mut back = w.to_journal();
        back.sort_by(|a, b| a.owner.cmp(&b.owner));
        assert_eq!(back, vec![wm("1.e164.", "chat.example.", 3, 100)]);
    }

    impl Watermarks {
        fn restore_point(&mut self, owner: &Name, provider: &Name) -> Saved {
            let provider = self.number(provider);
            Saved {
                owner: owner.clone(),
                provider,
                mark: self.owners.get(owner).and_then(|m| m.get(provider)),
            }
        }
    }
}
