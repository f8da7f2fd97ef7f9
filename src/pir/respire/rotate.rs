//! The rotation that brings one of the `2^ν3` records packed in a plaintext to the positions
//! the projection keeps (Respire, Burton, Menon, Wu, CCS 2024; the reference code's
//! `answer_rotate`). A large-ring plaintext holds `2^ν3 = d1/d3` records interleaved (record
//! `r` at the coefficients `2^ν3·c + r`); multiplying by `x^(-r)` moves record `r` to the
//! multiples of `2^ν3`, which the projection to the subring then extracts. The server does not
//! know `r`: for each bit `b_k` of `r` (most significant first) it selects between `c` and
//! `x^(-2^(ν3-1-k))·c` with a GSW encryption of `b_k`, as in folding.

use super::super::PirError;
use super::gsw::{GswCiphertext, GswScratch};
use super::ring::{NttPoly, RingElement};
use super::rlwe::{Ciphertext, RlweParams};

/// Buffers for [`RlweParams::rotate`]: the monomials `x^(-2^(ν3-1-k))` in NTT form and one
/// ciphertext.
#[derive(Debug, Clone)]
pub struct RotationScratch {
    monomials: Vec<NttPoly>,
    shifted: Ciphertext,
}

impl RlweParams {
    /// Buffers for a rotation by `ν3` bits (`2^ν3 <= d`).
    pub fn rotation_scratch(&self, nu3: usize) -> Result<RotationScratch, PirError> {
        let ring = self.ring();
        let d = ring.degree();
        if nu3 > d.trailing_zeros() as usize {
            return Err(PirError::Param(format!(
                "rotation by {nu3} bits in a ring of degree {d}"
            )));
        }
        let monomials = (0..nu3)
            .map(|k| {
                // x^(-e) = -x^(d - e) for 0 < e <= d.
                let mut coeffs = vec![0i64; d];
                coeffs[d - (1 << (nu3 - 1 - k))] = -1;
                ring.into_ntt(ring.poly_from_i64(&coeffs)?)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RotationScratch {
            monomials,
            shifted: Ciphertext {
                a: ring.zero_ntt(),
                b: ring.zero_ntt(),
            },
        })
    }

    /// `ct ← x^(-r)·ct` for the `r` whose bits (most significant first) `gsws` encrypt.
    /// Allocation-free given the scratches.
    pub fn rotate(
        &self,
        ct: &mut Ciphertext,
        gsws: &[GswCiphertext],
        scratch: &mut RotationScratch,
        gsw_scratch: &mut GswScratch,
    ) -> Result<(), PirError> {
        if gsws.len() != scratch.monomials.len() {
            return Err(PirError::Length {
                what: "rotation bits",
                expected: scratch.monomials.len(),
                got: gsws.len(),
            });
        }
        self.check_ct(ct)?;
        let ring = self.ring();
        for (gsw, monomial) in gsws.iter().zip(&scratch.monomials) {
            let shifted = &mut scratch.shifted;
            shifted.a.words_mut().copy_from_slice(ct.a.words());
            shifted.b.words_mut().copy_from_slice(ct.b.words());
            ring.mul_assign(&mut shifted.a, monomial)?;
            ring.mul_assign(&mut shifted.b, monomial)?;
            self.select(gsw, ct, shifted, gsw_scratch)?;
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

    /// Every `r < 4` moves record `r` (coefficients `4c + r`) to the multiples of 4.
    #[test]
    fn rotation_brings_the_record_to_the_multiples() {
        let mut rng = ChaCha20Rng::seed_from_u64(90);
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let d = ring.degree();
        let p = 16u64;
        let gadget = ring.gadget(GSW_GADGET.0, GSW_GADGET.1).expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        let nu3 = 2;
        let m: Vec<u32> = (0..d).map(|_| (rng.next_u64() % p) as u32).collect();
        let ct = params.encrypt(&sk, &m, p, &mut rng).expect("encrypt");
        let mut scratch = params.rotation_scratch(nu3).expect("scratch");
        let mut gsw_scratch = params.gsw_scratch(&gadget);
        let mut plain = vec![0u32; d];
        for r in 0..1usize << nu3 {
            let gsws: Vec<GswCiphertext> = (0..nu3)
                .map(|k| {
                    let mut coeffs = vec![0u64; d];
                    coeffs[0] = ((r >> (nu3 - 1 - k)) & 1) as u64;
                    let mu = ring.poly_from_u64(&coeffs).expect("poly");
                    params
                        .encrypt_gsw(&sk, &mu, &gadget, &mut rng)
                        .expect("gsw")
                })
                .collect();
            let mut rotated = ct.clone();
            params
                .rotate(&mut rotated, &gsws, &mut scratch, &mut gsw_scratch)
                .expect("rotate");
            params
                .decrypt(&sk, &rotated, p, &mut plain)
                .expect("decrypt");
            for c in 0..d >> nu3 {
                assert_eq!(plain[c << nu3], m[(c << nu3) + r], "r={r} c={c}");
            }
        }
        let mut rotated = ct.clone();
        assert!(params
            .rotate(&mut rotated, &[], &mut scratch, &mut gsw_scratch)
            .is_err());
        assert!(params.rotation_scratch(12).is_err());
    }
}
