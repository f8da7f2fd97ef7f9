//! RLWE encryption over Respire's rings: secret and error distributions, encryption with a
//! seeded `a` part, decryption to `Z_p`, homomorphic addition and plaintext products,
//! automorphisms of ciphertexts with gadget key switching, and noise measurement.
//!
//! A ciphertext of `μ ∈ R_q` under the secret `s` is `(a, b)` with `b = a·s + e + μ`, so
//! that the phase `b - a·s = μ + e` (the Regev encryption of Spiral's and Respire's
//! preliminaries, with the secret vector `(-s, 1)`). A message `m` mod `p` is encoded as `μ = Δ·m`, `Δ = floor(q/p)`, and
//! decrypted by rounding `p·(μ + e)/q` (Regev's encoding). Both parts are kept in NTT form,
//! the form every server-side product uses.
//!
//! Key switching for `τ_k: x -> x^k` (the automorphism key switching of Spiral and Respire):
//! `(τ(a), τ(b))` decrypts under `τ(s)`; with a key of rows
//! `(α_j, β_j = α_j·s + ε_j - z^j·τ(s))` for the gadget `(1, z, ..., z^(t-1))`, and
//! `g^-1(τ(a)) = (d_0, ..., d_(t-1))` the signed digits, the ciphertext
//! `(Σ d_j·α_j, τ(b) + Σ d_j·β_j)` has phase `τ(μ + e) + Σ d_j·ε_j` under `s`.

use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroize;

use super::super::PirError;
use super::keyswitch::{SwitchScratch, SwitchingKey};
use super::ring::{Gadget, NttPoly, Poly, Ring, RingElement};

/// `s` of Respire's large-ring error distribution (Respire Tables 3-5; reference code
/// `ERROR_WIDTH_MILLIONTHS = 9_900_000`).
pub const LARGE_ERROR_WIDTH: f64 = 9.9;
/// The large ring's secret is uniform on `[-7, 7]` (Respire Tables 3-5; `SECRET_BOUND = 7`).
/// The reference code draws `gen_range(-7..7)`, which excludes 7; the closed range is the
/// stated distribution and is symmetric, so it is the one used here.
pub const LARGE_SECRET_BOUND: u32 = 7;
/// `s` of the small ring's secret and error (Respire Tables 3-5; `WIDTH_COMPRESS_MILLIONTHS`).
pub const SMALL_WIDTH: f64 = 253.6;

/// The table reaches this many standard deviations: the mass beyond `12σ` is below
/// `exp(-72) ≈ 2^-104`, far under the table's `2^-63` resolution.
const TAIL_STD_DEVS: f64 = 12.0;
/// Widths above this would make the table (one word per magnitude) unreasonably large.
const MAX_WIDTH: f64 = 1.0e5;

/// The discrete Gaussian `D_{Z,s}`, `Pr[x] ∝ ρ_s(x) = exp(-π x² / s²)` (the width convention
/// of Spiral and Respire; standard deviation about `s / √(2π)`), cut at `12` standard
/// deviations.
///
/// Sampled by inversion of a cumulative distribution table (CDT) of the magnitude with a
/// separate sign bit, scanning the whole table for every sample so that the time does not
/// depend on the output: the constant-time CDT sampler of Bos et al., "Frodo: Take off the
/// ring!", ACM CCS 2016 (inversion sampling over a precomputed table, C. Peikert,
/// "An efficient and parallel Gaussian sampler for lattices", CRYPTO 2010). Table entries are
/// 63-bit fixed point, computed in `f64`, so each probability is within about `2^-53`
/// relative error of the exact one.
#[derive(Debug, Clone)]
pub struct DiscreteGaussian {
    width: f64,
    std_dev: f64,
    /// `cdt[k] = round(2^63 · Pr[|x| <= k])` for `k < bound`; `Pr[|x| <= bound] = 1`.
    cdt: Vec<u64>,
}

