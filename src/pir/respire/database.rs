//! The database as Respire's server holds it, and the first dimension of an answer.
//!
//! The database is a `2^ν1 × 2^ν2` matrix of plaintexts of the large ring (coefficients mod
//! the plaintext modulus `p`, lifted to `[0, p)` as the reference code's `include_into` does),
//! stored once in NTT form (as in Spiral; Respire's single-query set has `ν1 = ν2 = 9` for 2^20
//! records of 256 bytes, four records per plaintext). Plaintext `index` sits at row
//! `index / 2^ν2`, column `index mod 2^ν2`, as in the reference code's `query_one`.
//!
//! The first dimension (Spiral's "first dimension processing") multiplies the `2^ν1`
//! expanded RLWE ciphertexts of the one-hot row selector `Δ·[i = row]` into each column:
//! `c_col = Σ_i rlwe_i · db[i][col]`, whose phase is `Δ·db[row][col]` plus
//! `Σ_i e_i·db[i][col]`. The sums run in NTT form over unreduced 64-bit accumulators
//! ([`NttPlan::mul_acc_wide`]), one reduction per coefficient per column, so the scan is
//! one multiply-add per database word and ciphertext part.
//!
//! Layout: per column, per CRT limb, the `2^ν1` rows' evaluations one after the other, so the
//! inner loop over rows reads the database sequentially; each column is its own allocation,
//! shared between versions of the database until a plaintext in it changes.

use std::sync::Arc;

use rayon::prelude::*;

use super::super::ntt::{NttPlan, WideAcc};
use super::super::PirError;
use super::ring::RingElement;
use super::rlwe::{Ciphertext, RlweParams};

/// A `2^ν1 × 2^ν2` database of large-ring plaintexts in NTT form.
///
/// Each column is its own shared allocation, so a changed plaintext costs a copy of its
/// column (8 MiB at 2^20 records), not of the database: [`Database::with_plaintexts`] makes
/// the next version from this one while queries keep reading this one.
#[derive(Debug, Clone)]
pub struct Database {
    nu1: usize,
    nu2: usize,
    degree: usize,
    limbs: usize,
    /// `columns[col][(limb·rows + row)·d ..][..d]`: the evaluations of one plaintext in one
    /// limb.
    columns: Vec<Arc<Vec<u32>>>,
}

/// One plaintext in NTT form, every limb's evaluations one after the other (what
/// [`Database::encode_plaintext`] makes and [`Database::with_plaintexts`] takes).
pub type EncodedPlaintext = Vec<u32>;

impl Database {
    /// Encodes `plaintexts` (`2^(ν1+ν2)` of them, each `d` residues below `p`), plaintext
    /// `index` at row `index >> ν2`, column `index mod 2^ν2`.
    pub fn from_plaintexts(
        params: &RlweParams,
        nu1: usize,
        nu2: usize,
        p: u64,
        plaintexts: &[Vec<u32>],
    ) -> Result<Database, PirError> {
        let count = 1usize.checked_shl((nu1 + nu2) as u32).unwrap_or(0);
        if plaintexts.len() != count {
            return Err(PirError::Length {
                what: "database plaintexts",
                expected: count,
                got: plaintexts.len(),
            });
        }
        Database::from_fn(params, nu1, nu2, p, |index| Ok(plaintexts[index].clone()))
    }

    /// The same with plaintext `index` made by `plaintext(index)` as it is encoded, so only
    /// one plaintext in coefficient form exists at a time (a server builds its database from
    /// its records without first holding them all as plaintexts).
    pub fn from_fn<F>(
        params: &RlweParams,
        nu1: usize,
        nu2: usize,
        p: u64,
        mut plaintext: F,
    ) -> Result<Database, PirError>
    where
        F: FnMut(usize) -> Result<Vec<u32>, PirError>,
    {
        let ring = params.ring();
        let d = ring.degree();
        let limbs = ring.limbs();
        if nu1 + nu2 > 30 || (1usize << nu1) > d {
            return Err(PirError::Param(format!(
                "database of 2^{nu1} x 2^{nu2} plaintexts in a ring of degree {d}"
            )));
        }
        let (rows, columns) = (1usize << nu1, 1usize << nu2);
        let mut db = Database {
            nu1,
            nu2,
            degree: d,
            limbs,
            columns: (0..columns)
                .map(|_| Arc::new(vec![0u32; limbs * rows * d]))
                .collect(),
        };
        let mut encoded = Vec::new();
        for index in 0..rows * columns {
            db.encode_into(params, &plaintext(index)?, p, &mut encoded)?;
            db.place(index, &encoded)?;
        }
        Ok(db)
    }

