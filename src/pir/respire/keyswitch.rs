//! Gadget key switching from one secret to another of the same ring: the building block of
//! Respire's vectorisation key (large-ring secret `s` to the vector secret) and its compression
//! key (the vector secret mod `q2` to the small ring's secret embedded in the large ring), as
//! the paper's public parameters and the reference code's `vectorize_setup`/`scal_to_vec` and
//! `compress_setup`/`answer_compress_vec` (`src/pir/respire.rs`) build them.
//!
//! With the gadget `g = (1, z, ..., z^(t-1))`, row `j` of a key from `s_from` to `s_to` is an
//! encryption under `s_to` of `-z^j·s_from`: `(α_j, β_j = α_j·s_to + ε_j - z^j·s_from)`. For a
//! ciphertext `(a, b)` with phase `b - a·s_from = μ + e`, and `(d_j)` the signed gadget digits
//! of `a` (`Σ z^j·d_j = a`), the pair `(Σ d_j·α_j, b + Σ d_j·β_j)` has phase
//! `b - a·s_from + Σ d_j·ε_j = μ + e + Σ d_j·ε_j` under `s_to`.

use rand::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::super::PirError;
use super::ring::{Gadget, NttPoly, Poly, Ring, RingElement};
use super::rlwe::{Ciphertext, RlweParams, SecretKey};

/// A key-switching key from `s_from` to `s_to` (see the module doc), rows in NTT form.
#[derive(Debug, Clone)]
pub struct SwitchingKey {
    gadget: Gadget,
    rows: Vec<Ciphertext>,
    /// Row `j`'s `α_j` is expanded from `seeds[j]` ([`RlweParams::expand`]), so the key can be
    /// sent as seeds and bodies ([`super::wire`]).
    seeds: Vec<[u8; 32]>,
}

/// Buffers for [`SwitchingKey::apply`], allocated once per ring and gadget.
#[derive(Debug, Clone)]
pub struct SwitchScratch {
    digits: Vec<Poly>,
    digit_ntt: NttPoly,
}

impl SwitchScratch {
    /// Buffers for applying any key of `gadget` in `ring`.
    pub fn new(ring: &Ring, gadget: &Gadget) -> SwitchScratch {
        SwitchScratch {
            digits: vec![ring.zero(); gadget.digits()],
            digit_ntt: ring.zero_ntt(),
        }
    }
}

/// Bits of one residue mod `q` on the wire: `ceil(log2 q)`.
pub fn residue_bits(q: u64) -> u32 {
    u64::BITS - q.saturating_sub(1).leading_zeros()
}

impl SwitchingKey {
    /// Resident bytes of the rows (both parts, NTT form).
    pub fn memory_bytes(&self) -> usize {
        self.rows.iter().map(Ciphertext::memory_bytes).sum()
    }

    /// The key from the secret whose coefficient form (in `params`' ring) is `from` to the
    /// secret `to`, with the error of `params` and `gadget` (which must be a gadget of
    /// `params`' ring).
    pub fn generate<R: RngCore + CryptoRng>(
        params: &RlweParams,
        to: &SecretKey,
        from: &Poly,
        gadget: &Gadget,
        rng: &mut R,
    ) -> Result<SwitchingKey, PirError> {
        let ring = params.ring();
        let mut rows = Vec::with_capacity(gadget.digits());
        let mut seeds = Vec::with_capacity(gadget.digits());
        for j in 0..gadget.digits() {
            // -z^j·s_from, encrypted under s_to.
            let mut mu = from.clone();
            ring.scalar_mul_assign(&mut mu, gadget.power(j))?;
            ring.neg_assign(&mut mu)?;
            let row = params.encrypt_poly_seeded(to, &mu, rng);
            mu.words_mut().zeroize();
            let row = row?;
            seeds.push(row.seed);
            rows.push(params.expand(&row)?);
        }
        Ok(SwitchingKey {
            gadget: gadget.clone(),
            rows,
            seeds,
        })
    }

    /// A key from parsed rows (`rows[j]`'s mask expanded from `seeds[j]`): one row and one
    /// seed per gadget digit, else [`PirError::Length`].
    pub(crate) fn from_rows(
        gadget: Gadget,
        rows: Vec<Ciphertext>,
        seeds: Vec<[u8; 32]>,
    ) -> Result<SwitchingKey, PirError> {
        for got in [rows.len(), seeds.len()] {
            if got != gadget.digits() {
                return Err(PirError::Length {
                    what: "switching key rows",
                    expected: gadget.digits(),
                    got,
                });
            }
        }
        Ok(SwitchingKey {
            gadget,
            rows,
            seeds,
        })
    }

    /// The rows `(α_j, β_j)`, NTT form.
    pub(crate) fn rows(&self) -> &[Ciphertext] {
        &self.rows
    }

    /// The seeds of the rows' masks.
    pub(crate) fn seeds(&self) -> &[[u8; 32]] {
        &self.seeds
    }

    /// The gadget the key was made for.
    pub fn gadget(&self) -> &Gadget {
        &self.gadget
    }

