//! GSW ciphertexts over the large ring and the external product GSW ⊡ RLWE -> RLWE, as
//! Spiral (Menon and Wu, S&P 2022: its preliminaries on GSW encryption and the external product) and
//! Respire (Burton, Menon, Wu, CCS 2024, preliminaries) use them to fold the database.
//!
//! A GSW encryption of `μ` under `s` with the gadget `g = (1, z, ..., z^(t-1))` is the
//! `2 × 2t` matrix `C = [a; a·s + e] + μ·(I_2 ⊗ g)`. Its `2t` columns are RLWE ciphertexts
//! (in the `(a, b)` convention of [`super::rlwe`], phase `b - a·s`):
//! - column `j < t` is `(a_j + μ·z^j, b_j)`, whose phase is `-s·μ·z^j + e_j`;
//! - column `t + j` is `(a_j, b_j + μ·z^j)`, whose phase is `μ·z^j + e_j`.
//!
//! The external product with an RLWE ciphertext `c = (c_a, c_b)` is `C·g^-1(c)`: the signed
//! digits `d_j` of `c_a` multiply the first half, those `d'_j` of `c_b` the second, and the
//! phase of the result is `μ·(c_b - c_a·s) + Σ d_j·e_j + Σ d'_j·e'_j`: `μ` times the phase of
//! `c`, plus an error of `2t` digit-times-Gaussian products. The error of `c` is multiplied
//! by `μ` only, which is why GSW on the left keeps the folding noise additive.
//!
//! The same product with a GSW encryption of `-s` is Spiral's RLWE-to-GSW conversion key
//! (Spiral's RLWE-to-GSW conversion; Respire's `rlwe_to_gsw`): see [`super::expand`].

use rand::{CryptoRng, RngCore};

use super::super::PirError;
use super::ring::{Gadget, NttPoly, Poly, RingElement};
use super::rlwe::{Ciphertext, RlweParams, SecretKey};

/// `z = 127`, `t = 8`: the gadget of the folding GSW ciphertexts (Respire Tables 3-5).
pub const GSW_GADGET: (u64, usize) = (127, 8);

/// A GSW ciphertext: `t` columns whose phase is `-s·μ·z^j` and `t` whose phase is `μ·z^j`,
/// both in NTT form (see the module doc).
#[derive(Debug, Clone)]
pub struct GswCiphertext {
    gadget: Gadget,
    /// Columns `0..t`: phase `-s·μ·z^j + e`.
    times_s: Vec<Ciphertext>,
    /// Columns `t..2t`: phase `μ·z^j + e`.
    plain: Vec<Ciphertext>,
    /// For a fresh encryption ([`RlweParams::encrypt_gsw`]), the `2t` seeds of the columns'
    /// masks (first half, then second), so it can be sent seeded ([`super::wire`]); empty for
    /// a ciphertext computed by the server.
    seeds: Vec<[u8; 32]>,
}

impl GswCiphertext {
    /// Resident bytes of the columns.
    pub fn memory_bytes(&self) -> usize {
        self.times_s
            .iter()
            .chain(&self.plain)
            .map(Ciphertext::memory_bytes)
            .sum()
    }

    /// Builds a GSW ciphertext from its two halves (each `t` RLWE ciphertexts of the ring).
    pub(crate) fn from_columns(
        gadget: Gadget,
        times_s: Vec<Ciphertext>,
        plain: Vec<Ciphertext>,
    ) -> Result<GswCiphertext, PirError> {
        for half in [&times_s, &plain] {
            if half.len() != gadget.digits() {
                return Err(PirError::Length {
                    what: "GSW half",
                    expected: gadget.digits(),
                    got: half.len(),
                });
            }
        }
        Ok(GswCiphertext {
            gadget,
            times_s,
            plain,
            seeds: Vec::new(),
        })
    }

    /// A fresh (or parsed) GSW ciphertext whose column masks were expanded from `seeds`
    /// (`2t` of them: first half, then second), else [`PirError::Length`].
    pub(crate) fn from_seeded_columns(
        gadget: Gadget,
        times_s: Vec<Ciphertext>,
        plain: Vec<Ciphertext>,
        seeds: Vec<[u8; 32]>,
    ) -> Result<GswCiphertext, PirError> {
        if seeds.len() != 2 * gadget.digits() {
            return Err(PirError::Length {
                what: "GSW column seeds",
                expected: 2 * gadget.digits(),
                got: seeds.len(),
            });
        }
        let mut gsw = GswCiphertext::from_columns(gadget, times_s, plain)?;
        gsw.seeds = seeds;
        Ok(gsw)
    }