    /// One plaintext (`d` residues below `p`) in the NTT form the database keeps, for
    /// [`Database::with_plaintexts`].
    pub fn encode_plaintext(
        &self,
        params: &RlweParams,
        plaintext: &[u32],
        p: u64,
    ) -> Result<EncodedPlaintext, PirError> {
        let mut out = Vec::new();
        self.encode_into(params, plaintext, p, &mut out)?;
        Ok(out)
    }

    fn encode_into(
        &self,
        params: &RlweParams,
        plaintext: &[u32],
        p: u64,
        out: &mut Vec<u32>,
    ) -> Result<(), PirError> {
        let ring = params.ring();
        let d = ring.degree();
        if d != self.degree || ring.limbs() != self.limbs {
            return Err(PirError::Param(format!(
                "plaintext of degree {d} over {} limbs for a database of degree {} over {} limbs",
                ring.limbs(),
                self.degree,
                self.limbs
            )));
        }
        if p < 2 || p > ring.modulus() {
            return Err(PirError::Param(format!("plaintext modulus {p}")));
        }
        if plaintext.len() != d {
            return Err(PirError::Length {
                what: "database plaintext",
                expected: d,
                got: plaintext.len(),
            });
        }
        if let Some(&bad) = plaintext.iter().find(|&&c| u64::from(c) >= p) {
            return Err(PirError::Param(format!(
                "database coefficient {bad} is not below the plaintext modulus {p}"
            )));
        }
        let coeffs: Vec<u64> = plaintext.iter().map(|&m| u64::from(m)).collect();
        let mut poly = ring.zero();
        let mut ntt = ring.zero_ntt();
        ring.set_from_u64(&mut poly, &coeffs)?;
        ring.forward(&poly, &mut ntt)?;
        out.clear();
        for limb in 0..self.limbs {
            out.extend_from_slice(ntt.limb(limb, d));
        }
        Ok(())
    }

    /// Writes an encoded plaintext at `index` (the column must not be shared yet).
    fn place(&mut self, index: usize, encoded: &[u32]) -> Result<(), PirError> {
        let (rows, d) = (self.rows(), self.degree);
        let (row, col) = (index >> self.nu2, index & (self.columns() - 1));
        if index >= rows * self.columns() || encoded.len() != self.limbs * d {
            return Err(PirError::Param(format!(
                "plaintext {index} of {} words for a database of {} plaintexts",
                encoded.len(),
                rows * self.columns()
            )));
        }
        let column = Arc::make_mut(&mut self.columns[col]);
        for (limb, words) in encoded.chunks_exact(d).enumerate() {
            let at = (limb * rows + row) * d;
            column[at..at + d].copy_from_slice(words);
        }
        Ok(())
    }

    /// The next version of the database: this one with the plaintexts at the given indexes
    /// replaced. Columns without a change are shared with this version; each changed column is
    /// copied once.
    pub fn with_plaintexts(
        &self,
        changes: &[(usize, EncodedPlaintext)],
    ) -> Result<Database, PirError> {
        let mut next = self.clone();
        for (index, encoded) in changes {
            next.place(*index, encoded)?;
        }
        Ok(next)
    }

    /// `ν1`: the first dimension has `2^ν1` rows.
    pub fn nu1(&self) -> usize {
        self.nu1
    }

    /// `ν2`: `2^ν2` columns are folded.
    pub fn nu2(&self) -> usize {
        self.nu2
    }

    pub fn rows(&self) -> usize {
        1 << self.nu1
    }

    pub fn columns(&self) -> usize {
        1 << self.nu2
    }

    /// Resident bytes of the NTT-form plaintexts.
    pub fn memory_bytes(&self) -> usize {
        self.columns.len() * self.limbs * self.rows() * self.degree * 4
    }

    /// The NTT-form words of one column in one limb: `rows` blocks of `d`.
    fn column_limb(&self, col: usize, limb: usize) -> &[u32] {
        let len = self.rows() * self.degree;
        &self.columns[col][limb * len..(limb + 1) * len]
    }
}

