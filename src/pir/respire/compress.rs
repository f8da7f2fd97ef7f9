//! Response compression: modulus switching and ring switching of the vectorised answer to the
//! small ring, as Respire compresses its response (Burton, Menon, Wu, CCS 2024: split modulus
//! switching after Menon and Wu's Spiral, with ring switching to a subring; the reference
//! code's `compress_setup`, `answer_compress_vec` and `extract_ring_one`, `src/pir/respire.rs`).
//!
//! Input: `(c_r, c_m)` over `R_{d1, q1}` under the vector secret `s_vec`, whose plaintext lies in
//! the subring `Z[x^(d1/d2)]` (after `project.rs` and `vectorise.rs`). Output: a mask `ĉ_r` in
//! `R_{d2, q2}` and a body `ĉ_m` in `R_{d2, q3}` under the small ring's secret `s_small`
//! (Tables 3-5: `d2 = 512`, `q2 = 16760833`, `q3 = 2^8`, secret and key error of width 253.6,
//! gadget `z = 2, t = 24` over `q2`).
//!
//! 1. The mask alone is switched to `q2`: `c_r' = round(q2·c_r / q1)`, still in degree `d1`.
//! 2. Key switching over `R_{d1, q2}` from `s_vec mod q2` to `s_to = s_small(x^(d1/d2))`, the
//!    small secret embedded in the large ring, with the binary gadget (`z = 2`, `t = 24`):
//!    the key's rows are `(α_j, β_j = α_j·s_to + ε_j - 2^j·s_vec)` ([`SwitchingKey`]), and with
//!    `d_j` the digits of `c_r'`, `A = Σ d_j·α_j` and `B = Σ d_j·β_j = -s_vec·c_r' + s_to·A + ε`.
//! 3. The body is switched from `q1` straight to `q3`, adding `B` on the way in one rounding:
//!    `ĉ_m = round(q3·c_m/q1 + q3·B/q2) mod q3`.
//! 4. Ring switching: only the coefficients at multiples of `d1/d2` are kept, of `A` (as `ĉ_r`)
//!    and of `ĉ_m`. For `s_to` in the subring, the subring coefficients of `s_to·A` are
//!    `s_small·ĉ_r` in `R_{d2}` (under `y = x^(d1/d2)`), so the kept coefficients are an
//!    `R_{d2}` ciphertext of the subring plaintext.
//!
//! The client computes `ĉ_m + round(q3·(-s_small·ĉ_r)/q2) mod q3`, which is
//! `round(q3/q1·(c_m - s_vec·c_r))` plus small errors, i.e. `(q3/p)·m` plus the error, and
//! rounds it to `m` mod `p` (`response.rs`). The mask stays at `q2` (24 bits a coefficient)
//! because the client multiplies it by a secret of width 253.6: switching it to `q3` too would
//! add a rounding error times `s_small`, far above `q3/(2p)`; the body carries no such product
//! and goes to 8 bits.

use rand::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::super::PirError;
use super::keyswitch::{SwitchScratch, SwitchingKey};
use super::ring::{Gadget, NttPoly, Poly, Ring, RingElement, LARGE_DEGREE, SMALL_MODULUS};
use super::rlwe::{
    Ciphertext, DiscreteGaussian, RlweParams, SecretDistribution, SecretKey, SMALL_WIDTH,
};

/// `q3`, the modulus of the response body (Respire Tables 3-5, single-query set: `2^8`).
pub const RESPONSE_MODULUS: u64 = 256;

/// The large degree over the small modulus, where the compression key lives: `R_{d1, q2}`
/// (`q2 ≡ 1 mod 2·d1`, so the project's NTT applies), with the small ring's distributions
/// (the reference's `ERROR_WIDTH_COMPRESS`, 253.6).
pub fn switch_params() -> Result<RlweParams, PirError> {
    let gaussian = DiscreteGaussian::new(SMALL_WIDTH)?;
    Ok(RlweParams::new(
        Ring::new(LARGE_DEGREE, &[SMALL_MODULUS])?,
        SecretDistribution::Gaussian(gaussian.clone()),
        gaussian,
    ))
}

/// The compressed answer: the mask `ĉ_r` (`d2` residues mod `q2`) and the body `ĉ_m` (`d2`
/// residues mod `q3`), coefficient form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedResponse {
    pub mask: Vec<u32>,
    pub body: Vec<u32>,
}

/// The key switching `s_vec mod q2` to `s_small(x^(d1/d2))` over `R_{d1, q2}`.
#[derive(Debug, Clone)]
pub struct CompressionKey {
    key: SwitchingKey,
}

