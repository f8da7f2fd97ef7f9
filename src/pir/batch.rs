//! A probabilistic batch code (Angel, Chen, Laine, Setty, "PIR with compressed queries and
//! amortized query processing", S&P 2018, section 4), the layout Respire's batched variant
//! uses: the `n` elements of a database are copied into `B` smaller bucket databases, each
//! element into [`CHOICES`] distinct buckets picked by a public hash. A client that wants up
//! to `batch` elements places each in one of its buckets (cuckoo hashing, at most one element
//! per bucket) and sends exactly one query to every bucket, a dummy where it placed nothing.
//! The server answers `B` queries over databases of about `3n/B` elements each: about three
//! passes over the data for the whole batch instead of one per element.
//!
//! Both sides derive everything from `(n, batch)`: the bucket count, which elements
//! each bucket holds (in increasing order, so an element's position in a bucket is its rank
//! there), and the bucket capacity (the fullest bucket; the others are padded).
//!
//! `B` is at least `1.5 * batch` (placement then fails with negligible probability for large
//! batches; a client that cannot place a batch splits it). It is raised when that would make
//! the average bucket fill more than 90 % of a power of two, since the schemes pad a bucket to
//! a power of two and a bucket just over one would double the memory.

use super::PirError;

/// Buckets every element is copied into.
pub const CHOICES: usize = 3;

/// Evictions a client tries before it gives up placing a batch.
const MAX_EVICTIONS: usize = 1000;

/// The public layout of a batched database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLayout {
    elements: usize,
    batch: usize,
    buckets: usize,
}

/// Where a client's batch goes: for every bucket, the requested element placed there (its
/// place in the caller's list and its position in the bucket), or `None` for a dummy query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    pub placed: Vec<Option<Placed>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Index into the list of requested elements.
    pub input: usize,
    /// Position of the element in its bucket's database.
    pub position: usize,
}