/// Columns of the first dimension computed together: each row's query ciphertext is read
/// once per block of columns rather than once per column. One column at a time re-read 8 MiB
/// of query per column and limb, more than the cache holds; a block's accumulators (8 pairs
/// of 16 KiB per limb) stay in L2. First dimension at 2^20 records (2^9 x 2^9, one thread,
/// `tools/bench/respire.sh 20`): 1 column 1.25 s, 4 columns 1.04 s, 8 columns 0.86 s,
/// 16 columns 0.89 s.
const COLUMN_BLOCK: usize = 8;

/// The accumulators of the first dimension: per CRT limb, one pair (for `a` and `b`) for
/// each column of a block.
#[derive(Debug, Clone)]
pub struct FirstDimensionScratch {
    accs: Vec<Vec<(WideAcc, WideAcc)>>,
}

impl RlweParams {
    /// Accumulators for [`RlweParams::first_dimension`].
    pub fn first_dimension_scratch(&self) -> FirstDimensionScratch {
        let ring = self.ring();
        let accs = (0..ring.limbs())
            .filter_map(|l| ring.plan(l))
            .map(|plan| {
                (0..COLUMN_BLOCK)
                    .map(|_| (plan.wide_acc(), plan.wide_acc()))
                    .collect()
            })
            .collect();
        FirstDimensionScratch { accs }
    }

    /// `out[col] ← Σ_row rlwes[row] · db[row][col]` for every column (module doc).
    /// On a one-thread rayon pool, allocation-free given `scratch` and `out` (`2^ν2`
    /// ciphertexts of the ring); on more threads, blocks of columns run in parallel, each
    /// task with accumulators of its own.
    pub fn first_dimension(
        &self,
        db: &Database,
        rlwes: &[Ciphertext],
        scratch: &mut FirstDimensionScratch,
        out: &mut [Ciphertext],
    ) -> Result<(), PirError> {
        let ring = self.ring();
        let d = ring.degree();
        if db.degree != d || db.limbs != ring.limbs() {
            return Err(PirError::Param(format!(
                "database for degree {} over {} limbs used with degree {d} over {} limbs",
                db.degree,
                db.limbs,
                ring.limbs()
            )));
        }
        for (what, got, expected) in [
            ("first-dimension ciphertexts", rlwes.len(), db.rows()),
            ("first-dimension outputs", out.len(), db.columns()),
            ("first-dimension accumulators", scratch.accs.len(), db.limbs),
        ] {
            if got != expected {
                return Err(PirError::Length {
                    what,
                    expected,
                    got,
                });
            }
        }
        for ct in rlwes.iter().chain(out.iter()) {
            self.check_ct(ct)?;
        }
        if rayon::current_num_threads() == 1 {
            for (block, results) in out.chunks_mut(COLUMN_BLOCK).enumerate() {
                self.first_dimension_block(db, rlwes, scratch, block * COLUMN_BLOCK, results)?;
            }
        } else {
            // Blocks of columns are independent: one per task, each with its own accumulators.
            out.par_chunks_mut(COLUMN_BLOCK)
                .enumerate()
                .try_for_each_init(
                    || self.first_dimension_scratch(),
                    |scratch, (block, results)| {
                        self.first_dimension_block(
                            db,
                            rlwes,
                            scratch,
                            block * COLUMN_BLOCK,
                            results,
                        )
                    },
                )?;
        }
        Ok(())
    }

    /// The columns `first..first + results.len()` of the first dimension.
    fn first_dimension_block(
        &self,
        db: &Database,
        rlwes: &[Ciphertext],
        scratch: &mut FirstDimensionScratch,
        first: usize,
        results: &mut [Ciphertext],
    ) -> Result<(), PirError> {
        let d = self.ring().degree();
        for (limb, accs) in scratch.accs.iter_mut().enumerate() {
            let plan = limb_plan(self, limb)?;
            let accs = &mut accs[..results.len()];
            for (acc_a, acc_b) in accs.iter_mut() {
                acc_a.clear();
                acc_b.clear();
            }
            for (row, ct) in rlwes.iter().enumerate() {
                let (a, b) = (ct.a.limb(limb, d), ct.b.limb(limb, d));
                for (j, (acc_a, acc_b)) in accs.iter_mut().enumerate() {
                    let plaintext = &db.column_limb(first + j, limb)[row * d..(row + 1) * d];
                    plan.mul_acc_wide(acc_a, a, plaintext)?;
                    plan.mul_acc_wide(acc_b, b, plaintext)?;
                }
            }
            let range = limb * d..(limb + 1) * d;
            for (result, (acc_a, acc_b)) in results.iter_mut().zip(accs.iter()) {
                plan.reduce_wide(acc_a, &mut result.a.words_mut()[range.clone()])?;
                plan.reduce_wide(acc_b, &mut result.b.words_mut()[range.clone()])?;
            }
        }
        Ok(())
    }
}