    /// Buffers for [`SwitchingKey::apply`] in `ring`.
    pub fn scratch(&self, ring: &Ring) -> SwitchScratch {
        SwitchScratch::new(ring, &self.gadget)
    }

    /// `mask_out ← Σ d_j·α_j` and `body_acc ← body_acc + Σ d_j·β_j`, with `(d_j)` the gadget
    /// digits of `mask` (coefficient form). Given `body_acc = b` on entry, a ciphertext
    /// `(mask, b)` under `s_from` leaves as `(mask_out, body_acc)` under `s_to` (module doc).
    /// Allocation-free given `scratch`.
    pub fn apply(
        &self,
        ring: &Ring,
        mask: &Poly,
        scratch: &mut SwitchScratch,
        mask_out: &mut NttPoly,
        body_acc: &mut NttPoly,
    ) -> Result<(), PirError> {
        ring.decompose(mask, &self.gadget, &mut scratch.digits)?;
        mask_out.words_mut().fill(0);
        for (digit, row) in scratch.digits.iter().zip(&self.rows) {
            ring.forward(digit, &mut scratch.digit_ntt)?;
            ring.mul_acc(mask_out, &scratch.digit_ntt, &row.a)?;
            ring.mul_acc(body_acc, &scratch.digit_ntt, &row.b)?;
        }
        Ok(())
    }

    /// Bytes of the key sent with seeded masks (a 32-byte ChaCha20 seed per row for `α_j`, as
    /// [`RlweParams::expand`] derives it, and `β_j` at `ceil(log2 q)` bits per coefficient):
    /// how the paper counts public parameters.
    pub fn wire_bytes(&self, ring: &Ring) -> usize {
        let element = (ring.degree() * residue_bits(ring.modulus()) as usize).div_ceil(8);
        self.rows.len() * (32 + element)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// Switch a ciphertext from one fresh secret to another, in both of Respire's rings, and
    /// check the phase against the plaintext exactly.
    #[test]
    fn switched_ciphertexts_decrypt_under_the_target_secret() {
        let mut rng = ChaCha20Rng::seed_from_u64(40);
        let p = 16;
        for (params, z, t) in [
            (RlweParams::respire_large().expect("large"), 258794687, 2),
            (RlweParams::respire_small().expect("small"), 2, 24),
        ] {
            let ring = params.ring();
            let d = ring.degree();
            let gadget = ring.gadget(z, t).expect("gadget");
            let from = params.keygen(&mut rng).expect("keygen");
            let to = params.keygen(&mut rng).expect("keygen");
            let from_poly = ring.poly_from_i64(from.coeffs()).expect("poly");
            let key =
                SwitchingKey::generate(&params, &to, &from_poly, &gadget, &mut rng).expect("key");
            let msg: Vec<u32> = (0..d).map(|_| rng.next_u32() % p as u32).collect();
            let ct = params.encrypt(&from, &msg, p, &mut rng).expect("encrypt");
            let mut mask = ring.zero();
            ring.inverse(&ct.a, &mut mask).expect("inverse");
            let mut out = ct.clone();
            let mut scratch = key.scratch(ring);
            key.apply(ring, &mask, &mut scratch, &mut out.a, &mut out.b)
                .expect("switch");
            let mut plain = vec![0u32; d];
            params.decrypt(&to, &out, p, &mut plain).expect("decrypt");
            assert_eq!(plain, msg, "d={d}");
            let mut mu = ring.zero();
            ring.scale_plaintext(&msg, p, &mut mu).expect("scale");
            let noise = params.noise(&to, &out, &mu).expect("noise");
            println!(
                "key switch d={d} z={z} t={t}: max |e| = {noise} (2^{:.1}), margin {:.1} bits, \
                 key {} bytes",
                (noise as f64).log2(),
                params.margin_bits(noise, p),
                key.wire_bytes(ring)
            );
            assert!(noise < params.decryption_bound(p));
        }
    }

    #[test]
    fn mismatched_buffers_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(41);
        let params = RlweParams::respire_small().expect("small");
        let ring = params.ring();
        let sk = params.keygen(&mut rng).expect("keygen");
        let g = ring.gadget(2, 24).expect("gadget");
        let large = Ring::large().expect("large");
        assert!(matches!(
            SwitchingKey::generate(&params, &sk, &large.zero(), &g, &mut rng),
            Err(PirError::Length { .. })
        ));
        let from = ring.poly_from_i64(sk.coeffs()).expect("poly");
        let key = SwitchingKey::generate(&params, &sk, &from, &g, &mut rng).expect("key");
        let mut scratch = key.scratch(&large);
        let (mut a, mut b) = (ring.zero_ntt(), ring.zero_ntt());
        assert!(key
            .apply(ring, &ring.zero(), &mut scratch, &mut a, &mut b)
            .is_err());
        assert_eq!(residue_bits(16760833), 24);
        assert_eq!(residue_bits(268369921 * 249561089), 56);
        assert_eq!(residue_bits(256), 8);
    }
}
