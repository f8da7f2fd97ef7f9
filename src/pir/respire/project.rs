//! Projection of a large-ring ciphertext onto the subring `Z_q[x^(d1/d2)]/(x^d1 + 1)`, which is
//! `R_{d2}` under `y = x^(d1/d2)`: Respire's projection of the answer (Burton, Menon, Wu,
//! CCS 2024; the reference code's `answer_project` with `do_proj_iter_one`,
//! `src/pir/respire.rs`).
//!
//! With `m = log2(d1/d2)` and `τ_k: x -> x^k`, the map
//! `π(μ) = (d1/d2)^-1 · Π_{i<m} (1 + τ_{d1/2^i + 1}) (μ)` keeps the coefficients of `μ` at
//! multiples of `d1/d2` and zeroes the others: `τ_{d1+1}` negates the odd coefficients, so
//! `μ + τ_{d1+1}(μ)` is twice the even part; on an even polynomial `τ_{d1/2+1}` negates the
//! coefficients at `2 mod 4`; and so on. Homomorphically: scale the ciphertext by
//! `(d1/d2)^-1 mod q1` (exact: the error is traced with the message), then `m` times add its
//! key-switched automorphic image. The keys are the automorphism keys of the projection gadget
//! (`z = 7, t = 20`), the same keys as the first `m` of the GSW coefficient expansion's
//! (the reference's `auto_params_long`), so a deployment shares them with query expansion.
//!
//! A record sits in the packed plaintext at coefficients `(d1/d2)·i + r` (record `r`), so the
//! server first rotates record `r` to the multiples of `d1/d2` (the reference's
//! `answer_rotate`, a homomorphic selection by `x^-r` with the query's GSW bits, on the folding
//! side); the projection then leaves that record alone, as an element of the subring.
//!
//! The ring switch itself (to a ciphertext of `R_{d2}`) follows in `compress.rs`: after key
//! switching to a secret of the subring, the subring coefficients of both parts are an
//! `R_{d2}` ciphertext.

use rand::{CryptoRng, RngCore};

use super::super::PirError;
use super::expand::ExpansionKeys;
use super::ring::Gadget;
use super::rlwe::{AutomorphismKey, Ciphertext, KeySwitchScratch, RlweParams, SecretKey};

/// The automorphism keys for `τ_{d1/2^i + 1}`, `i < log2(d1/d2)`, under the projection gadget.
#[derive(Debug, Clone)]
pub struct ProjectionKeys {
    keys: Vec<AutomorphismKey>,
    /// `(d1/d2)^-1 mod q1`.
    inverse: u64,
}

/// Buffers for [`project`].
#[derive(Debug, Clone)]
pub struct ProjectScratch {
    switch: KeySwitchScratch,
    image: Ciphertext,
}

/// `x^-1 mod q` for `x` a power of two and `q` odd: `((q+1)/2)^log2(x)`.
fn inverse_power_of_two(x: usize, q: u64) -> u64 {
    let half = u128::from(q.div_ceil(2));
    let mut inverse = 1u128;
    for _ in 0..x.trailing_zeros() {
        inverse = inverse * half % u128::from(q);
    }
    inverse as u64
}

impl ProjectionKeys {
    /// Resident bytes of the keys (a copy, also when shared with expansion keys on the wire).
    pub fn memory_bytes(&self) -> usize {
        self.keys.iter().map(AutomorphismKey::memory_bytes).sum()
    }