fn limb_plan(params: &RlweParams, limb: usize) -> Result<&NttPlan, PirError> {
    params
        .ring()
        .plan(limb)
        .ok_or_else(|| PirError::Param(format!("the ring has no CRT limb {limb}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    /// Fresh encryptions of the one-hot row selector through the first dimension give each
    /// column's plaintext at the row, with the measured margin.
    #[test]
    fn first_dimension_selects_the_row_in_every_column() {
        let mut rng = ChaCha20Rng::seed_from_u64(70);
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let d = ring.degree();
        let p = 16u64;
        let (nu1, nu2) = (3, 2);
        let plaintexts: Vec<Vec<u32>> = (0..1 << (nu1 + nu2))
            .map(|_| (0..d).map(|_| (rng.next_u64() % p) as u32).collect())
            .collect();
        let db = Database::from_plaintexts(&params, nu1, nu2, p, &plaintexts).expect("db");
        assert_eq!((db.rows(), db.columns()), (8, 4));
        let sk = params.keygen(&mut rng).expect("keygen");
        let row = 5;
        let rlwes: Vec<Ciphertext> = (0..db.rows())
            .map(|i| {
                let mut m = vec![0u32; d];
                m[0] = u32::from(i == row);
                params.encrypt(&sk, &m, p, &mut rng).expect("encrypt")
            })
            .collect();
        let mut out = vec![rlwes[0].clone(); db.columns()];
        let mut scratch = params.first_dimension_scratch();
        params
            .first_dimension(&db, &rlwes, &mut scratch, &mut out)
            .expect("first dimension");
        let mut plain = vec![0u32; d];
        for (col, ct) in out.iter().enumerate() {
            params.decrypt(&sk, ct, p, &mut plain).expect("decrypt");
            let expected = &plaintexts[(row << nu2) + col];
            assert_eq!(&plain, expected, "column {col}");
            let mut mu = ring.zero();
            ring.scale_plaintext(expected, p, &mut mu).expect("scale");
            let noise = params.noise(&sk, ct, &mu).expect("noise");
            assert!(params.margin_bits(noise, p) > 20.0);
        }
    }

    /// A new version replaces the named plaintexts, shares the untouched columns and
    /// leaves the old version as it was.
    #[test]
    fn a_new_version_copies_only_changed_columns() {
        let params = RlweParams::respire_large().expect("params");
        let d = params.ring().degree();
        let plaintexts: Vec<Vec<u32>> = (0..8u32).map(|i| vec![i; d]).collect();
        let old = Database::from_plaintexts(&params, 2, 1, 16, &plaintexts).expect("db");
        let encoded = old
            .encode_plaintext(&params, &vec![15; d], 16)
            .expect("encode");
        let new = old.with_plaintexts(&[(3, encoded.clone())]).expect("new");
        // Plaintext 3 is row 1, column 1; column 0 is shared.
        assert!(Arc::ptr_eq(&old.columns[0], &new.columns[0]));
        assert!(!Arc::ptr_eq(&old.columns[1], &new.columns[1]));
        let at = |db: &Database, limb: usize| db.column_limb(1, limb)[d..2 * d].to_vec();
        assert_eq!(at(&new, 0), encoded[..d].to_vec());
        assert_eq!(at(&new, 1), encoded[d..].to_vec());
        let fresh = Database::from_plaintexts(&params, 2, 1, 16, &plaintexts).expect("db");
        assert_eq!(at(&old, 0), at(&fresh, 0));
        assert!(old.with_plaintexts(&[(8, encoded)]).is_err());
    }

    #[test]
    fn bad_databases_are_errors() {
        let params = RlweParams::respire_large().expect("params");
        let d = params.ring().degree();
        let good = vec![vec![0u32; d]; 4];
        assert!(Database::from_plaintexts(&params, 1, 1, 16, &good).is_ok());
        assert!(Database::from_plaintexts(&params, 1, 2, 16, &good).is_err());
        assert!(Database::from_plaintexts(&params, 12, 0, 16, &good).is_err());
        let mut bad = good.clone();
        bad[2][7] = 16;
        assert!(Database::from_plaintexts(&params, 1, 1, 16, &bad).is_err());
        bad[2] = vec![0; 3];
        assert!(Database::from_plaintexts(&params, 1, 1, 16, &bad).is_err());
    }
}