impl DiscreteGaussian {
    /// The distribution of width `s` (`0 < s <= 10^5`).
    pub fn new(width: f64) -> Result<DiscreteGaussian, PirError> {
        if !(width > 0.0 && width <= MAX_WIDTH) {
            return Err(PirError::Param(format!(
                "discrete Gaussian width {width} outside (0, {MAX_WIDTH}]"
            )));
        }
        let sigma = width / (2.0 * std::f64::consts::PI).sqrt();
        let bound = (TAIL_STD_DEVS * sigma).ceil().max(1.0) as usize;
        // Weight of each magnitude: ρ(0) for 0, 2ρ(k) for ±k.
        let weights: Vec<f64> = (0..=bound)
            .map(|k| {
                let k = k as f64;
                let rho = (-std::f64::consts::PI * k * k / (width * width)).exp();
                if k == 0.0 {
                    rho
                } else {
                    2.0 * rho
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let variance: f64 = weights
            .iter()
            .enumerate()
            .map(|(k, w)| (k * k) as f64 * w / total)
            .sum();
        let scale = (1u64 << 63) as f64;
        let mut cumulative = 0.0;
        let cdt = weights[..bound]
            .iter()
            .map(|w| {
                cumulative += w / total;
                (cumulative * scale).round().min(scale) as u64
            })
            .collect();
        Ok(DiscreteGaussian {
            width,
            std_dev: variance.sqrt(),
            cdt,
        })
    }

    /// The width `s`.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// The standard deviation of the tabulated distribution.
    pub fn std_dev(&self) -> f64 {
        self.std_dev
    }

    /// The largest magnitude the sampler returns.
    pub fn tail_bound(&self) -> u64 {
        self.cdt.len() as u64
    }

    /// One sample, in time independent of its value.
    pub fn sample<R: RngCore + CryptoRng>(&self, rng: &mut R) -> i64 {
        let r = rng.next_u64();
        let negative = r & 1;
        let u = r >> 1;
        let mut magnitude = 0u64;
        for &entry in &self.cdt {
            // Both are below 2^63, so the borrow bit is exactly u < entry.
            magnitude += 1 ^ (u.wrapping_sub(entry) >> 63);
        }
        let mask = negative.wrapping_neg();
        ((magnitude ^ mask).wrapping_add(negative)) as i64
    }
}

/// How secret coefficients are drawn.
#[derive(Debug, Clone)]
pub enum SecretDistribution {
    /// Uniform on `[-bound, bound]`.
    Uniform { bound: u32 },
    /// A discrete Gaussian.
    Gaussian(DiscreteGaussian),
}

impl SecretDistribution {
    fn sample<R: RngCore + CryptoRng>(&self, rng: &mut R) -> i64 {
        match self {
            SecretDistribution::Uniform { bound } => {
                // Multiply-high maps a 64-bit word onto 2·bound + 1 values without a
                // data-dependent branch; the bias is below (2·bound + 1) / 2^64.
                let range = 2 * u128::from(*bound) + 1;
                let index = (u128::from(rng.next_u64()) * range) >> 64;
                index as i64 - i64::from(*bound)
            }
            SecretDistribution::Gaussian(g) => g.sample(rng),
        }
    }
}

/// An RLWE secret key `s`, in coefficient and NTT form. Wiped on drop.
pub struct SecretKey {
    coeffs: Vec<i64>,
    ntt: NttPoly,
}

impl SecretKey {
    /// The coefficients of `s` (small integers).
    pub fn coeffs(&self) -> &[i64] {
        &self.coeffs
    }

    /// `s` in NTT form.
    pub fn ntt(&self) -> &NttPoly {
        &self.ntt
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.coeffs.zeroize();
        self.ntt.words_mut().zeroize();
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// `(a, b)` with `b = a·s + e + μ`, both in NTT form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext {
    pub a: NttPoly,
    pub b: NttPoly,
}

impl Ciphertext {
    /// Resident bytes of both parts.
    pub fn memory_bytes(&self) -> usize {
        (self.a.words().len() + self.b.words().len()) * std::mem::size_of::<u32>()
    }
}

/// A ciphertext whose `a` is given by a 32-byte seed (expanded with [`RlweParams::expand`]),
/// as Respire sends its query ciphertexts: half the size of a [`Ciphertext`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededCiphertext {
    pub seed: [u8; 32],
    pub b: NttPoly,
}

/// A key-switching key from `τ_k(s)` to `s`, for applying `τ_k` to ciphertexts.
#[derive(Debug, Clone)]
pub struct AutomorphismKey {
    power: usize,
    /// The switching key from `τ_k(s)` to `s`.
    switch: SwitchingKey,
}

impl AutomorphismKey {
    /// Resident bytes of the key's rows.
    pub fn memory_bytes(&self) -> usize {
        self.switch.memory_bytes()
    }

    /// The `k` of `x -> x^k`.
    pub fn power(&self) -> usize {
        self.power
    }

    /// The gadget the key was made for.
    pub fn gadget(&self) -> &Gadget {
        self.switch.gadget()
    }

    /// The key for `x -> x^power` made of a parsed switching key (from `τ_power(s)` to `s`).
    pub(crate) fn from_switching_key(power: usize, switch: SwitchingKey) -> AutomorphismKey {
        AutomorphismKey { power, switch }
    }

    /// The switching key from `τ_k(s)` to `s`.
    pub(crate) fn switching_key(&self) -> &SwitchingKey {
        &self.switch
    }
}

/// Buffers for [`RlweParams::apply_automorphism`], allocated once per ring and gadget.
#[derive(Debug, Clone)]
pub struct KeySwitchScratch {
    permuted: NttPoly,
    coeffs: Poly,
    switch: SwitchScratch,
}

/// A ring with its secret and error distributions.
#[derive(Debug, Clone)]
pub struct RlweParams {
    ring: Ring,
    secret: SecretDistribution,
    error: DiscreteGaussian,
}

impl RlweParams {
    /// Any ring and distributions.
    pub fn new(ring: Ring, secret: SecretDistribution, error: DiscreteGaussian) -> RlweParams {
        RlweParams {
            ring,
            secret,
            error,
        }
    }

    /// Respire's large ring: secret uniform on `[-7, 7]`, error of width 9.9.
    pub fn respire_large() -> Result<RlweParams, PirError> {
        Ok(RlweParams::new(
            Ring::large()?,
            SecretDistribution::Uniform {
                bound: LARGE_SECRET_BOUND,
            },
            DiscreteGaussian::new(LARGE_ERROR_WIDTH)?,
        ))
    }

    /// Respire's small ring: secret and error of width 253.6.
    pub fn respire_small() -> Result<RlweParams, PirError> {
        let gaussian = DiscreteGaussian::new(SMALL_WIDTH)?;
        Ok(RlweParams::new(
            Ring::small()?,
            SecretDistribution::Gaussian(gaussian.clone()),
            gaussian,
        ))
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn error(&self) -> &DiscreteGaussian {
        &self.error
    }

    /// A fresh secret key.
    pub fn keygen<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Result<SecretKey, PirError> {
        let coeffs: Vec<i64> = (0..self.ring.degree())
            .map(|_| self.secret.sample(rng))
            .collect();
        let poly = self.ring.poly_from_i64(&coeffs)?;
        let ntt = self.ring.into_ntt(poly)?;
        Ok(SecretKey { coeffs, ntt })
    }

    /// The secret with the given small coefficients, in this ring (for a key switched to a
    /// secret of another ring or modulus: Respire's compression key targets the small ring's
    /// secret embedded in the large ring). `d` coefficients, else [`PirError::Length`].
    pub fn secret_from_coeffs(&self, coeffs: &[i64]) -> Result<SecretKey, PirError> {
        let poly = self.ring.poly_from_i64(coeffs)?;
        let ntt = self.ring.into_ntt(poly)?;
        Ok(SecretKey {
            coeffs: coeffs.to_vec(),
            ntt,
        })
    }

    /// `out ← e` with coefficients from the error distribution, NTT form.
    fn sample_error<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        scratch: &mut Poly,
        out: &mut NttPoly,
    ) -> Result<(), PirError> {
        self.ring.fill_signed(scratch, || self.error.sample(rng))?;
        self.ring.forward(scratch, out)
    }

    /// `out ← a`, uniform in NTT form, from ChaCha20 keyed with `seed` (`rand_chacha`'s
    /// `ChaCha20Rng::from_seed`). Limb by limb, slot by slot in NTT order: a 32-bit word
    /// masked to the prime's bit length, drawn again while it is not below the prime
    /// (rejection sampling on public data). Uniform NTT values are a uniform polynomial, so
    /// no transform is needed; the order is part of the seeded format.
    fn expand_seed(&self, seed: &[u8; 32], out: &mut NttPoly) {
        let mut rng = ChaCha20Rng::from_seed(*seed);
        let d = self.ring.degree();
        for (l, q) in self.ring.limb_moduli().enumerate() {
            let mask = u32::MAX >> q.leading_zeros();
            for slot in &mut out.words_mut()[l * d..(l + 1) * d] {
                *slot = loop {
                    let x = rng.next_u32() & mask;
                    if x < q {
                        break x;
                    }
                };
            }
        }
    }

    /// The full ciphertext of a seeded one.
    pub fn expand(&self, ct: &SeededCiphertext) -> Result<Ciphertext, PirError> {
        let mut a = self.ring.zero_ntt();
        if ct.b.words().len() != a.words().len() {
            return Err(PirError::Length {
                what: "seeded ciphertext",
                expected: a.words().len(),
                got: ct.b.words().len(),
            });
        }
        self.expand_seed(&ct.seed, &mut a);
        Ok(Ciphertext { a, b: ct.b.clone() })
    }

    /// Encrypts the ring element `μ` (already scaled as the caller needs) with a seeded `a`.
    pub fn encrypt_poly_seeded<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        mu: &Poly,
        rng: &mut R,
    ) -> Result<SeededCiphertext, PirError> {
        let ring = &self.ring;
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mut a = ring.zero_ntt();
        self.expand_seed(&seed, &mut a);
        let mut b = ring.zero_ntt();
        ring.mul(&mut b, &a, &sk.ntt)?;
        let mut scratch = ring.zero();
        let mut term = ring.zero_ntt();
        self.sample_error(rng, &mut scratch, &mut term)?;
        ring.add_assign(&mut b, &term)?;
        ring.forward(mu, &mut term)?;
        ring.add_assign(&mut b, &term)?;
        Ok(SeededCiphertext { seed, b })
    }

    /// Encrypts the ring element `μ`.
    pub fn encrypt_poly<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        mu: &Poly,
        rng: &mut R,
    ) -> Result<Ciphertext, PirError> {
        let seeded = self.encrypt_poly_seeded(sk, mu, rng)?;
        self.expand(&seeded)
    }

    /// Encrypts `d` residues mod `p` as `Δ·m`.
    pub fn encrypt<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        msg: &[u32],
        p: u64,
        rng: &mut R,
    ) -> Result<Ciphertext, PirError> {
        let mut mu = self.ring.zero();
        self.ring.scale_plaintext(msg, p, &mut mu)?;
        self.encrypt_poly(sk, &mu, rng)
    }