    /// Keys projecting `params`' ring (degree `d1`) onto its subring of degree
    /// `small_degree` (`d2`, a power of two dividing `d1`), under `gadget`.
    pub fn generate<R: RngCore + CryptoRng>(
        params: &RlweParams,
        sk: &SecretKey,
        small_degree: usize,
        gadget: &Gadget,
        rng: &mut R,
    ) -> Result<ProjectionKeys, PirError> {
        let d1 = params.ring().degree();
        if small_degree == 0 || !small_degree.is_power_of_two() || small_degree > d1 {
            return Err(PirError::Param(format!(
                "subring degree {small_degree} for ring degree {d1}"
            )));
        }
        let factor = d1 / small_degree;
        let keys = (0..factor.trailing_zeros())
            .map(|i| params.automorphism_key(sk, (d1 >> i) + 1, gadget, rng))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProjectionKeys {
            keys,
            inverse: inverse_power_of_two(factor, params.ring().modulus()),
        })
    }

    /// The keys onto the subring of degree `small_degree`, taken from the first keys of a
    /// coefficient expansion of the same ring (key `i` of both is for `τ_{d1/2^i + 1}`), so a
    /// client whose expansion gadget is the projection gadget sends them once. The caller
    /// checks the gadget.
    pub fn from_expansion(
        params: &RlweParams,
        expansion: &ExpansionKeys,
        small_degree: usize,
    ) -> Result<ProjectionKeys, PirError> {
        let d1 = params.ring().degree();
        if small_degree == 0 || !small_degree.is_power_of_two() || small_degree > d1 {
            return Err(PirError::Param(format!(
                "subring degree {small_degree} for ring degree {d1}"
            )));
        }
        let count = (d1 / small_degree).trailing_zeros() as usize;
        let keys = expansion.keys().get(..count).ok_or_else(|| {
            PirError::Param(format!(
                "{} expansion keys for a projection needing {count}",
                expansion.keys().len()
            ))
        })?;
        ProjectionKeys::from_keys(params, keys.to_vec())
    }

    /// Keys parsed for `τ_{d1/2^i + 1}`, `i < log2(d1/d2)` (in that order, powers checked),
    /// with the inverse computed as [`ProjectionKeys::generate`] does.
    pub(crate) fn from_keys(
        params: &RlweParams,
        keys: Vec<AutomorphismKey>,
    ) -> Result<ProjectionKeys, PirError> {
        let d1 = params.ring().degree();
        for (i, key) in keys.iter().enumerate() {
            if i >= d1.trailing_zeros() as usize || key.power() != (d1 >> i) + 1 {
                return Err(PirError::Param(format!(
                    "projection key {i} is for x -> x^{}",
                    key.power()
                )));
            }
        }
        Ok(ProjectionKeys {
            inverse: inverse_power_of_two(1 << keys.len(), params.ring().modulus()),
            keys,
        })
    }

    /// The automorphism keys, in order.
    pub(crate) fn keys(&self) -> &[AutomorphismKey] {
        &self.keys
    }

    /// `d1/d2`, the stride of the subring's coefficients.
    pub fn stride(&self) -> usize {
        1 << self.keys.len()
    }

    /// Buffers for [`project`].
    pub fn scratch(&self, params: &RlweParams) -> Result<ProjectScratch, PirError> {
        let gadget = self
            .keys
            .first()
            .map(AutomorphismKey::gadget)
            .ok_or_else(|| {
                PirError::Param("projection onto the whole ring needs no keys".into())
            })?;
        let ring = params.ring();
        Ok(ProjectScratch {
            switch: params.key_switch_scratch(gadget),
            image: Ciphertext {
                a: ring.zero_ntt(),
                b: ring.zero_ntt(),
            },
        })
    }

    /// Bytes of the keys with seeded masks (32-byte seed and one `ceil(log2 q1)`-bit ring
    /// element per gadget row), as the paper counts public parameters.
    pub fn wire_bytes(&self, params: &RlweParams) -> usize {
        let ring = params.ring();
        let element =
            (ring.degree() * super::keyswitch::residue_bits(ring.modulus()) as usize).div_ceil(8);
        self.keys
            .iter()
            .map(|k| k.gadget().digits() * (32 + element))
            .sum()
    }
}

