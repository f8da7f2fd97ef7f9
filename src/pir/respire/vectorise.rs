//! Vectorisation: Respire's "scalar to vector" conversion (Burton, Menon, Wu, CCS 2024; the
//! reference code's `vectorize_setup` and `scal_to_vec`, `src/pir/respire.rs`), which key
//! switches `n_vec` scalar RLWE ciphertexts under the large-ring secret `s` into one vector
//! (matrix Regev) ciphertext `(c_r, c_m[0..n_vec])` with a shared mask `c_r` under a vector
//! secret `s_vec` whose entries are discrete Gaussians of width 9.9 (Tables 3-5: error and
//! secret width 9.9, gadget `z = 258794687, t = 2`).
//!
//! The single-query parameter set has `n_vec = 1`: the vector ciphertext is one ciphertext
//! under `s_vec[0]`, and the key is one gadget key switch from `s` to `s_vec[0]`
//! ([`SwitchingKey`]): rows `(α_j, α_j·s_vec + ε_j - z^j·s)`, so that
//! `(Σ d_j·α_j, c_1 + Σ d_j·β_j)` for the digits `d_j` of `c_0` has phase
//! `μ + e + Σ d_j·ε_j` under `s_vec` (the reference's `scal_to_vec` with one slot). The
//! compression key (`compress.rs`) is made from `s_vec`, not `s`. Vectors of more than one
//! slot (the batch parameter sets, `n_vec = 8`) are not implemented here.

use rand::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::super::PirError;
use super::keyswitch::{SwitchScratch, SwitchingKey};
use super::ring::{Gadget, NttPoly, Poly, Ring, RingElement};
use super::rlwe::{
    Ciphertext, DiscreteGaussian, RlweParams, SecretDistribution, SecretKey, LARGE_ERROR_WIDTH,
};

/// The width of the vector secret and of the vectorisation key's error (Respire Tables 3-5;
/// the reference's `SECRET_WIDTH_VEC_MILLIONTHS` and `ERROR_WIDTH_VEC_MILLIONTHS`, 9.9).
pub const VECTOR_WIDTH: f64 = LARGE_ERROR_WIDTH;

/// The large ring with the vector secret's distributions (secret and error of width 9.9).
pub fn vector_params() -> Result<RlweParams, PirError> {
    let gaussian = DiscreteGaussian::new(VECTOR_WIDTH)?;
    Ok(RlweParams::new(
        Ring::large()?,
        SecretDistribution::Gaussian(gaussian.clone()),
        gaussian,
    ))
}

/// The key switching `s` to `s_vec` (one slot).
#[derive(Debug, Clone)]
pub struct VectoriseKey {
    key: SwitchingKey,
}

/// Buffers for [`vectorise`].
#[derive(Debug, Clone)]
pub struct VectoriseScratch {
    mask: Poly,
    mask_out: NttPoly,
    switch: SwitchScratch,
}

impl VectoriseKey {
    /// Resident bytes of the key.
    pub fn memory_bytes(&self) -> usize {
        self.key.memory_bytes()
    }
}

impl VectoriseKey {
    /// The key from `s` (a secret of the large ring) to `s_vec` (from [`vector_params`]),
    /// with the vectorisation gadget of the large ring and `vector`'s error.
    pub fn generate<R: RngCore + CryptoRng>(
        vector: &RlweParams,
        s: &SecretKey,
        s_vec: &SecretKey,
        gadget: &Gadget,
        rng: &mut R,
    ) -> Result<VectoriseKey, PirError> {
        let mut from = vector.ring().poly_from_i64(s.coeffs())?;
        let key = SwitchingKey::generate(vector, s_vec, &from, gadget, rng);
        from.words_mut().zeroize();
        Ok(VectoriseKey { key: key? })
    }

    /// The key made of a parsed switching key.
    pub(crate) fn from_switching_key(key: SwitchingKey) -> VectoriseKey {
        VectoriseKey { key }
    }

    /// The switching key from `s` to `s_vec`.
    pub(crate) fn switching_key(&self) -> &SwitchingKey {
        &self.key
    }

    /// Buffers for [`vectorise`] in the large ring.
    pub fn scratch(&self, ring: &Ring) -> VectoriseScratch {
        VectoriseScratch {
            mask: ring.zero(),
            mask_out: ring.zero_ntt(),
            switch: self.key.scratch(ring),
        }
    }