    /// Encrypts `d` residues mod `p` as `Δ·m`, with a seeded `a`.
    pub fn encrypt_seeded<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        msg: &[u32],
        p: u64,
        rng: &mut R,
    ) -> Result<SeededCiphertext, PirError> {
        let mut mu = self.ring.zero();
        self.ring.scale_plaintext(msg, p, &mut mu)?;
        self.encrypt_poly_seeded(sk, &mu, rng)
    }

    pub(crate) fn check_ct(&self, ct: &Ciphertext) -> Result<(), PirError> {
        let expected = self.ring.degree() * self.ring.limbs();
        for part in [&ct.a, &ct.b] {
            if part.words().len() != expected {
                return Err(PirError::Length {
                    what: "ciphertext part",
                    expected,
                    got: part.words().len(),
                });
            }
        }
        Ok(())
    }

    /// `out ← b - a·s = μ + e`, coefficient form.
    pub fn phase(&self, sk: &SecretKey, ct: &Ciphertext, out: &mut Poly) -> Result<(), PirError> {
        self.check_ct(ct)?;
        let ring = &self.ring;
        let mut as_ntt = ring.zero_ntt();
        ring.mul(&mut as_ntt, &ct.a, &sk.ntt)?;
        let mut phase = ct.b.clone();
        ring.sub_assign(&mut phase, &as_ntt)?;
        ring.inverse(&phase, out)
    }

    /// `out ← round(p·(b - a·s)/q) mod p`, the plaintext mod `p`.
    pub fn decrypt(
        &self,
        sk: &SecretKey,
        ct: &Ciphertext,
        p: u64,
        out: &mut [u32],
    ) -> Result<(), PirError> {
        if !(2..=u64::from(u32::MAX)).contains(&p) {
            return Err(PirError::Param(format!(
                "plaintext modulus {p} outside 2..2^32"
            )));
        }
        let mut phase = self.ring.zero();
        self.phase(sk, ct, &mut phase)?;
        let mut rounded = vec![0u64; self.ring.degree()];
        if out.len() != rounded.len() {
            return Err(PirError::Length {
                what: "plaintext buffer",
                expected: rounded.len(),
                got: out.len(),
            });
        }
        self.ring.round_to(&phase, p, &mut rounded)?;
        for (o, r) in out.iter_mut().zip(&rounded) {
            // round_to returns residues below p <= 2^32 - 1.
            *o = *r as u32;
        }
        rounded.zeroize();
        phase.words_mut().zeroize();
        Ok(())
    }

    /// `ct ← ct + other` (phase `μ + μ'`, errors add).
    pub fn add_assign(&self, ct: &mut Ciphertext, other: &Ciphertext) -> Result<(), PirError> {
        self.check_ct(ct)?;
        self.check_ct(other)?;
        self.ring.add_assign(&mut ct.a, &other.a)?;
        self.ring.add_assign(&mut ct.b, &other.b)
    }

    /// `ct ← ct - other`.
    pub fn sub_assign(&self, ct: &mut Ciphertext, other: &Ciphertext) -> Result<(), PirError> {
        self.check_ct(ct)?;
        self.check_ct(other)?;
        self.ring.sub_assign(&mut ct.a, &other.a)?;
        self.ring.sub_assign(&mut ct.b, &other.b)
    }

    /// `ct ← pt·ct` for a plaintext ring element in NTT form: phase `pt·μ + pt·e`.
    pub fn mul_plain_assign(&self, ct: &mut Ciphertext, pt: &NttPoly) -> Result<(), PirError> {
        self.check_ct(ct)?;
        self.ring.mul_assign(&mut ct.a, pt)?;
        self.ring.mul_assign(&mut ct.b, pt)
    }

    /// The key switching `τ_k(s)` to `s` under `gadget`: row `j` is a fresh encryption, under
    /// `s`, of `-z^j·τ_k(s)` (see the module doc). Fails for even `k`.
    pub fn automorphism_key<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        k: usize,
        gadget: &Gadget,
        rng: &mut R,
    ) -> Result<AutomorphismKey, PirError> {
        let ring = &self.ring;
        let mut tau_s = ring.zero_ntt();
        ring.automorphism_ntt(&sk.ntt, k, &mut tau_s)?;
        let mut from = ring.zero();
        let switch = ring
            .inverse(&tau_s, &mut from)
            .and_then(|()| SwitchingKey::generate(self, sk, &from, gadget, rng));
        tau_s.words_mut().zeroize();
        from.words_mut().zeroize();
        Ok(AutomorphismKey {
            power: k,
            switch: switch?,
        })
    }

    /// Buffers for key switching under `gadget`.
    pub fn key_switch_scratch(&self, gadget: &Gadget) -> KeySwitchScratch {
        KeySwitchScratch {
            permuted: self.ring.zero_ntt(),
            coeffs: self.ring.zero(),
            switch: SwitchScratch::new(&self.ring, gadget),
        }
    }

    /// `out ← τ_k(ct)` switched back to `s` with `key`: phase `τ_k(μ + e) + Σ d_j·ε_j`.
    /// Allocation-free given `scratch` (from [`RlweParams::key_switch_scratch`] for the key's
    /// gadget).
    pub fn apply_automorphism(
        &self,
        ct: &Ciphertext,
        key: &AutomorphismKey,
        scratch: &mut KeySwitchScratch,
        out: &mut Ciphertext,
    ) -> Result<(), PirError> {
        self.check_ct(ct)?;
        self.check_ct(out)?;
        let ring = &self.ring;
        let k = key.power;
        ring.automorphism_ntt(&ct.a, k, &mut scratch.permuted)?;
        ring.inverse(&scratch.permuted, &mut scratch.coeffs)?;
        ring.automorphism_ntt(&ct.b, k, &mut out.b)?;
        // A scratch made for another gadget is refused by the decomposition (a typed error).
        key.switch.apply(
            ring,
            &scratch.coeffs,
            &mut scratch.switch,
            &mut out.a,
            &mut out.b,
        )
    }

    /// The largest `|e|` of `ct`'s error against the expected `μ`: `max |b - a·s - μ|` over
    /// the centred coefficients (for tests, and to print the margin of a parameter set).
    pub fn noise(&self, sk: &SecretKey, ct: &Ciphertext, mu: &Poly) -> Result<u64, PirError> {
        let mut phase = self.ring.zero();
        self.phase(sk, ct, &mut phase)?;
        self.ring.sub_assign(&mut phase, mu)?;
        self.ring.max_abs(&phase)
    }

    /// An error bound under which decryption mod `p` is correct: with `q = Δ·p + r`, the
    /// rounding of `p·(Δm + e)/q = m + (p·e - r·m)/q` is `m` when `|e| < q/(2p) - r`, and
    /// `r < p`, so `floor(q/(2p)) - p` is safe.
    pub fn decryption_bound(&self, p: u64) -> u64 {
        (self.ring.modulus() / (2 * p.max(1))).saturating_sub(p)
    }

    /// `log2(bound / noise)`: the bits of headroom left for decryption mod `p`.
    pub fn margin_bits(&self, noise: u64, p: u64) -> f64 {
        (self.decryption_bound(p) as f64).log2() - (noise.max(1) as f64).log2()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    fn params() -> [RlweParams; 2] {
        [
            RlweParams::respire_large().expect("large"),
            RlweParams::respire_small().expect("small"),
        ]
    }

    fn random_msg(d: usize, p: u64, rng: &mut ChaCha20Rng) -> Vec<u32> {
        (0..d).map(|_| (rng.next_u64() % p) as u32).collect()
    }

    /// `a·b mod (x^d + 1, p)` by schoolbook.
    fn negacyclic_mod_p(a: &[u32], b: &[i64], p: u64) -> Vec<u32> {
        let d = a.len();
        let p = p as i64;
        let mut c = vec![0i64; d];
        for (i, &x) in a.iter().enumerate() {
            for (j, &y) in b.iter().enumerate() {
                let term = i64::from(x) * y;
                if i + j < d {
                    c[i + j] += term;
                } else {
                    c[i + j - d] -= term;
                }
            }
        }
        c.into_iter().map(|x| x.rem_euclid(p) as u32).collect()
    }

    #[test]
    fn gaussian_sampler_has_the_expected_spread() {
        let mut rng = rng(20);
        for width in [LARGE_ERROR_WIDTH, SMALL_WIDTH, 2.001] {
            let g = DiscreteGaussian::new(width).expect("width");
            let sigma = width / (2.0 * std::f64::consts::PI).sqrt();
            // The table's own deviation is the continuous one for these widths.
            assert!((g.std_dev() - sigma).abs() / sigma < 1e-3, "s={width}");
            let n = 200_000;
            let (mut sum, mut sum_sq, mut max) = (0f64, 0f64, 0u64);
            for _ in 0..n {
                let x = g.sample(&mut rng);
                sum += x as f64;
                sum_sq += (x * x) as f64;
                max = max.max(x.unsigned_abs());
            }
            let mean = sum / n as f64;
            let empirical = (sum_sq / n as f64 - mean * mean).sqrt();
            println!(
                "discrete Gaussian s = {width}: σ expected {sigma:.3}, empirical {empirical:.3} \
                 ({:+.2}%), mean {mean:.4}, max |x| {max} of tail bound {}",
                100.0 * (empirical - sigma) / sigma,
                g.tail_bound()
            );
            assert!((empirical - sigma).abs() / sigma < 0.02, "s={width}");
            assert!(mean.abs() < 0.05 * sigma, "s={width}");
            assert!(max <= g.tail_bound());
        }
        assert!(DiscreteGaussian::new(0.0).is_err());
        assert!(DiscreteGaussian::new(f64::NAN).is_err());
        assert!(DiscreteGaussian::new(1e9).is_err());
    }

    #[test]
    fn uniform_secret_covers_minus_7_to_7() {
        let mut rng = rng(21);
        let secret = SecretDistribution::Uniform { bound: 7 };
        let mut counts = [0u32; 15];
        let n = 150_000;
        for _ in 0..n {
            let x = secret.sample(&mut rng);
            assert!((-7..=7).contains(&x));
            counts[(x + 7) as usize] += 1;
        }
        // Each value has probability 1/15: 10,000 expected, standard deviation about 97.
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn encrypt_decrypt_round_trips() {
        let mut rng = rng(22);
        for params in params() {
            let ring = params.ring();
            let d = ring.degree();
            let sk = params.keygen(&mut rng).expect("keygen");
            for p in [2u64, 16, 256] {
                for _ in 0..3 {
                    let msg = random_msg(d, p, &mut rng);
                    let ct = params.encrypt(&sk, &msg, p, &mut rng).expect("encrypt");
                    let mut out = vec![0u32; d];
                    params.decrypt(&sk, &ct, p, &mut out).expect("decrypt");
                    assert_eq!(out, msg, "d={d} p={p}");
                    // A fresh ciphertext's error is one sample per coefficient.
                    let mut mu = ring.zero();
                    ring.scale_plaintext(&msg, p, &mut mu).expect("scale");
                    let noise = params.noise(&sk, &ct, &mu).expect("noise");
                    assert!(noise <= params.error().tail_bound());
                }
            }
            // Seeded: the seed and b are all that is sent; expanding twice is deterministic.
            let msg = random_msg(d, 16, &mut rng);
            let seeded = params
                .encrypt_seeded(&sk, &msg, 16, &mut rng)
                .expect("encrypt");
            let ct = params.expand(&seeded).expect("expand");
            assert_eq!(params.expand(&seeded).expect("expand"), ct);
            let mut out = vec![0u32; d];
            params.decrypt(&sk, &ct, 16, &mut out).expect("decrypt");
            assert_eq!(out, msg);
        }
    }

    #[test]
    fn secrets_follow_their_distributions() {
        let mut rng = rng(23);
        let [large, small] = params();
        let sk = large.keygen(&mut rng).expect("keygen");
        assert!(sk.coeffs().iter().all(|c| (-7..=7).contains(c)));
        assert!(sk.coeffs().contains(&7) && sk.coeffs().contains(&-7));
        let sk = small.keygen(&mut rng).expect("keygen");
        let sd = (sk.coeffs().iter().map(|&c| (c * c) as f64).sum::<f64>() / 512.0).sqrt();
        // 512 samples of σ = 101.2: the estimate is within 10% with overwhelming probability.
        assert!((sd - 101.2).abs() < 10.0, "{sd}");
    }

    #[test]
    fn homomorphic_addition_and_plaintext_products() {
        let mut rng = rng(24);
        let p = 16;
        for params in params() {
            let ring = params.ring();
            let d = ring.degree();
            let sk = params.keygen(&mut rng).expect("keygen");
            let m1 = random_msg(d, p, &mut rng);
            let m2 = random_msg(d, p, &mut rng);
            let mut sum = params.encrypt(&sk, &m1, p, &mut rng).expect("encrypt");
            let ct2 = params.encrypt(&sk, &m2, p, &mut rng).expect("encrypt");
            params.add_assign(&mut sum, &ct2).expect("add");
            let mut out = vec![0u32; d];
            params.decrypt(&sk, &sum, p, &mut out).expect("decrypt");
            let expected: Vec<u32> = m1.iter().zip(&m2).map(|(x, y)| (x + y) % 16).collect();
            assert_eq!(out, expected);
            params.sub_assign(&mut sum, &ct2).expect("sub");
            params.decrypt(&sk, &sum, p, &mut out).expect("decrypt");
            assert_eq!(out, m1);

            // A plaintext with centred coefficients in [-8, 8), as a database element is.
            let pt: Vec<i64> = (0..d).map(|_| (rng.next_u64() % p) as i64 - 8).collect();
            let pt_ntt = ring
                .into_ntt(ring.poly_from_i64(&pt).expect("pt"))
                .expect("ntt");
            let mut product = params.encrypt(&sk, &m1, p, &mut rng).expect("encrypt");
            params.mul_plain_assign(&mut product, &pt_ntt).expect("mul");
            params.decrypt(&sk, &product, p, &mut out).expect("decrypt");
            assert_eq!(out, negacyclic_mod_p(&m1, &pt, p), "d={d}");
        }
    }

    /// Automorphisms of ciphertexts with key switching, at Respire's expansion gadgets for the
    /// large ring and a 6-digit gadget for the small one, with the measured margin.
    #[test]
    fn key_switched_automorphisms_decrypt_with_margin() {
        let mut rng = rng(25);
        let p = 16;
        let [large, small] = params();
        let cases = [(&large, 16088, 4), (&large, 7, 20), (&small, 16, 6)];
        for (params, z, t) in cases {
            let ring = params.ring();
            let d = ring.degree();
            let gadget = ring.gadget(z, t).expect("gadget");
            let sk = params.keygen(&mut rng).expect("keygen");
            let mut scratch = params.key_switch_scratch(&gadget);
            for k in [3, d + 1, 2 * d - 1] {
                let key = params
                    .automorphism_key(&sk, k, &gadget, &mut rng)
                    .expect("key");
                let msg = random_msg(d, p, &mut rng);
                let ct = params.encrypt(&sk, &msg, p, &mut rng).expect("encrypt");
                let mut out = ct.clone();
                params
                    .apply_automorphism(&ct, &key, &mut scratch, &mut out)
                    .expect("automorphism");

                let mut expected = vec![0u32; d];
                for (i, &m) in msg.iter().enumerate() {
                    let j = i * k % (2 * d);
                    if j < d {
                        expected[j] = m;
                    } else {
                        expected[j - d] = (p as u32 - m) % p as u32;
                    }
                }
                let mut plain = vec![0u32; d];
                params.decrypt(&sk, &out, p, &mut plain).expect("decrypt");
                assert_eq!(plain, expected, "d={d} k={k} z={z} t={t}");

                // Noise against τ_k(Δ·m) exactly (not Δ·τ_k(m), which differs by q mod p).
                let mut mu = ring.zero();
                ring.scale_plaintext(&msg, p, &mut mu).expect("scale");
                let mut tau_mu = ring.zero();
                ring.automorphism(&mu, k, &mut tau_mu)
                    .expect("automorphism");
                let noise = params.noise(&sk, &out, &tau_mu).expect("noise");
                let bound = params.decryption_bound(p);
                println!(
                    "key switch d={d} log2 q={:.1} gadget z={z} t={t} k={k}: max |e| = {noise} \
                     (2^{:.1}), bound 2^{:.1}, margin {:.1} bits",
                    (ring.modulus() as f64).log2(),
                    (noise as f64).log2(),
                    (bound as f64).log2(),
                    params.margin_bits(noise, p)
                );
                assert!(noise < bound);
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut rng = rng(26);
        let [large, small] = params();
        let sk = small.keygen(&mut rng).expect("keygen");
        let msg = vec![0u32; 512];
        assert!(small.encrypt(&sk, &msg, 1, &mut rng).is_err());
        assert!(small.encrypt(&sk, &[0u32; 100], 16, &mut rng).is_err());
        assert!(small.encrypt(&sk, &vec![16u32; 512], 16, &mut rng).is_err());
        let ct = small.encrypt(&sk, &msg, 16, &mut rng).expect("encrypt");
        let mut out = vec![0u32; 100];
        assert!(matches!(
            small.decrypt(&sk, &ct, 16, &mut out),
            Err(PirError::Length { .. })
        ));
        let mut big = vec![0u32; 512];
        assert!(small.decrypt(&sk, &ct, 1 << 40, &mut big).is_err());
        // A small-ring ciphertext given to the large ring.
        let large_sk = large.keygen(&mut rng).expect("keygen");
        let mut buf = vec![0u32; 2048];
        assert!(matches!(
            large.decrypt(&large_sk, &ct, 16, &mut buf),
            Err(PirError::Length { .. })
        ));
        let seeded = SeededCiphertext {
            seed: [0; 32],
            b: small.ring().zero_ntt(),
        };
        assert!(matches!(
            large.expand(&seeded),
            Err(PirError::Length { .. })
        ));
        // Even powers are not automorphisms; a scratch for another gadget is refused.
        let g6 = small.ring().gadget(16, 6).expect("gadget");
        let g7 = small.ring().gadget(16, 7).expect("gadget");
        assert!(small.automorphism_key(&sk, 4, &g6, &mut rng).is_err());
        let key = small.automorphism_key(&sk, 3, &g6, &mut rng).expect("key");
        let mut scratch = small.key_switch_scratch(&g7);
        let mut out_ct = ct.clone();
        assert!(matches!(
            small.apply_automorphism(&ct, &key, &mut scratch, &mut out_ct),
            Err(PirError::Length { .. })
        ));
    }
}
