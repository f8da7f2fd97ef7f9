//! Query expansion: one RLWE ciphertext whose coefficients carry many values becomes one RLWE
//! ciphertext per value (Spiral's coefficient expansion, Menon and Wu, S&P 2022, which refines
//! SealPIR's query expansion by automorphisms, Angel et al., S&P 2018; Respire, Burton, Menon,
//! Wu, CCS 2024, uses it for both halves of its query), and the RLWE-to-GSW conversion that
//! turns `t` expanded ciphertexts of `μ·z^k` into one GSW ciphertext of `μ` (Spiral's conversion;
//! Respire's `rlwe_to_gsw`).
//!
//! **Coefficient expansion.** Iteration `i` (for `i = 0, ..., log2 d - 1`) takes ciphertexts
//! whose phases have non-zero coefficients only at multiples of `2^i` and applies
//! `τ = x -> x^k`, `k = d/2^i + 1`, which fixes `x^(2^i·m)` for even `m` and negates it for
//! odd `m` (since `x^(2^i·m·k) = x^(m·d)·x^(2^i·m)`). So `c + τ(c)` keeps (doubled) the
//! coefficients at multiples of `2^(i+1)`, and `x^(-2^i)·(c - τ(c))` keeps the others, moved
//! down to multiples of `2^(i+1)`: each ciphertext becomes two. (The reference code writes the
//! second as `x^(-2^i)·c + x^(-2^i·k)·τ(c)`, the same thing since `x^(-2^i·k) = -x^(-2^i)`.)
//! After all `log2 d` iterations, output `j` holds `d` times the coefficient at position
//! `bitrev(j)` of the input in its constant coefficient and nothing else, which is why the
//! client places value `j` at [`packed_position`]`(j)` and the server first multiplies by
//! `d^-1 mod q`. Outputs past the `count` wanted are never computed: after iteration `i` only
//! the first `ceil(count / 2^(log2 d - i - 1))` ciphertexts are kept (as the reference code
//! does), so positions of the input not in the packing may hold anything (the client's
//! compressed query drops them).
//!
//! Each iteration's key switching adds its error, which the later iterations double, so an
//! output's error is about `Σ_i 2^(log2 d - 1 - i)` key-switching errors: the measured
//! margins are printed by the tests.

use rand::{CryptoRng, RngCore};

use super::super::PirError;
use super::gsw::{GswCiphertext, GswScratch};
use super::ring::{Gadget, NttPoly, RingElement};
use super::rlwe::{AutomorphismKey, Ciphertext, KeySwitchScratch, RlweParams, SecretKey};

/// `z = 16088`, `t = 4`: key switching for the expansion of the first dimension's RLWE
/// ciphertexts (Respire Tables 3-5).
pub const RLWE_EXPANSION_GADGET: (u64, usize) = (16088, 4);
/// `z = 7`, `t = 20`: key switching for the expansion of the GSW ciphertexts' rows.
pub const GSW_EXPANSION_GADGET: (u64, usize) = (7, 20);
/// `z = 16088`, `t = 4`: the RLWE-to-GSW conversion key.
pub const CONVERSION_GADGET: (u64, usize) = (16088, 4);

/// Where the client puts value `j` of a packed query: `bitrev(j)` over `log2 d` bits.
pub fn packed_position(j: usize, degree: usize) -> usize {
    let bits = degree.trailing_zeros();
    if bits == 0 {
        return 0;
    }
    j.reverse_bits() >> (usize::BITS - bits)
}

/// The automorphism keys of one expansion: key `i` is for `x -> x^(d/2^i + 1)`.
#[derive(Debug, Clone)]
pub struct ExpansionKeys {
    keys: Vec<AutomorphismKey>,
}

impl ExpansionKeys {
    /// Resident bytes of the keys.
    pub fn memory_bytes(&self) -> usize {
        self.keys.iter().map(AutomorphismKey::memory_bytes).sum()
    }

    /// The keys, in iteration order.
    pub fn keys(&self) -> &[AutomorphismKey] {
        &self.keys
    }