    /// Bytes of the key with seeded masks (see [`SwitchingKey::wire_bytes`]).
    pub fn wire_bytes(&self, ring: &Ring) -> usize {
        self.key.wire_bytes(ring)
    }
}

/// `ct ← ` the same plaintext under `s_vec` instead of `s`, in place. Allocation-free given
/// `scratch`.
pub fn vectorise(
    ring: &Ring,
    key: &VectoriseKey,
    ct: &mut Ciphertext,
    scratch: &mut VectoriseScratch,
) -> Result<(), PirError> {
    ring.inverse(&ct.a, &mut scratch.mask)?;
    key.key.apply(
        ring,
        &scratch.mask,
        &mut scratch.switch,
        &mut scratch.mask_out,
        &mut ct.b,
    )?;
    std::mem::swap(&mut ct.a, &mut scratch.mask_out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pir::respire::project::{project, tests::subring_part, ProjectionKeys};
    use crate::pir::respire::ring::{LARGE_DEGREE, SMALL_DEGREE};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// Projection then vectorisation of a fresh large-ring encryption: the result decrypts
    /// under `s_vec` to the subring part of the plaintext, with the measured margin.
    #[test]
    fn vectorised_ciphertexts_decrypt_under_the_vector_secret() {
        let mut rng = ChaCha20Rng::seed_from_u64(60);
        let p = 16;
        let large = RlweParams::respire_large().expect("large");
        let vector = vector_params().expect("vector");
        let ring = large.ring();
        let s = large.keygen(&mut rng).expect("keygen");
        let s_vec = vector.keygen(&mut rng).expect("keygen");
        let vec_gadget = ring.gadget(258794687, 2).expect("gadget");
        let key = VectoriseKey::generate(&vector, &s, &s_vec, &vec_gadget, &mut rng).expect("key");
        let proj_gadget = ring.gadget(7, 20).expect("gadget");
        let proj = ProjectionKeys::generate(&large, &s, SMALL_DEGREE, &proj_gadget, &mut rng)
            .expect("keys");
        let mut proj_scratch = proj.scratch(&large).expect("scratch");
        let mut scratch = key.scratch(ring);

        let msg: Vec<u32> = (0..LARGE_DEGREE)
            .map(|_| rng.next_u32() % p as u32)
            .collect();
        let mut mu = ring.zero();
        ring.scale_plaintext(&msg, p, &mut mu).expect("scale");
        let expected = subring_part(ring, &mu, proj.stride());

        // Vectorisation alone, on a fresh ciphertext.
        let mut ct = large.encrypt(&s, &msg, p, &mut rng).expect("encrypt");
        vectorise(ring, &key, &mut ct, &mut scratch).expect("vectorise");
        let mut plain = vec![0u32; LARGE_DEGREE];
        vector.decrypt(&s_vec, &ct, p, &mut plain).expect("decrypt");
        assert_eq!(plain, msg);
        let noise = vector.noise(&s_vec, &ct, &mu).expect("noise");
        println!(
            "vectorisation (z=258794687, t=2) of a fresh ciphertext: max |e| = {noise} \
             (2^{:.1}), bound 2^{:.1}, margin {:.1} bits, key {} bytes",
            (noise as f64).log2(),
            (vector.decryption_bound(p) as f64).log2(),
            vector.margin_bits(noise, p),
            key.wire_bytes(ring)
        );
        // Digits up to 2^27 times errors of 9.9 over 2·2048 terms: about 2^36 at most.
        assert!(vector.margin_bits(noise, p) > 10.0);

        // After the projection, as in the response.
        let mut ct = large.encrypt(&s, &msg, p, &mut rng).expect("encrypt");
        project(&large, &proj, &mut ct, &mut proj_scratch).expect("project");
        vectorise(ring, &key, &mut ct, &mut scratch).expect("vectorise");
        vector.decrypt(&s_vec, &ct, p, &mut plain).expect("decrypt");
        for (i, (&got, &m)) in plain.iter().zip(&msg).enumerate() {
            assert_eq!(got, if i % 4 == 0 { m } else { 0 }, "coefficient {i}");
        }
        let noise = vector.noise(&s_vec, &ct, &expected).expect("noise");
        println!(
            "projection then vectorisation: max |e| = {noise} (2^{:.1}), margin {:.1} bits",
            (noise as f64).log2(),
            vector.margin_bits(noise, p)
        );
        assert!(vector.margin_bits(noise, p) > 10.0);
    }
}