/// Buffers for [`compress`], allocated once.
#[derive(Debug, Clone)]
pub struct CompressScratch {
    large_poly: Poly,
    words: Vec<u64>,
    switched_words: Vec<u64>,
    mask_q2: Poly,
    mask_out: NttPoly,
    body_acc: NttPoly,
    switched_poly: Poly,
    switch: SwitchScratch,
}

/// `floor(n / d)` by restoring division over `bits` numerator bits, so that the time does not
/// depend on `n` (`d < 2^126`, `n < 2^bits`, quotient below `2^64`).
fn div_u128_constant_time(n: u128, d: u128, bits: u32) -> u64 {
    let mut rem = 0u128;
    let mut quotient = 0u64;
    for i in (0..bits).rev() {
        rem = (rem << 1) | ((n >> i) & 1);
        let diff = rem.wrapping_sub(d);
        let fits = 1 ^ (diff >> 127);
        rem = rem.wrapping_sub(d & fits.wrapping_neg());
        quotient = (quotient << 1) | fits as u64;
    }
    quotient
}

/// `q3` as accepted here: a power of two from 2 to `2^16`, below `q2`.
fn check_response_modulus(q3: u64, q2: u64) -> Result<(), PirError> {
    if !(2..=1 << 16).contains(&q3) || !q3.is_power_of_two() || q3 >= q2 {
        return Err(PirError::Param(format!(
            "response modulus {q3}: a power of two from 2 to 2^16 below {q2} is needed"
        )));
    }
    Ok(())
}

impl CompressionKey {
    /// Resident bytes of the key.
    pub fn memory_bytes(&self) -> usize {
        self.key.memory_bytes()
    }

    /// The key from `s_vec` (a secret of the large ring with small coefficients) to `s_small`
    /// (a secret of the small ring, degree `d2`) embedded as `s_small(x^(d1/d2))`, in
    /// `switch`'s ring (`R_{d1, q2}`) with its error and `gadget`.
    pub fn generate<R: RngCore + CryptoRng>(
        switch: &RlweParams,
        s_vec: &SecretKey,
        s_small: &SecretKey,
        gadget: &Gadget,
        rng: &mut R,
    ) -> Result<CompressionKey, PirError> {
        let ring = switch.ring();
        let d1 = ring.degree();
        let d2 = s_small.coeffs().len();
        if d2 == 0 || !d2.is_power_of_two() || d2 > d1 {
            return Err(PirError::Param(format!(
                "small secret of degree {d2} for ring degree {d1}"
            )));
        }
        let stride = d1 / d2;
        let mut embedded = vec![0i64; d1];
        for (i, &c) in s_small.coeffs().iter().enumerate() {
            embedded[stride * i] = c;
        }
        let to = switch.secret_from_coeffs(&embedded);
        embedded.zeroize();
        let mut from = ring.poly_from_i64(s_vec.coeffs())?;
        let key = SwitchingKey::generate(switch, &to?, &from, gadget, rng);
        from.words_mut().zeroize();
        Ok(CompressionKey { key: key? })
    }

    /// The key made of a parsed switching key.
    pub(crate) fn from_switching_key(key: SwitchingKey) -> CompressionKey {
        CompressionKey { key }
    }

    /// The switching key from `s_vec` to the embedded small secret.
    pub(crate) fn switching_key(&self) -> &SwitchingKey {
        &self.key
    }

    /// Buffers for [`compress`] from `large` (`R_{d1, q1}`) through `switch` (`R_{d1, q2}`).
    pub fn scratch(&self, large: &Ring, switch: &Ring) -> CompressScratch {
        CompressScratch {
            large_poly: large.zero(),
            words: vec![0; large.degree()],
            switched_words: vec![0; switch.degree()],
            mask_q2: switch.zero(),
            mask_out: switch.zero_ntt(),
            body_acc: switch.zero_ntt(),
            switched_poly: switch.zero(),
            switch: self.key.scratch(switch),
        }
    }

    /// Bytes of the key with seeded masks (see [`SwitchingKey::wire_bytes`]).
    pub fn wire_bytes(&self, switch: &Ring) -> usize {
        self.key.wire_bytes(switch)
    }
}