    /// Columns `0..t` (phase `-s·μ·z^j + e`) then `t..2t` (phase `μ·z^j + e`).
    pub(crate) fn columns(&self) -> impl Iterator<Item = &Ciphertext> {
        self.times_s.iter().chain(&self.plain)
    }

    /// The seeds of the columns' masks, in [`GswCiphertext::columns`] order (empty unless
    /// fresh or parsed).
    pub(crate) fn seeds(&self) -> &[[u8; 32]] {
        &self.seeds
    }

    /// The gadget of the columns.
    pub fn gadget(&self) -> &Gadget {
        &self.gadget
    }
}

/// The decomposition buffers of one external product.
#[derive(Debug, Clone)]
struct DigitBuffers {
    coeffs: Poly,
    digits: Vec<Poly>,
    digit_ntt: NttPoly,
}

/// Buffers for [`RlweParams::external_product`] and [`RlweParams::select`], allocated once
/// per gadget.
#[derive(Debug, Clone)]
pub struct GswScratch {
    buffers: DigitBuffers,
    diff: Ciphertext,
    product: Ciphertext,
}

impl RlweParams {
    /// A fresh GSW encryption of the ring element `μ` (coefficient form) under `gadget`:
    /// `2t` seeded RLWE encryptions, of `-μ·z^j·s` (first half) and of `μ·z^j` (second half).
    /// The first half has the phase of the textbook `(a + μ·z^j, a·s + e)`, which the
    /// external product only depends on, but its mask is a seed's, so the key can be sent
    /// seeded.
    pub fn encrypt_gsw<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        mu: &Poly,
        gadget: &Gadget,
        rng: &mut R,
    ) -> Result<GswCiphertext, PirError> {
        let ring = self.ring();
        let mut mu_ntt = ring.zero_ntt();
        let mut mu_s = ring.zero_ntt();
        let mut term = ring.zero();
        let result = (|| {
            ring.forward(mu, &mut mu_ntt)?;
            // -μ·s, NTT form.
            ring.mul(&mut mu_s, &mu_ntt, sk.ntt())?;
            ring.neg_assign(&mut mu_s)?;
            let t = gadget.digits();
            let mut times_s = Vec::with_capacity(2 * t);
            let mut seeds = Vec::with_capacity(2 * t);
            for source in [&mu_s, &mu_ntt] {
                for j in 0..t {
                    ring.inverse(source, &mut term)?;
                    ring.scalar_mul_assign(&mut term, gadget.power(j))?;
                    let seeded = self.encrypt_poly_seeded(sk, &term, rng)?;
                    seeds.push(seeded.seed);
                    times_s.push(self.expand(&seeded)?);
                }
            }
            let plain = times_s.split_off(t);
            GswCiphertext::from_seeded_columns(gadget.clone(), times_s, plain, seeds)
        })();
        mu_ntt.words_mut().fill(0);
        mu_s.words_mut().fill(0);
        term.words_mut().fill(0);
        result
    }

    /// Buffers for external products under `gadget`.
    pub fn gsw_scratch(&self, gadget: &Gadget) -> GswScratch {
        let ring = self.ring();
        let zero_ct = Ciphertext {
            a: ring.zero_ntt(),
            b: ring.zero_ntt(),
        };
        GswScratch {
            buffers: DigitBuffers {
                coeffs: ring.zero(),
                digits: vec![ring.zero(); gadget.digits()],
                digit_ntt: ring.zero_ntt(),
            },
            diff: zero_ct.clone(),
            product: zero_ct,
        }
    }

    fn check_gsw(&self, gsw: &GswCiphertext, scratch: &GswScratch) -> Result<(), PirError> {
        if scratch.buffers.digits.len() != gsw.gadget.digits() {
            return Err(PirError::Length {
                what: "GSW scratch digits",
                expected: gsw.gadget.digits(),
                got: scratch.buffers.digits.len(),
            });
        }
        for column in gsw.times_s.iter().chain(&gsw.plain) {
            self.check_ct(column)?;
        }
        Ok(())
    }

    /// `out ← gsw ⊡ ct = C·g^-1(ct)`: phase `μ·phase(ct) + Σ digit·error` (module doc).
    /// Allocation-free given `scratch` from [`RlweParams::gsw_scratch`] for the GSW's gadget.
    pub fn external_product(
        &self,
        gsw: &GswCiphertext,
        ct: &Ciphertext,
        scratch: &mut GswScratch,
        out: &mut Ciphertext,
    ) -> Result<(), PirError> {
        self.check_gsw(gsw, scratch)?;
        self.check_ct(ct)?;
        self.check_ct(out)?;
        self.external_product_unchecked(gsw, ct, &mut scratch.buffers, out)
    }

    /// The external product once the sizes are known to match.
    fn external_product_unchecked(
        &self,
        gsw: &GswCiphertext,
        ct: &Ciphertext,
        buffers: &mut DigitBuffers,
        out: &mut Ciphertext,
    ) -> Result<(), PirError> {
        let ring = self.ring();
        out.a.words_mut().fill(0);
        out.b.words_mut().fill(0);
        // g^-1(c_a) meets the columns of phase -s·μ·z^j, g^-1(c_b) those of phase μ·z^j.
        for (part, columns) in [(&ct.a, &gsw.times_s), (&ct.b, &gsw.plain)] {
            ring.inverse(part, &mut buffers.coeffs)?;
            ring.decompose(&buffers.coeffs, &gsw.gadget, &mut buffers.digits)?;
            for (digit, column) in buffers.digits.iter().zip(columns) {
                ring.forward(digit, &mut buffers.digit_ntt)?;
                ring.mul_acc(&mut out.a, &buffers.digit_ntt, &column.a)?;
                ring.mul_acc(&mut out.b, &buffers.digit_ntt, &column.b)?;
            }
        }
        Ok(())
    }

    /// `c0 ← c0 + gsw ⊡ (c1 - c0)`: `c0` when `gsw` encrypts 0, `c1` when it encrypts 1
    /// (Spiral's homomorphic select, the step of its folding). Allocation-free given
    /// `scratch`.
    pub fn select(
        &self,
        gsw: &GswCiphertext,
        c0: &mut Ciphertext,
        c1: &Ciphertext,
        scratch: &mut GswScratch,
    ) -> Result<(), PirError> {
        self.check_gsw(gsw, scratch)?;
        self.check_ct(c0)?;
        self.check_ct(c1)?;
        let ring = self.ring();
        let GswScratch {
            buffers,
            diff,
            product,
        } = scratch;
        diff.a.words_mut().copy_from_slice(c1.a.words());
        diff.b.words_mut().copy_from_slice(c1.b.words());
        ring.sub_assign(&mut diff.a, &c0.a)?;
        ring.sub_assign(&mut diff.b, &c0.b)?;
        self.external_product_unchecked(gsw, diff, buffers, product)?;
        ring.add_assign(&mut c0.a, &product.a)?;
        ring.add_assign(&mut c0.b, &product.b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn random_msg(d: usize, p: u64, rng: &mut ChaCha20Rng) -> Vec<u32> {
        (0..d).map(|_| (rng.next_u64() % p) as u32).collect()
    }

    /// GSW(bit) ⊡ RLWE(Δm) decrypts to bit·m, and select picks c0 or c1, at Respire's GSW
    /// gadget (127, 8) in the large ring; the noise is measured against the exact phase.
    #[test]
    fn external_product_selects_with_margin() {
        let mut rng = ChaCha20Rng::seed_from_u64(40);
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let d = ring.degree();
        let p = 16;
        let (z, t) = GSW_GADGET;
        let gadget = ring.gadget(z, t).expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        let mut scratch = params.gsw_scratch(&gadget);
        let m0 = random_msg(d, p, &mut rng);
        let m1 = random_msg(d, p, &mut rng);
        let c0 = params.encrypt(&sk, &m0, p, &mut rng).expect("encrypt");
        let c1 = params.encrypt(&sk, &m1, p, &mut rng).expect("encrypt");
        let mut mu0 = ring.zero();
        ring.scale_plaintext(&m0, p, &mut mu0).expect("scale");
        let mut mu1 = ring.zero();
        ring.scale_plaintext(&m1, p, &mut mu1).expect("scale");
        let zeros = vec![0u32; d];
        for bit in [0u64, 1] {
            let mut bit_poly = ring.zero();
            let mut coeffs = vec![0u64; d];
            coeffs[0] = bit;
            ring.set_from_u64(&mut bit_poly, &coeffs).expect("set");
            let gsw = params
                .encrypt_gsw(&sk, &bit_poly, &gadget, &mut rng)
                .expect("gsw");

            let mut out = c1.clone();
            params
                .external_product(&gsw, &c0, &mut scratch, &mut out)
                .expect("product");
            let mut plain = vec![0u32; d];
            params.decrypt(&sk, &out, p, &mut plain).expect("decrypt");
            assert_eq!(plain, if bit == 1 { m0.clone() } else { zeros.clone() });
            let expected = if bit == 1 { &mu0 } else { &ring.zero() };
            let noise = params.noise(&sk, &out, expected).expect("noise");
            println!(
                "GSW(z={z}, t={t}) ⊡ RLWE, bit {bit}: max |e| = 2^{:.1}, margin {:.1} bits",
                (noise.max(1) as f64).log2(),
                params.margin_bits(noise, p)
            );
            assert!(params.margin_bits(noise, p) > 20.0);

            let mut selected = c0.clone();
            params
                .select(&gsw, &mut selected, &c1, &mut scratch)
                .expect("select");
            params
                .decrypt(&sk, &selected, p, &mut plain)
                .expect("decrypt");
            assert_eq!(plain, if bit == 1 { m1.clone() } else { m0.clone() });
            let expected = if bit == 1 { &mu1 } else { &mu0 };
            let noise = params.noise(&sk, &selected, expected).expect("noise");
            println!(
                "select by GSW(bit {bit}): max |e| = 2^{:.1}, margin {:.1} bits",
                (noise.max(1) as f64).log2(),
                params.margin_bits(noise, p)
            );
            assert!(params.margin_bits(noise, p) > 20.0);
        }
    }

    /// A GSW encryption of a polynomial multiplies the phase by it.
    #[test]
    fn external_product_by_a_monomial_rotates() {
        let mut rng = ChaCha20Rng::seed_from_u64(41);
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let d = ring.degree();
        let p = 16;
        let gadget = ring.gadget(GSW_GADGET.0, GSW_GADGET.1).expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        let mut x = vec![0i64; d];
        x[1] = 1;
        let x_poly = ring.poly_from_i64(&x).expect("poly");
        let gsw = params
            .encrypt_gsw(&sk, &x_poly, &gadget, &mut rng)
            .expect("gsw");
        let m = random_msg(d, p, &mut rng);
        let ct = params.encrypt(&sk, &m, p, &mut rng).expect("encrypt");
        let mut out = ct.clone();
        let mut scratch = params.gsw_scratch(&gadget);
        params
            .external_product(&gsw, &ct, &mut scratch, &mut out)
            .expect("product");
        let mut plain = vec![0u32; d];
        params.decrypt(&sk, &out, p, &mut plain).expect("decrypt");
        // x·m: coefficients move up one, the top one wraps with a sign.
        let mut expected = vec![0u32; d];
        expected[0] = (p as u32 - m[d - 1]) % p as u32;
        expected[1..].copy_from_slice(&m[..d - 1]);
        assert_eq!(plain, expected);
    }

    #[test]
    fn mismatched_scratch_is_an_error() {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let gadget = ring.gadget(127, 8).expect("gadget");
        let other = ring.gadget(16088, 4).expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        let gsw = params
            .encrypt_gsw(&sk, &ring.zero(), &gadget, &mut rng)
            .expect("gsw");
        let ct = params
            .encrypt(&sk, &vec![0; ring.degree()], 16, &mut rng)
            .expect("encrypt");
        let mut out = ct.clone();
        let mut scratch = params.gsw_scratch(&other);
        assert!(matches!(
            params.external_product(&gsw, &ct, &mut scratch, &mut out),
            Err(PirError::Length { .. })
        ));
    }
}
