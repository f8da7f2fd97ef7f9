//! Folding: the `2^ν2` RLWE ciphertexts left by the first dimension are halved `ν2` times by
//! homomorphic selects with GSW encryptions of the column's bits, most significant first,
//! down to one RLWE ciphertext of the selected plaintext (Spiral's "folding", Menon and Wu,
//! S&P 2022; Respire's `answer_fold`). Each step adds one external product's
//! error (GSW on the left keeps it additive), so `ν2` steps add `ν2` such errors.

use rayon::prelude::*;

use super::super::PirError;
use super::gsw::{GswCiphertext, GswScratch};
use super::rlwe::{Ciphertext, RlweParams};

impl RlweParams {
    /// Folds `cts` (`2^gsws.len()` ciphertexts) in place; the result is `cts[0]`: for bits
    /// `b_0 ... b_(ν2-1)` (most significant first) encrypted by `gsws`, the ciphertext that was
    /// at index `Σ b_k·2^(ν2-1-k)`. On a one-thread rayon pool, allocation-free given `scratch`
    /// for the GSW gadget; on more threads, the selects of each level run in parallel.
    pub fn fold(
        &self,
        cts: &mut [Ciphertext],
        gsws: &[GswCiphertext],
        scratch: &mut GswScratch,
    ) -> Result<(), PirError> {
        if gsws.len() >= 32 {
            return Err(PirError::Param(format!("{} folding bits", gsws.len())));
        }
        let expected = 1usize << gsws.len();
        if cts.len() != expected {
            return Err(PirError::Length {
                what: "ciphertexts to fold",
                expected,
                got: cts.len(),
            });
        }
        let mut len = cts.len();
        let parallel = rayon::current_num_threads() > 1;
        for gsw in gsws {
            let half = len / 2;
            let (low, high) = cts[..len].split_at_mut(half);
            if parallel && half > 1 {
                // The selects of one level are independent.
                low.par_iter_mut().zip(high.par_iter()).try_for_each_init(
                    || self.gsw_scratch(gsw.gadget()),
                    |scratch, (c0, c1)| self.select(gsw, c0, c1, scratch),
                )?;
            } else {
                for (c0, c1) in low.iter_mut().zip(high.iter()) {
                    self.select(gsw, c0, c1, scratch)?;
                }
            }
            len = half;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::gsw::GSW_GADGET;
    use super::*;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    /// Fresh GSW bits fold 8 fresh ciphertexts down to the one at the encoded index.
    #[test]
    fn fold_selects_the_indexed_ciphertext() {
        let mut rng = ChaCha20Rng::seed_from_u64(60);
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let d = ring.degree();
        let p = 16u64;
        let gadget = ring.gadget(GSW_GADGET.0, GSW_GADGET.1).expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        let nu2 = 3;
        let msgs: Vec<Vec<u32>> = (0..1 << nu2)
            .map(|_| (0..d).map(|_| (rng.next_u64() % p) as u32).collect())
            .collect();
        let cts: Vec<Ciphertext> = msgs
            .iter()
            .map(|m| params.encrypt(&sk, m, p, &mut rng).expect("encrypt"))
            .collect();
        let mut scratch = params.gsw_scratch(&gadget);
        for index in [0usize, 5, 7] {
            let gsws: Vec<GswCiphertext> = (0..nu2)
                .map(|k| {
                    let bit = ((index >> (nu2 - 1 - k)) & 1) as u64;
                    let mut coeffs = vec![0u64; d];
                    coeffs[0] = bit;
                    let mu = ring.poly_from_u64(&coeffs).expect("poly");
                    params
                        .encrypt_gsw(&sk, &mu, &gadget, &mut rng)
                        .expect("gsw")
                })
                .collect();
            let mut work = cts.clone();
            params.fold(&mut work, &gsws, &mut scratch).expect("fold");
            let mut plain = vec![0u32; d];
            params
                .decrypt(&sk, &work[0], p, &mut plain)
                .expect("decrypt");
            assert_eq!(plain, msgs[index], "index {index}");
        }
        let mut short = cts[..3].to_vec();
        assert!(params.fold(&mut short, &[], &mut scratch).is_err());
    }
}