/// splitmix64's finaliser: a public spread of indexes over buckets. It needs no key: the
/// elements are cuckoo-table buckets, already filled at places the DP does not choose.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl BatchLayout {
    /// The layout of `elements` elements for batches of up to `batch` of them.
    pub fn new(elements: usize, batch: usize) -> Result<BatchLayout, PirError> {
        if elements == 0 || batch == 0 || batch > 1 << 16 || elements > 1 << 28 {
            return Err(PirError::Param(format!(
                "a batch of {batch} over {elements} elements"
            )));
        }
        let least = (batch * 3).div_ceil(2).max(CHOICES);
        let copies = elements * CHOICES;
        let mean = copies.div_ceil(least);
        let padded = mean.next_power_of_two();
        let buckets = if mean * 10 > padded * 9 {
            (copies * 10).div_ceil(padded * 9)
        } else {
            least
        };
        Ok(BatchLayout {
            elements,
            batch,
            buckets,
        })
    }

    pub fn elements(&self) -> usize {
        self.elements
    }

    /// Most elements one batch fetches.
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// The [`CHOICES`] distinct buckets element `index` is copied into.
    pub fn candidates(&self, index: usize) -> [usize; CHOICES] {
        let mut out = [usize::MAX; CHOICES];
        let mut found = 0;
        let mut j = 0u64;
        let base = mix(0x6261_7463_685f_7062); // "batch_pb"
        while found < CHOICES {
            let h = mix(base ^ mix(((index as u64) << 8) | j));
            let b = ((u128::from(h) * self.buckets as u128) >> 64) as usize;
            if !out[..found].contains(&b) {
                out[found] = b;
                found += 1;
            }
            j += 1;
        }
        out
    }

    /// Every bucket's elements, in increasing order (the server's copy of the layout).
    pub fn members(&self) -> Vec<Vec<u32>> {
        let mut members = vec![Vec::new(); self.buckets];
        for index in 0..self.elements {
            for b in self.candidates(index) {
                members[b].push(index as u32);
            }
        }
        members
    }

    /// Elements in the fullest bucket: every bucket's database holds this many.
    pub fn capacity(&self) -> usize {
        let mut counts = vec![0usize; self.buckets];
        for index in 0..self.elements {
            for b in self.candidates(index) {
                counts[b] += 1;
            }
        }
        counts.into_iter().max().unwrap_or(0)
    }

    /// Places `indexes` (distinct, each below the element count, at most `batch` of them)
    /// one to a bucket. Fails with [`PirError::BatchPlacement`] when cuckoo placement does
    /// not find room; the caller then splits the batch.
    pub fn plan(&self, indexes: &[usize]) -> Result<BatchPlan, PirError> {
        if indexes.len() > self.batch {
            return Err(PirError::Param(format!(
                "a batch of {} elements; the database takes {} at most",
                indexes.len(),
                self.batch
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(indexes.len());
        for &index in indexes {
            if index >= self.elements {
                return Err(PirError::IndexOutOfRange {
                    index,
                    count: self.elements,
                });
            }
            if !seen.insert(index) {
                return Err(PirError::Param(format!(
                    "element {index} asked twice in one batch"
                )));
            }
        }
        // Cuckoo placement: `owner[b]` is the input placed in bucket b.
        let mut owner: Vec<Option<usize>> = vec![None; self.buckets];
        let candidates: Vec<[usize; CHOICES]> =
            indexes.iter().map(|&i| self.candidates(i)).collect();
        // Random-walk insertion: the evicted element never goes straight back to the bucket
        // it was pushed out of. The walk's randomness only picks among public choices, so a
        // fixed-seed generator serves (and keeps plans reproducible).
        let mut walk = 0x9e37_79b9_7f4a_7c15u64 ^ indexes.len() as u64;
        for input in 0..indexes.len() {
            let mut moving = input;
            let mut from = usize::MAX;
            let mut kick = 0usize;
            loop {
                if let Some(&b) = candidates[moving].iter().find(|&&b| owner[b].is_none()) {
                    owner[b] = Some(moving);
                    break;
                }
                if kick == MAX_EVICTIONS {
                    return Err(PirError::BatchPlacement {
                        elements: indexes.len(),
                        buckets: self.buckets,
                    });
                }
                walk = mix(walk);
                let choices = &candidates[moving];
                let allowed = choices.iter().filter(|&&b| b != from).count() as u64;
                let pick = (walk % allowed) as usize;
                let b = choices
                    .iter()
                    .copied()
                    .filter(|&b| b != from)
                    .nth(pick)
                    .unwrap_or(choices[0]);
                let evicted = owner[b].replace(moving);
                moving = evicted.unwrap_or(moving);
                from = b;
                kick += 1;
            }
        }
        // Positions: the rank of each placed element among its bucket's members.
        let mut wanted: Vec<Option<usize>> = vec![None; self.buckets];
        for (b, o) in owner.iter().enumerate() {
            wanted[b] = o.map(|input| indexes[input]);
        }
        let mut counts = vec![0usize; self.buckets];
        let mut placed: Vec<Option<Placed>> = vec![None; self.buckets];
        for index in 0..self.elements {
            for b in self.candidates(index) {
                if wanted[b] == Some(index) {
                    placed[b] = owner[b].map(|input| Placed {
                        input,
                        position: counts[b],
                    });
                }
                counts[b] += 1;
            }
        }
        Ok(BatchPlan { placed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::index::sample;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn candidates_are_distinct_and_members_agree_with_plans() {
        let layout = BatchLayout::new(5000, 64).expect("layout");
        assert!(layout.buckets() >= 96);
        let members = layout.members();
        assert_eq!(members.iter().map(Vec::len).sum::<usize>(), 5000 * CHOICES);
        assert_eq!(members.iter().map(Vec::len).max(), Some(layout.capacity()));
        for i in 0..5000 {
            let c = layout.candidates(i);
            assert!(c[0] != c[1] && c[1] != c[2] && c[0] != c[2]);
        }
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for _ in 0..200 {
            let indexes = sample(&mut rng, 5000, 64).into_vec();
            let plan = layout.plan(&indexes).expect("plan");
            let mut got: Vec<usize> = plan
                .placed
                .iter()
                .enumerate()
                .filter_map(|(b, p)| {
                    p.map(|p| {
                        assert_eq!(members[b][p.position] as usize, indexes[p.input]);
                        p.input
                    })
                })
                .collect();
            got.sort_unstable();
            assert_eq!(got, (0..64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn buckets_avoid_a_mean_just_under_a_power_of_two() {
        // 3 * 2^20 / 192 = 2^14 per bucket on average: the fullest would pass 2^14.
        let layout = BatchLayout::new(1 << 20, 128).expect("layout");
        assert!(layout.buckets() > 192, "{}", layout.buckets());
        let small = BatchLayout::new(800, 128).expect("layout");
        assert_eq!(small.buckets(), 192);
    }

    #[test]
    fn bad_batches_are_refused() {
        let layout = BatchLayout::new(100, 8).expect("layout");
        assert!(matches!(
            layout.plan(&[1, 2, 100]),
            Err(PirError::IndexOutOfRange { index: 100, .. })
        ));
        assert!(layout.plan(&[1, 1]).is_err());
        assert!(layout.plan(&(0..9).collect::<Vec<_>>()).is_err());
        assert!(BatchLayout::new(0, 8).is_err());
        assert!(BatchLayout::new(8, 0).is_err());
    }
}