/// `ct ← π(ct)`: its plaintext projected onto the subring (module doc), in place.
/// Allocation-free given `scratch`.
pub fn project(
    params: &RlweParams,
    keys: &ProjectionKeys,
    ct: &mut Ciphertext,
    scratch: &mut ProjectScratch,
) -> Result<(), PirError> {
    let ring = params.ring();
    ring.scalar_mul_assign(&mut ct.a, keys.inverse)?;
    ring.scalar_mul_assign(&mut ct.b, keys.inverse)?;
    for key in &keys.keys {
        params.apply_automorphism(ct, key, &mut scratch.switch, &mut scratch.image)?;
        params.add_assign(ct, &scratch.image)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pir::respire::ring::{Poly, Ring, LARGE_DEGREE, SMALL_DEGREE};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// `μ` with only the coefficients at multiples of `stride` kept.
    pub(crate) fn subring_part(ring: &Ring, mu: &Poly, stride: usize) -> Poly {
        let mut coeffs = vec![0u64; ring.degree()];
        ring.to_u64(mu, &mut coeffs).expect("coeffs");
        for (i, c) in coeffs.iter_mut().enumerate() {
            if i % stride != 0 {
                *c = 0;
            }
        }
        ring.poly_from_u64(&coeffs).expect("poly")
    }

    /// A fresh large-ring encryption of a random plaintext mod 16, projected: the phase is the
    /// subring part of `Δ·m` exactly up to the error, and decrypts to `m` at the multiples of 4
    /// and 0 elsewhere.
    #[test]
    fn projection_keeps_the_subring_coefficients() {
        let mut rng = ChaCha20Rng::seed_from_u64(50);
        let p = 16;
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let gadget = ring.gadget(7, 20).expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        let keys =
            ProjectionKeys::generate(&params, &sk, SMALL_DEGREE, &gadget, &mut rng).expect("keys");
        assert_eq!(keys.stride(), LARGE_DEGREE / SMALL_DEGREE);
        let mut scratch = keys.scratch(&params).expect("scratch");
        for _ in 0..2 {
            let msg: Vec<u32> = (0..LARGE_DEGREE)
                .map(|_| rng.next_u32() % p as u32)
                .collect();
            let mut ct = params.encrypt(&sk, &msg, p, &mut rng).expect("encrypt");
            let start = std::time::Instant::now();
            project(&params, &keys, &mut ct, &mut scratch).expect("project");
            let elapsed = start.elapsed();

            let mut plain = vec![0u32; LARGE_DEGREE];
            params.decrypt(&sk, &ct, p, &mut plain).expect("decrypt");
            for (i, (&got, &m)) in plain.iter().zip(&msg).enumerate() {
                assert_eq!(got, if i % 4 == 0 { m } else { 0 }, "coefficient {i}");
            }
            let mut mu = ring.zero();
            ring.scale_plaintext(&msg, p, &mut mu).expect("scale");
            let expected = subring_part(ring, &mu, keys.stride());
            let noise = params.noise(&sk, &ct, &expected).expect("noise");
            println!(
                "projection d1=2048 -> subring of degree 512, gadget z=7 t=20 from a fresh \
                 ciphertext: max |e| = {noise} (2^{:.1}), bound 2^{:.1}, margin {:.1} bits, \
                 {elapsed:?}, keys {} bytes",
                (noise as f64).log2(),
                (params.decryption_bound(p) as f64).log2(),
                params.margin_bits(noise, p),
                keys.wire_bytes(&params)
            );
            // Two key switches at about 2^11 each on an error of 9.9: far below 2^51.
            assert!(params.margin_bits(noise, p) > 35.0);
        }
    }

    #[test]
    fn bad_subring_degrees_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(51);
        let params = RlweParams::respire_large().expect("params");
        let gadget = params.ring().gadget(7, 20).expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        for bad in [0, 3, 4096] {
            assert!(ProjectionKeys::generate(&params, &sk, bad, &gadget, &mut rng).is_err());
        }
        let whole =
            ProjectionKeys::generate(&params, &sk, LARGE_DEGREE, &gadget, &mut rng).expect("keys");
        assert!(whole.scratch(&params).is_err());
        assert_eq!(inverse_power_of_two(4, 17) * 4 % 17, 1);
    }
}