/// `out ← ` the compression of `ct` (module doc): `ct` over `large` (`R_{d1, q1}`) under
/// `s_vec`, the key over `switch` (`R_{d1, q2}`), the response body mod `q3`. `out`'s lengths
/// give `d2`. Allocation-free given `scratch`.
pub fn compress(
    large: &Ring,
    switch: &Ring,
    key: &CompressionKey,
    q3: u64,
    ct: &Ciphertext,
    scratch: &mut CompressScratch,
    out: &mut CompressedResponse,
) -> Result<(), PirError> {
    let (d1, q1, q2) = (large.degree(), large.modulus(), switch.modulus());
    check_response_modulus(q3, q2)?;
    let d2 = out.mask.len();
    if switch.degree() != d1 || d2 == 0 || !d2.is_power_of_two() || d2 > d1 {
        return Err(PirError::Param(format!(
            "compression from degree {d1} through degree {} to {d2}",
            switch.degree()
        )));
    }
    if out.body.len() != d2 || scratch.words.len() != d1 || scratch.switched_words.len() != d1 {
        return Err(PirError::Length {
            what: "compressed response buffers",
            expected: d2,
            got: out.body.len(),
        });
    }
    let stride = d1 / d2;

    // 1. c_r' = round(q2·c_r/q1).
    large.inverse(&ct.a, &mut scratch.large_poly)?;
    large.round_to(&scratch.large_poly, q2, &mut scratch.words)?;
    switch.set_from_u64(&mut scratch.mask_q2, &scratch.words)?;

    // 2. A = Σ d_j·α_j, B = Σ d_j·β_j.
    scratch.body_acc.words_mut().fill(0);
    key.key.apply(
        switch,
        &scratch.mask_q2,
        &mut scratch.switch,
        &mut scratch.mask_out,
        &mut scratch.body_acc,
    )?;

    // 4 (mask). The subring coefficients of A.
    switch.inverse(&scratch.mask_out, &mut scratch.switched_poly)?;
    switch.to_u64(&scratch.switched_poly, &mut scratch.switched_words)?;
    for (m, &w) in out
        .mask
        .iter_mut()
        .zip(scratch.switched_words.iter().step_by(stride))
    {
        // Residues mod q2 < 2^32.
        *m = w as u32;
    }

    // 3 and 4 (body). round((q3·q2·c_m + q3·q1·B) / (q1·q2)) mod q3 at the subring
    // coefficients, one rounding as the reference does.
    switch.inverse(&scratch.body_acc, &mut scratch.switched_poly)?;
    switch.to_u64(&scratch.switched_poly, &mut scratch.switched_words)?;
    large.inverse(&ct.b, &mut scratch.large_poly)?;
    large.to_u64(&scratch.large_poly, &mut scratch.words)?;
    let denominator = u128::from(q1) * u128::from(q2);
    let half = denominator / 2;
    let largest = u128::from(q3) * (2 * denominator) + half;
    let bits = 128 - largest.leading_zeros();
    for (i, o) in out.body.iter_mut().enumerate() {
        let j = stride * i;
        let c_m = u128::from(scratch.words[j]);
        let b = u128::from(scratch.switched_words[j]);
        let n = u128::from(q3) * (u128::from(q2) * c_m + u128::from(q1) * b) + half;
        let rounded = div_u128_constant_time(n, denominator, bits);
        // q3 is a power of two: the mask reduces mod q3.
        *o = (rounded & (q3 - 1)) as u32;
    }
    Ok(())
}