    /// The gadget they share.
    pub fn gadget(&self) -> Option<&Gadget> {
        self.keys.first().map(AutomorphismKey::gadget)
    }

    /// Keys parsed in iteration order; [`RlweParams::expand_coefficients`] checks their powers.
    pub(crate) fn from_keys(keys: Vec<AutomorphismKey>) -> ExpansionKeys {
        ExpansionKeys { keys }
    }
}

/// Buffers for [`RlweParams::expand_coefficients`]: key switching, one ciphertext, and the
/// monomials `x^(-2^i)` in NTT form.
#[derive(Debug, Clone)]
pub struct ExpansionScratch {
    key_switch: KeySwitchScratch,
    auto: Ciphertext,
    monomials: Vec<NttPoly>,
}

impl RlweParams {
    /// The `log2 d` keys of coefficient expansion under `gadget`.
    pub fn expansion_keys<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        gadget: &Gadget,
        rng: &mut R,
    ) -> Result<ExpansionKeys, PirError> {
        let d = self.ring().degree();
        let keys = (0..d.trailing_zeros())
            .map(|i| self.automorphism_key(sk, (d >> i) + 1, gadget, rng))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExpansionKeys { keys })
    }

    /// Buffers for expanding under `gadget`.
    pub fn expansion_scratch(&self, gadget: &Gadget) -> Result<ExpansionScratch, PirError> {
        let ring = self.ring();
        let d = ring.degree();
        let monomials = (0..d.trailing_zeros())
            .map(|i| {
                // x^(-2^i) = -x^(d - 2^i).
                let mut coeffs = vec![0i64; d];
                coeffs[d - (1 << i)] = -1;
                ring.into_ntt(ring.poly_from_i64(&coeffs)?)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExpansionScratch {
            key_switch: self.key_switch_scratch(gadget),
            auto: Ciphertext {
                a: ring.zero_ntt(),
                b: ring.zero_ntt(),
            },
            monomials,
        })
    }

    /// Expands `ct` into `count` ciphertexts: output `j` has phase `c_j + e_j` where `c_j` is
    /// the coefficient of `ct`'s phase at [`packed_position`]`(j)` (module doc). Allocates the
    /// `count` outputs once.
    pub fn expand_coefficients(
        &self,
        ct: &Ciphertext,
        count: usize,
        keys: &ExpansionKeys,
        scratch: &mut ExpansionScratch,
    ) -> Result<Vec<Ciphertext>, PirError> {
        let ring = self.ring();
        let d = ring.degree();
        let log_d = d.trailing_zeros() as usize;
        if count == 0 || count > d {
            return Err(PirError::Param(format!(
                "expansion to {count} ciphertexts in a ring of degree {d}"
            )));
        }
        if keys.keys.len() != log_d || scratch.monomials.len() != log_d {
            return Err(PirError::Length {
                what: "expansion keys",
                expected: log_d,
                got: keys.keys.len().min(scratch.monomials.len()),
            });
        }
        for (i, key) in keys.keys.iter().enumerate() {
            if key.power() != (d >> i) + 1 {
                return Err(PirError::Param(format!(
                    "expansion key {i} is for x -> x^{}, not x^{}",
                    key.power(),
                    (d >> i) + 1
                )));
            }
        }
        self.check_ct(ct)?;

        let mut cts = vec![ct.clone(); count];
        // d^-1 mod q = ((q + 1)/2)^log2(d), q odd: the expansion multiplies by d.
        let q = ring.modulus();
        let half = q.div_ceil(2);
        let inv_d = (0..log_d).fold(1u128, |acc, _| acc * u128::from(half) % u128::from(q));
        ring.scalar_mul_assign(&mut cts[0].a, inv_d as u64)?;
        ring.scalar_mul_assign(&mut cts[0].b, inv_d as u64)?;

        let mut len = 1;
        for (i, (key, monomial)) in keys.keys.iter().zip(&scratch.monomials).enumerate() {
            let new_len = count.div_ceil(d >> (i + 1));
            // Descending, so that cts[2j] and cts[2j+1] are written only after their own
            // sources (indexes above j) were read.
            for j in (0..len).rev() {
                self.apply_automorphism(&cts[j], key, &mut scratch.key_switch, &mut scratch.auto)?;
                if 2 * j + 1 < new_len {
                    let (low, high) = cts.split_at_mut(2 * j + 1);
                    let (source, odd) = (&low[j], &mut high[0]);
                    odd.a.words_mut().copy_from_slice(source.a.words());
                    odd.b.words_mut().copy_from_slice(source.b.words());
                    ring.sub_assign(&mut odd.a, &scratch.auto.a)?;
                    ring.sub_assign(&mut odd.b, &scratch.auto.b)?;
                    ring.mul_assign(&mut odd.a, monomial)?;
                    ring.mul_assign(&mut odd.b, monomial)?;
                }
                if j > 0 {
                    let (low, high) = cts.split_at_mut(2 * j);
                    let (source, even) = (&low[j], &mut high[0]);
                    even.a.words_mut().copy_from_slice(source.a.words());
                    even.b.words_mut().copy_from_slice(source.b.words());
                }
                let even = &mut cts[2 * j];
                ring.add_assign(&mut even.a, &scratch.auto.a)?;
                ring.add_assign(&mut even.b, &scratch.auto.b)?;
            }
            len = new_len;
        }
        Ok(cts)
    }

    /// The RLWE-to-GSW conversion key: a GSW encryption of `-s` under `gadget` (Respire's
    /// `(16088, 4)`), whose external product with an RLWE ciphertext of phase `φ` has phase
    /// `-s·φ`: the missing half of a GSW ciphertext (Spiral's conversion builds the same matrix
    /// from encryptions of `s²·z^j` and `-s·z^j`).
    pub fn conversion_key<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        gadget: &Gadget,
        rng: &mut R,
    ) -> Result<GswCiphertext, PirError> {
        let ring = self.ring();
        let mut neg_s: Vec<i64> = sk.coeffs().iter().map(|c| -c).collect();
        let mut neg_s_poly = ring.poly_from_i64(&neg_s)?;
        let key = self.encrypt_gsw(sk, &neg_s_poly, gadget, rng);
        neg_s.fill(0);
        neg_s_poly.words_mut().fill(0);
        key
    }

    /// One GSW ciphertext of `μ` under `gsw_gadget` from its `t` RLWE ciphertexts of phase
    /// `μ·z^k` (expanded from the query): they are the second half as they are, and the
    /// first half is their external products with the conversion key.
    pub fn rlwe_to_gsw(
        &self,
        key: &GswCiphertext,
        cts: &[Ciphertext],
        gsw_gadget: &Gadget,
        scratch: &mut GswScratch,
    ) -> Result<GswCiphertext, PirError> {
        if cts.len() != gsw_gadget.digits() {
            return Err(PirError::Length {
                what: "RLWE ciphertexts for one GSW ciphertext",
                expected: gsw_gadget.digits(),
                got: cts.len(),
            });
        }
        let ring = self.ring();
        let mut times_s = Vec::with_capacity(cts.len());
        for ct in cts {
            let mut out = Ciphertext {
                a: ring.zero_ntt(),
                b: ring.zero_ntt(),
            };
            self.external_product(key, ct, scratch, &mut out)?;
            times_s.push(out);
        }
        GswCiphertext::from_columns(gsw_gadget.clone(), times_s, cts.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::super::gsw::GSW_GADGET;
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn packed_positions_are_the_bit_reversal() {
        assert_eq!(packed_position(0, 2048), 0);
        assert_eq!(packed_position(1, 2048), 1024);
        assert_eq!(packed_position(2, 2048), 512);
        assert_eq!(packed_position(3, 2048), 1536);
        assert_eq!(packed_position(2047, 2048), 2047);
        let mut seen = vec![false; 512];
        for j in 0..512 {
            seen[packed_position(j, 512)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    /// The first dimension's expansion (gadget 16088, t = 4): values `Δ·m_j` packed at the
    /// bit-reversed positions come out one per ciphertext, in the constant coefficient.
    #[test]
    fn rlwe_expansion_separates_the_packed_values() {
        let mut rng = ChaCha20Rng::seed_from_u64(50);
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let d = ring.degree();
        let p = 16u64;
        let delta = ring.modulus() / p;
        let (z, t) = RLWE_EXPANSION_GADGET;
        let gadget = ring.gadget(z, t).expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        let keys = params.expansion_keys(&sk, &gadget, &mut rng).expect("keys");
        let mut scratch = params.expansion_scratch(&gadget).expect("scratch");
        let count = 16;
        let values: Vec<u64> = (0..count).map(|_| rng.next_u64() % p).collect();
        let mut packed = vec![0u64; d];
        for (j, v) in values.iter().enumerate() {
            packed[packed_position(j, d)] = delta * v;
        }
        // The positions outside the packing may hold anything.
        packed[3] = 12345;
        let mu = ring.poly_from_u64(&packed).expect("poly");
        let ct = params.encrypt_poly(&sk, &mu, &mut rng).expect("encrypt");
        let start = std::time::Instant::now();
        let expanded = params
            .expand_coefficients(&ct, count, &keys, &mut scratch)
            .expect("expand");
        let elapsed = start.elapsed();
        assert_eq!(expanded.len(), count);
        let mut worst = 0;
        let mut plain = vec![0u32; d];
        for (j, (out, &v)) in expanded.iter().zip(&values).enumerate() {
            params.decrypt(&sk, out, p, &mut plain).expect("decrypt");
            assert_eq!(u64::from(plain[0]), v, "j={j}");
            assert!(plain[1..].iter().all(|&c| c == 0), "j={j}");
            let mut expected = vec![0u64; d];
            expected[0] = delta * v;
            let expected = ring.poly_from_u64(&expected).expect("poly");
            worst = worst.max(params.noise(&sk, out, &expected).expect("noise"));
        }
        println!(
            "RLWE expansion to {count} (z={z}, t={t}) in {elapsed:?}: max |e| = 2^{:.1}, \
             margin {:.1} bits",
            (worst as f64).log2(),
            params.margin_bits(worst, p)
        );
        assert!(params.margin_bits(worst, p) > 10.0);
    }

    /// The folding GSW ciphertexts: bits times `z^k` (z = 127) packed, expanded with the
    /// (7, 20) gadget, converted with the (16088, 4) key, then used to select.
    #[test]
    fn gsw_expansion_and_conversion_select() {
        let mut rng = ChaCha20Rng::seed_from_u64(51);
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let d = ring.degree();
        let q = ring.modulus();
        let p = 16u64;
        let gsw_gadget = ring.gadget(GSW_GADGET.0, GSW_GADGET.1).expect("gadget");
        let t_gsw = gsw_gadget.digits();
        let expansion = ring
            .gadget(GSW_EXPANSION_GADGET.0, GSW_EXPANSION_GADGET.1)
            .expect("gadget");
        let conversion = ring
            .gadget(CONVERSION_GADGET.0, CONVERSION_GADGET.1)
            .expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        let keys = params
            .expansion_keys(&sk, &expansion, &mut rng)
            .expect("keys");
        let key = params
            .conversion_key(&sk, &conversion, &mut rng)
            .expect("conversion key");
        let mut scratch = params.expansion_scratch(&expansion).expect("scratch");
        let bits = [1u64, 0, 1];
        let count = bits.len() * t_gsw;
        let mut packed = vec![0u64; d];
        for (b, &bit) in bits.iter().enumerate() {
            for k in 0..t_gsw {
                packed[packed_position(b * t_gsw + k, d)] = bit * gsw_gadget.power(k) % q;
            }
        }
        let mu = ring.poly_from_u64(&packed).expect("poly");
        let ct = params.encrypt_poly(&sk, &mu, &mut rng).expect("encrypt");
        let start = std::time::Instant::now();
        let expanded = params
            .expand_coefficients(&ct, count, &keys, &mut scratch)
            .expect("expand");
        let expand_time = start.elapsed();
        let mut worst = 0;
        for (i, out) in expanded.iter().enumerate() {
            let mut expected = vec![0u64; d];
            expected[0] = bits[i / t_gsw] * gsw_gadget.power(i % t_gsw) % q;
            let expected = ring.poly_from_u64(&expected).expect("poly");
            worst = worst.max(params.noise(&sk, out, &expected).expect("noise"));
        }
        println!(
            "GSW-row expansion to {count} (z=7, t=20) in {expand_time:?}: max |e| = 2^{:.1}",
            (worst as f64).log2()
        );

        let mut gsw_scratch = params.gsw_scratch(&conversion);
        let mut fold_scratch = params.gsw_scratch(&gsw_gadget);
        let m0: Vec<u32> = (0..d).map(|_| (rng.next_u64() % p) as u32).collect();
        let m1: Vec<u32> = (0..d).map(|_| (rng.next_u64() % p) as u32).collect();
        let c0 = params.encrypt(&sk, &m0, p, &mut rng).expect("encrypt");
        let c1 = params.encrypt(&sk, &m1, p, &mut rng).expect("encrypt");
        let mut plain = vec![0u32; d];
        for (b, &bit) in bits.iter().enumerate() {
            let start = std::time::Instant::now();
            let gsw = params
                .rlwe_to_gsw(
                    &key,
                    &expanded[b * t_gsw..(b + 1) * t_gsw],
                    &gsw_gadget,
                    &mut gsw_scratch,
                )
                .expect("convert");
            let convert_time = start.elapsed();
            let mut selected = c0.clone();
            params
                .select(&gsw, &mut selected, &c1, &mut fold_scratch)
                .expect("select");
            params
                .decrypt(&sk, &selected, p, &mut plain)
                .expect("decrypt");
            let (m, expected) = if bit == 1 { (&m1, &c1) } else { (&m0, &c0) };
            assert_eq!(&plain, m, "bit {b}");
            let mut mu = ring.zero();
            ring.scale_plaintext(m, p, &mut mu).expect("scale");
            let noise = params.noise(&sk, &selected, &mu).expect("noise");
            let fresh = params.noise(&sk, expected, &mu).expect("noise");
            println!(
                "converted GSW(bit {bit}) in {convert_time:?} selects: max |e| = 2^{:.1} \
                 (fresh 2^{:.1}), margin {:.1} bits",
                (noise as f64).log2(),
                (fresh.max(1) as f64).log2(),
                params.margin_bits(noise, p)
            );
            assert!(params.margin_bits(noise, p) > 5.0);
        }
    }

    #[test]
    fn bad_expansion_inputs_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(52);
        let params = RlweParams::respire_large().expect("params");
        let ring = params.ring();
        let gadget = ring.gadget(16088, 4).expect("gadget");
        let sk = params.keygen(&mut rng).expect("keygen");
        let keys = params.expansion_keys(&sk, &gadget, &mut rng).expect("keys");
        let mut scratch = params.expansion_scratch(&gadget).expect("scratch");
        let ct = params
            .encrypt(&sk, &vec![0; ring.degree()], 16, &mut rng)
            .expect("encrypt");
        for count in [0, ring.degree() + 1] {
            assert!(params
                .expand_coefficients(&ct, count, &keys, &mut scratch)
                .is_err());
        }
        let short = ExpansionKeys {
            keys: keys.keys[1..].to_vec(),
        };
        assert!(params
            .expand_coefficients(&ct, 4, &short, &mut scratch)
            .is_err());
        let mut gsw_scratch = params.gsw_scratch(&gadget);
        let key = params.conversion_key(&sk, &gadget, &mut rng).expect("key");
        let g8 = ring.gadget(127, 8).expect("gadget");
        assert!(params
            .rlwe_to_gsw(&key, &[ct.clone(), ct], &g8, &mut gsw_scratch)
            .is_err());
    }
}