/// The client's side: `out[i] ← ĉ_m[i] + round(q3·(-s_small·ĉ_r)[i] / q2) mod q3`, which is
/// `(q3/p)·m[i]` plus the error (module doc). `small` is `R_{d2, q2}`. Constant time in the
/// secret.
pub fn client_phase(
    small: &RlweParams,
    s_small: &SecretKey,
    q3: u64,
    response: &CompressedResponse,
    out: &mut [u32],
) -> Result<(), PirError> {
    let ring = small.ring();
    check_response_modulus(q3, ring.modulus())?;
    let d2 = ring.degree();
    for (what, len) in [
        ("response mask", response.mask.len()),
        ("response body", response.body.len()),
        ("phase buffer", out.len()),
    ] {
        if len != d2 {
            return Err(PirError::Length {
                what,
                expected: d2,
                got: len,
            });
        }
    }
    let mask: Vec<u64> = response.mask.iter().map(|&m| u64::from(m)).collect();
    let mut product = ring.into_ntt(ring.poly_from_u64(&mask)?)?;
    ring.mul_assign(&mut product, s_small.ntt())?;
    let mut coeffs = ring.into_coeffs(product)?;
    ring.neg_assign(&mut coeffs)?;
    let mut rounded = vec![0u64; d2];
    ring.round_to(&coeffs, q3, &mut rounded)?;
    for ((o, &r), &b) in out.iter_mut().zip(&rounded).zip(&response.body) {
        *o = ((r + u64::from(b)) & (q3 - 1)) as u32;
    }
    rounded.zeroize();
    coeffs.words_mut().zeroize();
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pir::respire::ring::SMALL_DEGREE;
    use crate::pir::respire::vectorise::vector_params;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// The largest `|x - (q3/p)·m|` over centred residues mod `q3`.
    pub(crate) fn phase_noise(phase: &[u32], msg: &[u32], q3: u64, p: u64) -> u64 {
        phase
            .iter()
            .zip(msg)
            .map(|(&x, &m)| {
                let diff = (i64::from(x) - (q3 / p) as i64 * i64::from(m)).rem_euclid(q3 as i64);
                (if diff > q3 as i64 / 2 {
                    q3 as i64 - diff
                } else {
                    diff
                }) as u64
            })
            .max()
            .unwrap_or(0)
    }

    /// A subring plaintext encrypted directly under `s_vec`, compressed, and taken back by
    /// the client: `(q3/p)·m` up to an error below `q3/(2p)`.
    #[test]
    fn compressed_ciphertexts_decrypt_under_the_small_secret() {
        let mut rng = ChaCha20Rng::seed_from_u64(70);
        let p = 16;
        let q3 = RESPONSE_MODULUS;
        let vector = vector_params().expect("vector");
        let switch = switch_params().expect("switch");
        let small = RlweParams::respire_small().expect("small");
        let large = vector.ring();
        let s_vec = vector.keygen(&mut rng).expect("keygen");
        let s_small = small.keygen(&mut rng).expect("keygen");
        let gadget = switch.ring().gadget(2, 24).expect("gadget");
        let key =
            CompressionKey::generate(&switch, &s_vec, &s_small, &gadget, &mut rng).expect("key");
        let mut scratch = key.scratch(large, switch.ring());
        let mut out = CompressedResponse {
            mask: vec![0; SMALL_DEGREE],
            body: vec![0; SMALL_DEGREE],
        };
        let mut worst = 0;
        for _ in 0..4 {
            let record: Vec<u32> = (0..SMALL_DEGREE).map(|_| rng.next_u32() % 16).collect();
            let mut msg = vec![0u32; LARGE_DEGREE];
            for (i, &m) in record.iter().enumerate() {
                msg[4 * i] = m;
            }
            let ct = vector.encrypt(&s_vec, &msg, p, &mut rng).expect("encrypt");
            compress(large, switch.ring(), &key, q3, &ct, &mut scratch, &mut out)
                .expect("compress");
            assert!(out
                .mask
                .iter()
                .all(|&m| u64::from(m) < switch.ring().modulus()));
            assert!(out.body.iter().all(|&b| u64::from(b) < q3));
            let mut phase = vec![0u32; SMALL_DEGREE];
            client_phase(&small, &s_small, q3, &out, &mut phase).expect("phase");
            let noise = phase_noise(&phase, &record, q3, p);
            worst = worst.max(noise);
            let decoded: Vec<u32> = phase.iter().map(|&x| ((x + 8) >> 4) % 16).collect();
            assert_eq!(decoded, record);
        }
        let bound = q3 / (2 * p);
        println!(
            "compression (z=2, t=24 over q2, to q3 = {q3}) of fresh ciphertexts under s_vec: \
             max |e| = {worst} in units of 1/{q3}, decoding bound < {bound}, margin {:.2} bits, \
             key {} bytes",
            (bound as f64 / worst.max(1) as f64).log2(),
            key.wire_bytes(switch.ring())
        );
        assert!(worst < bound);
    }

    #[test]
    fn constant_time_division_is_exact() {
        let d = 268369921u128 * 249561089 * 16760833;
        for n in [
            0u128,
            1,
            d - 1,
            d,
            d + 1,
            300 * d + 12345,
            (1u128 << 100) - 1,
        ] {
            assert_eq!(u128::from(div_u128_constant_time(n, d, 101)), n / d);
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(71);
        let vector = vector_params().expect("vector");
        let switch = switch_params().expect("switch");
        let small = RlweParams::respire_small().expect("small");
        let s_vec = vector.keygen(&mut rng).expect("keygen");
        let s_small = small.keygen(&mut rng).expect("keygen");
        let gadget = switch.ring().gadget(2, 24).expect("gadget");
        let key =
            CompressionKey::generate(&switch, &s_vec, &s_small, &gadget, &mut rng).expect("key");
        let large = vector.ring();
        let mut scratch = key.scratch(large, switch.ring());
        let ct = vector
            .encrypt(&s_vec, &[0; 2048], 16, &mut rng)
            .expect("encrypt");
        let mut out = CompressedResponse {
            mask: vec![0; 512],
            body: vec![0; 512],
        };
        for q3 in [0, 100, 1 << 20] {
            assert!(compress(large, switch.ring(), &key, q3, &ct, &mut scratch, &mut out).is_err());
        }
        let mut short = CompressedResponse {
            mask: vec![0; 512],
            body: vec![0; 511],
        };
        assert!(compress(
            large,
            switch.ring(),
            &key,
            256,
            &ct,
            &mut scratch,
            &mut short
        )
        .is_err());
        let mut phase = vec![0u32; 511];
        assert!(client_phase(&small, &s_small, 256, &out, &mut phase).is_err());
    }
}
