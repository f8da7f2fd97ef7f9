//! Polynomials of `Z_q[x]/(x^d + 1)` for Respire's rings, on the project's NTT
//! ([`NttPlan`]), with `q` a product of one or two NTT primes held as CRT limbs.
//!
//! - [`Ring::large`]: `d1 = 2048`, `q1 = 268369921 · 249561089` (two limbs), the ring of the
//!   query, the database and the GSW folding.
//! - [`Ring::small`]: `d2 = 512`, `q2 = 16760833` (one limb), the ring of the response.
//!
//! A polynomial is a [`Poly`] (coefficients) or an [`NttPoly`] (evaluations, in the NTT's
//! bit-reversed order), each limb-major: limb `i` is `words[i·d..(i+1)·d]`. Operations are
//! methods of [`Ring`] that write into caller-provided values; none of the arithmetic
//! allocates. A value of the wrong size is [`PirError::Length`].
//!
//! Constant time: no branch or memory index depends on a coefficient. Reductions are Shoup
//! products with a precomputed quotient and conditional subtractions through a borrow mask;
//! divisions by a public constant (CRT, gadget digits, rounding) are Barrett estimates with a
//! masked correction, or a bit-serial division with a public number of steps. Branches and
//! indexes depend only on public values (the degree, `k` of an automorphism, gadget shape).

// Shoup products by a constant (Harvey 2014, Algorithm 2) and the branch-free conditional
// subtraction, as the NTT plans use them.
use super::super::ntt::{sub_if_ge, NttPlan, ShoupConst as Shoup};
use super::super::PirError;

/// `d1`, the degree of Respire's large ring (Respire's parameter tables, Tables 3-5).
pub const LARGE_DEGREE: usize = 2048;
/// The two CRT primes of `q1` (same tables; both are 1 mod 2·d1).
pub const LARGE_MODULI: [u32; 2] = [268369921, 249561089];
/// `d2`, the degree of Respire's small (response) ring.
pub const SMALL_DEGREE: usize = 512;
/// `q2`, the small ring's modulus.
pub const SMALL_MODULUS: u32 = 16760833;

/// Products of the limb primes must stay below this, so that `p·x + q/2` (rounding) and the
/// centred representatives fit comfortably in 64-bit words.
const MODULUS_BOUND: u64 = 1 << 62;

/// The same on 64-bit words below `2^63`.
#[inline(always)]
fn sub_if_ge_u64(v: u64, m: u64) -> u64 {
    let diff = v.wrapping_sub(m);
    let borrow = diff >> 63;
    diff.wrapping_add(m & borrow.wrapping_neg())
}

/// Floor division by a public constant `0 < d < 2^63` for numerators below `2^63`: Barrett's
/// estimate with `m = floor(2^64 / d)` is the quotient or one less (HAC 14.42 with a single
/// correction step, since the numerator is below `2^64`), corrected with a mask.
#[derive(Debug, Clone, Copy)]
struct ConstDivisor {
    d: u64,
    m: u64,
}

impl ConstDivisor {
    fn new(d: u64) -> ConstDivisor {
        // d >= 2 keeps 2^64 / d below 2^64; d = 1 is special-cased to the all-ones word,
        // which still gives an estimate of at most one short.
        let m = if d <= 1 {
            u64::MAX
        } else {
            ((1u128 << 64) / u128::from(d)) as u64
        };
        ConstDivisor { d, m }
    }

    /// `(floor(x / d), x mod d)` for `x < 2^63`.
    #[inline(always)]
    fn div_rem(self, x: u64) -> (u64, u64) {
        let estimate = ((u128::from(x) * u128::from(self.m)) >> 64) as u64;
        let rem = x - estimate * self.d;
        // rem < 2d; one masked step brings it below d.
        let too_big = 1 ^ ((rem.wrapping_sub(self.d)) >> 63);
        let quotient = estimate + too_big;
        (quotient, rem - (self.d & too_big.wrapping_neg()))
    }
}

/// `floor(n / d)` by restoring binary long division over a public number of numerator bits
/// (`bits`, at most 128), so that the time does not depend on `n`. `d < 2^62`.
#[inline]
fn div_constant_time(n: u128, d: u64, bits: u32) -> u64 {
    let mut rem = 0u64;
    let mut quotient = 0u64;
    for i in (0..bits).rev() {
        rem = (rem << 1) | ((n >> i) & 1) as u64;
        let diff = rem.wrapping_sub(d);
        let fits = 1 ^ (diff >> 63);
        rem = sub_if_ge_u64(rem, d);
        // Bits of the quotient above 64 cannot occur for the callers' bounds (quotient
        // below 2^63), so they are dropped.
        quotient = (quotient << 1) | fits;
    }
    quotient
}

/// One CRT limb: the NTT plan for its prime and the constants for reducing into it.
#[derive(Debug, Clone)]
struct Limb {
    plan: NttPlan,
    q: u32,
    /// `2^64 mod q`, to correct the reduction of a negative `i64` read as a `u64`.
    two_64: u32,
}

impl Limb {
    fn new(q: u32, degree: usize) -> Result<Limb, PirError> {
        let plan = NttPlan::new(u64::from(q), degree)?;
        Ok(Limb {
            plan,
            q,
            two_64: ((1u128 << 64) % u128::from(q)) as u32,
        })
    }

    /// `x mod q` for any `u64`.
    #[inline(always)]
    fn reduce_u64(&self, x: u64) -> u32 {
        self.plan.reduce_u64(x)
    }

    /// `x mod q` for any `i64`.
    #[inline(always)]
    fn reduce_i64(&self, x: i64) -> u32 {
        let r = self.reduce_u64(x as u64);
        // A negative x was read as x + 2^64: take 2^64 mod q back off.
        let negative = ((x >> 63) as u32) & self.two_64;
        self.sub(r, negative)
    }

    #[inline(always)]
    fn add(&self, a: u32, b: u32) -> u32 {
        sub_if_ge(a + b, self.q)
    }

    #[inline(always)]
    fn sub(&self, a: u32, b: u32) -> u32 {
        sub_if_ge(a + self.q - b, self.q)
    }

    #[inline(always)]
    fn neg(&self, a: u32) -> u32 {
        // q - 0 = q reduces to 0.
        sub_if_ge(self.q - a, self.q)
    }
}

/// Garner's CRT reconstruction for two limbs: `x = xa + qa·((xb - xa)·qa^-1 mod qb)`.
#[derive(Debug, Clone, Copy)]
struct Crt {
    qa: u32,
    qb: u32,
    qa_inv_mod_qb: Shoup,
    /// 1 mod `qb`, to reduce `xa` (below `2^30`, possibly above `qb`) into `[0, 2qb)`.
    one_b: Shoup,
}

/// A polynomial in coefficient form, limb-major (`Ring::limbs()` blocks of `Ring::degree()`
/// residues, each below its limb's prime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poly {
    words: Vec<u32>,
}

/// A polynomial in NTT form: per limb, the evaluations at the odd powers of the limb plan's
/// root in bit-reversed order (see `pir/ntt.rs`), each below its limb's prime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NttPoly {
    words: Vec<u32>,
}

/// Read and write access to the limb-major words of a [`Poly`] or an [`NttPoly`], for the
/// operations that are the same in both forms (addition, negation, scalar products).
pub trait RingElement {
    fn words(&self) -> &[u32];
    fn words_mut(&mut self) -> &mut [u32];
}

impl RingElement for Poly {
    fn words(&self) -> &[u32] {
        &self.words
    }
    fn words_mut(&mut self) -> &mut [u32] {
        &mut self.words
    }
}

impl RingElement for NttPoly {
    fn words(&self) -> &[u32] {
        &self.words
    }
    fn words_mut(&mut self) -> &mut [u32] {
        &mut self.words
    }
}

impl Poly {
    /// Limb `i`'s residues (empty if there is no such limb).
    pub fn limb(&self, i: usize, degree: usize) -> &[u32] {
        self.words.get(i * degree..(i + 1) * degree).unwrap_or(&[])
    }
}

impl NttPoly {
    /// Limb `i`'s evaluations (empty if there is no such limb).
    pub fn limb(&self, i: usize, degree: usize) -> &[u32] {
        self.words.get(i * degree..(i + 1) * degree).unwrap_or(&[])
    }
}

/// A gadget vector `g = (1, z, z^2, ..., z^(t-1))` for a ring, and the constants of its
/// decomposition. Digits are signed, in `(-z/2, z/2]`, as in Spiral (Menon and Wu, S&P 2022)
/// and Respire's reference code (`src/math/gadget.rs`): a coefficient is first taken to its centred
/// representative `c` in `(-q/2, q/2]`, `|c|` is written in balanced base `z` (each step takes
/// the remainder mod `z` and moves it into `(-z/2, z/2]`, carrying one into the next digit
/// when it was above `z/2`), and the digits are negated when `c < 0`. Each digit polynomial
/// therefore has coefficients of magnitude at most `z/2`, and `Σ z^j · digit_j = c` exactly.
#[derive(Debug, Clone)]
pub struct Gadget {
    base: u64,
    digits: usize,
    divisor: ConstDivisor,
    /// `z^j mod q` for `j < t`.
    powers: Vec<u64>,
}

impl Gadget {
    /// The base `z`.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The number of digits `t`.
    pub fn digits(&self) -> usize {
        self.digits
    }

    /// `z^j mod q`, the `j`-th gadget entry (0 for `j >= t`).
    pub fn power(&self, j: usize) -> u64 {
        self.powers.get(j).copied().unwrap_or(0)
    }

    /// The balanced digits of `magnitude` (`>= 0`), written to `out`, and the carry left after
    /// the last digit (0 when the gadget covers `magnitude`).
    #[inline(always)]
    fn digits_of(
        &self,
        mut magnitude: u64,
        negate_mask: u64,
        mut out: impl FnMut(usize, i64),
    ) -> u64 {
        let half = self.base / 2;
        for j in 0..self.digits {
            let (quotient, rem) = self.divisor.div_rem(magnitude);
            // rem > z/2 becomes rem - z with a carry into the next digit.
            let carry = (half.wrapping_sub(rem)) >> 63;
            let digit = rem.wrapping_sub(self.base & carry.wrapping_neg()) as i64;
            magnitude = quotient + carry;
            let mask = negate_mask as i64;
            out(j, (digit ^ mask) - mask);
        }
        magnitude
    }
}

/// `Z_q[x]/(x^d + 1)` with `q` the product of one or two NTT-friendly primes below `2^30`.
#[derive(Debug, Clone)]
pub struct Ring {
    degree: usize,
    limbs: Vec<Limb>,
    modulus: u64,
    crt: Option<Crt>,
}

impl Ring {
    /// Respire's large ring: `d1 = 2048`, `q1 = 268369921 · 249561089`.
    pub fn large() -> Result<Ring, PirError> {
        Ring::new(LARGE_DEGREE, &LARGE_MODULI)
    }

    /// Respire's small ring: `d2 = 512`, `q2 = 16760833`.
    pub fn small() -> Result<Ring, PirError> {
        Ring::new(SMALL_DEGREE, &[SMALL_MODULUS])
    }

    /// A ring of degree `degree` modulo the product of `moduli` (one or two distinct primes,
    /// each accepted by [`NttPlan::new`] for this degree).
    pub fn new(degree: usize, moduli: &[u32]) -> Result<Ring, PirError> {
        let limbs = moduli
            .iter()
            .map(|&q| Limb::new(q, degree))
            .collect::<Result<Vec<_>, _>>()?;
        let (modulus, crt) = match moduli {
            [q] => (u64::from(*q), None),
            [qa, qb] if qa != qb => {
                let (qa, qb) = (*qa, *qb);
                let inverse = mod_inverse(u64::from(qa) % u64::from(qb), u64::from(qb))
                    .ok_or_else(|| PirError::Param(format!("{qa} has no inverse mod {qb}")))?;
                let crt = Crt {
                    qa,
                    qb,
                    qa_inv_mod_qb: Shoup::new(inverse as u32, qb),
                    one_b: Shoup::new(1, qb),
                };
                (u64::from(qa) * u64::from(qb), Some(crt))
            }
            _ => {
                return Err(PirError::Param(format!(
                    "a ring needs one prime or two distinct primes, got {moduli:?}"
                )))
            }
        };
        if modulus >= MODULUS_BOUND {
            return Err(PirError::Param(format!(
                "modulus {modulus} is not below 2^62"
            )));
        }
        Ok(Ring {
            degree,
            limbs,
            modulus,
            crt,
        })
    }

    /// The degree `d`.
    pub fn degree(&self) -> usize {
        self.degree
    }

    /// The modulus `q`, the product of the limb primes.
    pub fn modulus(&self) -> u64 {
        self.modulus
    }

    /// The number of CRT limbs.
    pub fn limbs(&self) -> usize {
        self.limbs.len()
    }

    /// The limb primes.
    pub fn limb_moduli(&self) -> impl Iterator<Item = u32> + '_ {
        self.limbs.iter().map(|l| l.q)
    }

    /// The NTT plan of limb `i`.
    pub fn plan(&self, i: usize) -> Option<&NttPlan> {
        self.limbs.get(i).map(|l| &l.plan)
    }

    fn words(&self) -> usize {
        self.degree * self.limbs.len()
    }

    /// The zero polynomial in coefficient form.
    pub fn zero(&self) -> Poly {
        Poly {
            words: vec![0; self.words()],
        }
    }

    /// The zero polynomial in NTT form.
    pub fn zero_ntt(&self) -> NttPoly {
        NttPoly {
            words: vec![0; self.words()],
        }
    }

    fn check<T: RingElement + ?Sized>(&self, what: &'static str, a: &T) -> Result<(), PirError> {
        self.check_len(what, a.words().len(), self.words())
    }

    fn check_len(&self, what: &'static str, got: usize, expected: usize) -> Result<(), PirError> {
        if got == expected {
            Ok(())
        } else {
            Err(PirError::Length {
                what,
                expected,
                got,
            })
        }
    }

    /// Sets coefficient `i` of every limb of `out` to `value mod q`.
    #[inline(always)]
    fn set_signed(&self, words: &mut [u32], i: usize, value: i64) {
        for (l, limb) in self.limbs.iter().enumerate() {
            words[l * self.degree + i] = limb.reduce_i64(value);
        }
    }

    #[inline(always)]
    fn set_unsigned(&self, words: &mut [u32], i: usize, value: u64) {
        for (l, limb) in self.limbs.iter().enumerate() {
            words[l * self.degree + i] = limb.reduce_u64(value);
        }
    }

    /// `out ← Σ coeffs[i] x^i mod q` (CRT decomposition of each coefficient into the limbs).
    pub fn set_from_u64(&self, out: &mut Poly, coeffs: &[u64]) -> Result<(), PirError> {
        self.check("polynomial", out)?;
        self.check_len("coefficients", coeffs.len(), self.degree)?;
        for (i, &c) in coeffs.iter().enumerate() {
            self.set_unsigned(&mut out.words, i, c);
        }
        Ok(())
    }

    /// `out ← Σ coeffs[i] x^i mod q` for signed coefficients.
    pub fn set_from_i64(&self, out: &mut Poly, coeffs: &[i64]) -> Result<(), PirError> {
        self.check("polynomial", out)?;
        self.check_len("coefficients", coeffs.len(), self.degree)?;
        for (i, &c) in coeffs.iter().enumerate() {
            self.set_signed(&mut out.words, i, c);
        }
        Ok(())
    }

    /// `out ← Σ next() x^i`, drawing the `d` signed coefficients in order from `next` (a
    /// sampler), without an intermediate buffer.
    pub fn fill_signed(
        &self,
        out: &mut Poly,
        mut next: impl FnMut() -> i64,
    ) -> Result<(), PirError> {
        self.check("polynomial", out)?;
        for i in 0..self.degree {
            self.set_signed(&mut out.words, i, next());
        }
        Ok(())
    }

    /// A polynomial from `d` coefficients (any `u64`, reduced mod `q`).
    pub fn poly_from_u64(&self, coeffs: &[u64]) -> Result<Poly, PirError> {
        let mut out = self.zero();
        self.set_from_u64(&mut out, coeffs)?;
        Ok(out)
    }

    /// A polynomial from `d` signed coefficients.
    pub fn poly_from_i64(&self, coeffs: &[i64]) -> Result<Poly, PirError> {
        let mut out = self.zero();
        self.set_from_i64(&mut out, coeffs)?;
        Ok(out)
    }

    /// Coefficient `i` as a residue in `[0, q)`, by CRT reconstruction of the limbs.
    #[inline(always)]
    fn coeff_u64(&self, words: &[u32], i: usize) -> u64 {
        match self.crt {
            None => u64::from(words[i]),
            Some(crt) => {
                let xa = words[i];
                let xb = words[self.degree + i];
                let xa_b = crt.one_b.mul(xa, crt.qb);
                let diff = sub_if_ge(xb + crt.qb - xa_b, crt.qb);
                let t = crt.qa_inv_mod_qb.mul(diff, crt.qb);
                u64::from(xa) + u64::from(crt.qa) * u64::from(t)
            }
        }
    }

    /// Coefficient `i` centred into `(-q/2, q/2]`.
    #[inline(always)]
    fn coeff_centred(&self, words: &[u32], i: usize) -> i64 {
        let x = self.coeff_u64(words, i);
        // x > q/2 becomes x - q.
        let above = ((self.modulus / 2).wrapping_sub(x)) >> 63;
        (x as i64) - (self.modulus & above.wrapping_neg()) as i64
    }

    /// `out[i] ← a_i mod q` in `[0, q)`: CRT reconstruction of the limbs.
    pub fn to_u64(&self, a: &Poly, out: &mut [u64]) -> Result<(), PirError> {
        self.check("polynomial", a)?;
        self.check_len("coefficient buffer", out.len(), self.degree)?;
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.coeff_u64(&a.words, i);
        }
        Ok(())
    }

    /// `out[i] ← a_i` centred into `(-q/2, q/2]`.
    pub fn to_centred(&self, a: &Poly, out: &mut [i64]) -> Result<(), PirError> {
        self.check("polynomial", a)?;
        self.check_len("coefficient buffer", out.len(), self.degree)?;
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.coeff_centred(&a.words, i);
        }
        Ok(())
    }

    /// The largest `|a_i|` over the centred coefficients (for noise measurement).
    pub fn max_abs(&self, a: &Poly) -> Result<u64, PirError> {
        self.check("polynomial", a)?;
        let mut max = 0u64;
        for i in 0..self.degree {
            let c = self.coeff_centred(&a.words, i);
            max = max.max(c.unsigned_abs());
        }
        Ok(max)
    }

    /// `out ← NTT(a)`, limb by limb.
    pub fn forward(&self, a: &Poly, out: &mut NttPoly) -> Result<(), PirError> {
        self.check("polynomial", a)?;
        self.check("NTT polynomial", out)?;
        out.words.copy_from_slice(&a.words);
        self.forward_words(&mut out.words)
    }

    /// The NTT form of `a`, transformed in place (no allocation).
    pub fn into_ntt(&self, mut a: Poly) -> Result<NttPoly, PirError> {
        self.check("polynomial", &a)?;
        self.forward_words(&mut a.words)?;
        Ok(NttPoly { words: a.words })
    }

    /// `out ← NTT^-1(a)`, limb by limb.
    pub fn inverse(&self, a: &NttPoly, out: &mut Poly) -> Result<(), PirError> {
        self.check("NTT polynomial", a)?;
        self.check("polynomial", out)?;
        out.words.copy_from_slice(&a.words);
        self.inverse_words(&mut out.words)
    }

    /// The coefficient form of `a`, transformed in place.
    pub fn into_coeffs(&self, mut a: NttPoly) -> Result<Poly, PirError> {
        self.check("NTT polynomial", &a)?;
        self.inverse_words(&mut a.words)?;
        Ok(Poly { words: a.words })
    }

    fn forward_words(&self, words: &mut [u32]) -> Result<(), PirError> {
        for (limb, chunk) in self.limbs.iter().zip(words.chunks_exact_mut(self.degree)) {
            limb.plan.forward(chunk)?;
        }
        Ok(())
    }

    fn inverse_words(&self, words: &mut [u32]) -> Result<(), PirError> {
        for (limb, chunk) in self.limbs.iter().zip(words.chunks_exact_mut(self.degree)) {
            limb.plan.inverse(chunk)?;
        }
        Ok(())
    }

    fn zip_limbs<T: RingElement>(
        &self,
        a: &mut T,
        b: &T,
        op: impl Fn(&Limb, u32, u32) -> u32,
    ) -> Result<(), PirError> {
        self.check("ring element", a)?;
        self.check("ring element", b)?;
        let d = self.degree;
        for (l, limb) in self.limbs.iter().enumerate() {
            let range = l * d..(l + 1) * d;
            for (x, &y) in a.words_mut()[range.clone()]
                .iter_mut()
                .zip(&b.words()[range])
            {
                *x = op(limb, *x, y);
            }
        }
        Ok(())
    }

    /// `a ← a + b` (either form; both the same form).
    pub fn add_assign<T: RingElement>(&self, a: &mut T, b: &T) -> Result<(), PirError> {
        self.zip_limbs(a, b, Limb::add)
    }

    /// `a ← a - b`.
    pub fn sub_assign<T: RingElement>(&self, a: &mut T, b: &T) -> Result<(), PirError> {
        self.zip_limbs(a, b, Limb::sub)
    }

    /// `a ← -a`.
    pub fn neg_assign<T: RingElement>(&self, a: &mut T) -> Result<(), PirError> {
        self.check("ring element", a)?;
        let d = self.degree;
        for (limb, chunk) in self.limbs.iter().zip(a.words_mut().chunks_exact_mut(d)) {
            for x in chunk {
                *x = limb.neg(*x);
            }
        }
        Ok(())
    }

    /// `a ← c·a` for an integer `c` (reduced mod `q`); linear, so either form.
    pub fn scalar_mul_assign<T: RingElement>(&self, a: &mut T, c: u64) -> Result<(), PirError> {
        self.check("ring element", a)?;
        let d = self.degree;
        for (limb, chunk) in self.limbs.iter().zip(a.words_mut().chunks_exact_mut(d)) {
            let factor = Shoup::new(limb.reduce_u64(c), limb.q);
            for x in chunk {
                *x = factor.mul(*x, limb.q);
            }
        }
        Ok(())
    }

    /// `out ← a·b` (negacyclic product, as a pointwise product of NTT forms).
    pub fn mul(&self, out: &mut NttPoly, a: &NttPoly, b: &NttPoly) -> Result<(), PirError> {
        self.check("NTT product", out)?;
        out.words.copy_from_slice(&a.words);
        self.mul_assign(out, b)
    }

    /// `a ← a·b`.
    pub fn mul_assign(&self, a: &mut NttPoly, b: &NttPoly) -> Result<(), PirError> {
        self.check("NTT product operand", a)?;
        self.check("NTT product operand", b)?;
        let d = self.degree;
        for (l, limb) in self.limbs.iter().enumerate() {
            let range = l * d..(l + 1) * d;
            limb.plan
                .mul(&mut a.words[range.clone()], &b.words[range])?;
        }
        Ok(())
    }

    /// `acc ← acc + a·b`.
    pub fn mul_acc(&self, acc: &mut NttPoly, a: &NttPoly, b: &NttPoly) -> Result<(), PirError> {
        self.check("NTT accumulator", acc)?;
        self.check("NTT product operand", a)?;
        self.check("NTT product operand", b)?;
        let d = self.degree;
        for (l, limb) in self.limbs.iter().enumerate() {
            let range = l * d..(l + 1) * d;
            limb.plan.mul_acc(
                &mut acc.words[range.clone()],
                &a.words[range.clone()],
                &b.words[range],
            )?;
        }
        Ok(())
    }

    /// `k` reduced mod `2d`, or an error if it is even (then `x -> x^k` is not an
    /// automorphism of the ring).
    fn automorphism_power(&self, k: usize) -> Result<usize, PirError> {
        if k.is_multiple_of(2) {
            return Err(PirError::Param(format!(
                "automorphism x -> x^{k}: the power must be odd"
            )));
        }
        Ok(k % (2 * self.degree))
    }

    /// `out ← τ_k(a) = a(x^k)` for odd `k`, in coefficient form. Coefficient `i` moves to
    /// `i·k mod 2d`, and since `x^d = -1` an image at or past `d` is negated and taken back
    /// by `d`. The map depends only on `k`, not on the coefficients.
    pub fn automorphism(&self, a: &Poly, k: usize, out: &mut Poly) -> Result<(), PirError> {
        self.check("polynomial", a)?;
        self.check("polynomial", out)?;
        let k = self.automorphism_power(k)?;
        let (d, two_d) = (self.degree, 2 * self.degree);
        for (l, limb) in self.limbs.iter().enumerate() {
            let src = &a.words[l * d..(l + 1) * d];
            let dst = &mut out.words[l * d..(l + 1) * d];
            for (i, &x) in src.iter().enumerate() {
                let j = i * k % two_d;
                if j < d {
                    dst[j] = x;
                } else {
                    dst[j - d] = limb.neg(x);
                }
            }
        }
        Ok(())
    }

    /// `out ← τ_k(a)` in NTT form, as a permutation without signs: NTT slot `j` holds
    /// `a(ψ^e)` with `e = 2·brv(j) + 1` (see `pir/ntt.rs`), and `τ_k(a)(ψ^e) = a(ψ^(e·k))`, so
    /// output slot `j` is input slot `brv((e·k mod 2d - 1) / 2)`.
    pub fn automorphism_ntt(
        &self,
        a: &NttPoly,
        k: usize,
        out: &mut NttPoly,
    ) -> Result<(), PirError> {
        self.check("NTT polynomial", a)?;
        self.check("NTT polynomial", out)?;
        let k = self.automorphism_power(k)?;
        let d = self.degree;
        let log_d = d.trailing_zeros();
        let two_d_mask = 2 * d - 1;
        for j in 0..d {
            let e = 2 * bit_reverse(j, log_d) + 1;
            let image = (e * k) & two_d_mask;
            let src = bit_reverse((image - 1) / 2, log_d);
            for l in 0..self.limbs.len() {
                out.words[l * d + j] = a.words[l * d + src];
            }
        }
        Ok(())
    }

    /// A gadget of `digits` digits in base `base` for this ring, checked to decompose every
    /// residue exactly (the largest centred magnitude, `floor(q/2)`, must leave no carry), and
    /// with `base/2` below every limb prime (so a digit is a residue of each limb).
    pub fn gadget(&self, base: u64, digits: usize) -> Result<Gadget, PirError> {
        let smallest_prime = self.limb_moduli().min().unwrap_or(0);
        if base < 2 || base / 2 >= u64::from(smallest_prime) || digits == 0 || digits > 64 {
            return Err(PirError::Param(format!(
                "gadget base {base} with {digits} digits for modulus {}",
                self.modulus
            )));
        }
        let mut powers = Vec::with_capacity(digits);
        let mut power = 1u128;
        for _ in 0..digits {
            powers.push(power as u64);
            power = power * u128::from(base) % u128::from(self.modulus);
        }
        let gadget = Gadget {
            base,
            digits,
            divisor: ConstDivisor::new(base),
            powers,
        };
        // Carries grow monotonically with the magnitude, so covering floor(q/2) covers all.
        if gadget.digits_of(self.modulus / 2, 0, |_, _| {}) != 0 {
            return Err(PirError::Param(format!(
                "gadget base {base} with {digits} digits cannot represent every residue mod {}",
                self.modulus
            )));
        }
        Ok(gadget)
    }

    /// `out[j] ← digit j of a` under `gadget` (signed digits, see [`Gadget`]), in coefficient
    /// form, so that `Σ z^j · out[j] = a`. `out` holds exactly `t` polynomials.
    pub fn decompose(&self, a: &Poly, gadget: &Gadget, out: &mut [Poly]) -> Result<(), PirError> {
        self.check("polynomial", a)?;
        self.check_len("gadget digit polynomials", out.len(), gadget.digits)?;
        for digit in out.iter() {
            self.check("gadget digit polynomial", digit)?;
        }
        for i in 0..self.degree {
            let c = self.coeff_centred(&a.words, i);
            let sign = (c >> 63) as u64;
            let magnitude = ((c as u64) ^ sign).wrapping_sub(sign);
            // The gadget was checked to cover floor(q/2), so the final carry is zero.
            gadget.digits_of(magnitude, sign, |j, digit| {
                self.set_signed(&mut out[j].words, i, digit);
            });
        }
        Ok(())
    }

    /// `out ← Σ z^j · digits[j]`, the inverse of [`Ring::decompose`] (either form).
    pub fn recompose<T: RingElement + Clone>(
        &self,
        digits: &[T],
        gadget: &Gadget,
        out: &mut T,
    ) -> Result<(), PirError> {
        self.check_len("gadget digit polynomials", digits.len(), gadget.digits)?;
        self.check("recomposed polynomial", out)?;
        out.words_mut().fill(0);
        let d = self.degree;
        for (digit, &power) in digits.iter().zip(&gadget.powers) {
            self.check("gadget digit polynomial", digit)?;
            for (l, limb) in self.limbs.iter().enumerate() {
                let factor = Shoup::new(limb.reduce_u64(power), limb.q);
                let range = l * d..(l + 1) * d;
                let src = &digit.words()[range.clone()];
                for (o, &x) in out.words_mut()[range].iter_mut().zip(src) {
                    *o = limb.add(*o, factor.mul(x, limb.q));
                }
            }
        }
        Ok(())
    }

    /// `out[i] ← round(target · a_i / q) mod target`: the rounding of modulus switching from
    /// `q` to `target` (as in Respire's modulus switching of the response; with `target = p` it is
    /// decryption's rounding of `Δ·m + e` to `m`). Constant time: a bit-serial division by `q`
    /// with a fixed number of steps. `2 <= target < 2^62`.
    pub fn round_to(&self, a: &Poly, target: u64, out: &mut [u64]) -> Result<(), PirError> {
        self.check("polynomial", a)?;
        self.check_len("rounded coefficients", out.len(), self.degree)?;
        if !(2..MODULUS_BOUND).contains(&target) {
            return Err(PirError::Param(format!(
                "rounding target modulus {target} outside 2..2^62"
            )));
        }
        let q = self.modulus;
        let half = u128::from(q / 2);
        let largest = u128::from(target) * u128::from(q - 1) + half;
        let bits = 128 - largest.leading_zeros();
        for (i, o) in out.iter_mut().enumerate() {
            let x = self.coeff_u64(&a.words, i);
            let n = u128::from(target) * u128::from(x) + half;
            // The quotient is at most target, which wraps to 0.
            let rounded = div_constant_time(n, q, bits);
            *o = sub_if_ge_u64(rounded, target);
        }
        Ok(())
    }

    /// `out ← Δ·m` with `Δ = floor(q/p)`, for a plaintext `m` of `d` residues mod `p`: the
    /// encoding of a message mod `p` in the top bits of `Z_q` (Regev's encoding as Respire
    /// and Spiral use it). Plaintext residues at or above `p` are an error.
    pub fn scale_plaintext(&self, msg: &[u32], p: u64, out: &mut Poly) -> Result<(), PirError> {
        self.check("scaled plaintext", out)?;
        self.check_len("plaintext coefficients", msg.len(), self.degree)?;
        if p < 2 || p > self.modulus {
            return Err(PirError::Param(format!(
                "plaintext modulus {p} for ciphertext modulus {}",
                self.modulus
            )));
        }
        if let Some(&bad) = msg.iter().find(|&&m| u64::from(m) >= p) {
            return Err(PirError::Param(format!(
                "plaintext coefficient {bad} is not below the plaintext modulus {p}"
            )));
        }
        let delta = self.modulus / p;
        for (i, &m) in msg.iter().enumerate() {
            // m < p and delta·p <= q < 2^62, so the product fits.
            self.set_unsigned(&mut out.words, i, delta * u64::from(m));
        }
        Ok(())
    }
}

fn bit_reverse(k: usize, bits: u32) -> usize {
    k.reverse_bits() >> (usize::BITS - bits)
}

/// `a^-1 mod m` by the extended Euclidean algorithm (public values only).
fn mod_inverse(a: u64, m: u64) -> Option<u64> {
    let (mut r0, mut r1) = (i128::from(m), i128::from(a));
    let (mut t0, mut t1) = (0i128, 1i128);
    while r1 != 0 {
        let quotient = r0 / r1;
        (r0, r1) = (r1, r0 - quotient * r1);
        (t0, t1) = (t1, t0 - quotient * t1);
    }
    (r0 == 1).then(|| t0.rem_euclid(i128::from(m)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn rings() -> [Ring; 2] {
        [
            Ring::large().expect("large ring"),
            Ring::small().expect("small ring"),
        ]
    }

    fn random_poly(ring: &Ring, rng: &mut StdRng) -> (Poly, Vec<u64>) {
        let coeffs: Vec<u64> = (0..ring.degree())
            .map(|_| rng.gen_range(0..ring.modulus()))
            .collect();
        (ring.poly_from_u64(&coeffs).expect("poly"), coeffs)
    }

    /// Schoolbook negacyclic product over `u128`, mod `q`.
    fn schoolbook(a: &[u64], b: &[u64], q: u64) -> Vec<u64> {
        let n = a.len();
        let q = u128::from(q);
        let mut c = vec![0u128; n];
        for (i, &x) in a.iter().enumerate() {
            for (j, &y) in b.iter().enumerate() {
                let p = u128::from(x) * u128::from(y) % q;
                let k = (i + j) % n;
                c[k] = if i + j < n {
                    (c[k] + p) % q
                } else {
                    (c[k] + q - p) % q
                };
            }
        }
        c.into_iter().map(|x| x as u64).collect()
    }

    fn coeffs(ring: &Ring, a: &Poly) -> Vec<u64> {
        let mut out = vec![0; ring.degree()];
        ring.to_u64(a, &mut out).expect("lengths");
        out
    }

    #[test]
    fn crt_compose_and_decompose_round_trip() {
        let mut rng = StdRng::seed_from_u64(10);
        for ring in rings() {
            let q = ring.modulus();
            let (a, expected) = random_poly(&ring, &mut rng);
            assert_eq!(coeffs(&ring, &a), expected);
            // Limb residues are the coefficient mod each prime.
            for (l, p) in ring.limb_moduli().enumerate() {
                let limb = a.limb(l, ring.degree());
                for (x, e) in limb.iter().zip(&expected) {
                    assert_eq!(u64::from(*x), e % u64::from(p));
                }
            }
            // Boundaries: 0, 1, q-1, q/2, q/2 + 1, and wrap-around of u64 and i64 inputs.
            let mut edge = vec![0u64; ring.degree()];
            edge[..5].copy_from_slice(&[0, 1, q - 1, q / 2, q / 2 + 1]);
            edge[5] = u64::MAX;
            let a = ring.poly_from_u64(&edge).expect("poly");
            let back = coeffs(&ring, &a);
            assert_eq!(&back[..5], &edge[..5]);
            assert_eq!(back[5], u64::MAX % q);
            let mut centred = vec![0i64; ring.degree()];
            ring.to_centred(&a, &mut centred).expect("lengths");
            assert_eq!(
                &centred[..5],
                &[0, 1, -1, (q / 2) as i64, (q / 2) as i64 + 1 - q as i64]
            );
            let signed: Vec<i64> = (0..ring.degree() as i64)
                .map(|i| (i - 1000) * 7_919_000_000_013 % (q as i64))
                .chain([i64::MIN, i64::MAX])
                .skip(2)
                .collect();
            let a = ring.poly_from_i64(&signed).expect("poly");
            for (x, s) in coeffs(&ring, &a).iter().zip(&signed) {
                assert_eq!(*x as i128, i128::from(*s).rem_euclid(i128::from(q)));
            }
        }
    }

    #[test]
    fn products_match_schoolbook() {
        let mut rng = StdRng::seed_from_u64(11);
        for ring in rings() {
            let (a, a_coeffs) = random_poly(&ring, &mut rng);
            let (b, b_coeffs) = random_poly(&ring, &mut rng);
            let (c, c_coeffs) = random_poly(&ring, &mut rng);
            let expected = schoolbook(&a_coeffs, &b_coeffs, ring.modulus());
            let a_hat = ring.into_ntt(a.clone()).expect("ntt");
            let b_hat = ring.into_ntt(b).expect("ntt");
            let mut product = ring.zero_ntt();
            ring.mul(&mut product, &a_hat, &b_hat).expect("mul");
            let product_coeffs = ring.into_coeffs(product).expect("inverse");
            assert_eq!(coeffs(&ring, &product_coeffs), expected);

            let mut acc = ring.into_ntt(c).expect("ntt");
            ring.mul_acc(&mut acc, &a_hat, &b_hat).expect("mul_acc");
            let acc = ring.into_coeffs(acc).expect("inverse");
            let q = ring.modulus();
            let with_c: Vec<u64> = expected
                .iter()
                .zip(&c_coeffs)
                .map(|(x, y)| (x + y) % q)
                .collect();
            assert_eq!(coeffs(&ring, &acc), with_c);

            // The forward/inverse pair through caller buffers.
            let mut hat = ring.zero_ntt();
            ring.forward(&a, &mut hat).expect("forward");
            assert_eq!(hat, a_hat);
            let mut back = ring.zero();
            ring.inverse(&hat, &mut back).expect("inverse");
            assert_eq!(back, a);
        }
    }

    #[test]
    fn additive_and_scalar_operations() {
        let mut rng = StdRng::seed_from_u64(12);
        for ring in rings() {
            let q = ring.modulus();
            let (a, a_coeffs) = random_poly(&ring, &mut rng);
            let (b, b_coeffs) = random_poly(&ring, &mut rng);
            let mut sum = a.clone();
            ring.add_assign(&mut sum, &b).expect("add");
            let mut diff = a.clone();
            ring.sub_assign(&mut diff, &b).expect("sub");
            let mut neg = a.clone();
            ring.neg_assign(&mut neg).expect("neg");
            let scalar = rng.gen::<u64>();
            let mut scaled = a.clone();
            ring.scalar_mul_assign(&mut scaled, scalar).expect("scalar");
            for i in 0..ring.degree() {
                let (x, y) = (a_coeffs[i], b_coeffs[i]);
                assert_eq!(coeffs(&ring, &sum)[i], (x + y) % q);
                assert_eq!(coeffs(&ring, &diff)[i], (x + q - y) % q);
                assert_eq!(coeffs(&ring, &neg)[i], (q - x) % q);
                let expected = u128::from(x) * u128::from(scalar % q) % u128::from(q);
                assert_eq!(u128::from(coeffs(&ring, &scaled)[i]), expected);
            }
            // Scalar multiplication commutes with the NTT (it is linear).
            let mut scaled_hat = ring.into_ntt(a).expect("ntt");
            ring.scalar_mul_assign(&mut scaled_hat, scalar)
                .expect("scalar");
            assert_eq!(ring.into_coeffs(scaled_hat).expect("inverse"), scaled);
        }
    }

    #[test]
    fn automorphism_is_the_signed_index_map_in_both_forms() {
        let mut rng = StdRng::seed_from_u64(13);
        for ring in rings() {
            let d = ring.degree();
            let q = ring.modulus();
            let (a, a_coeffs) = random_poly(&ring, &mut rng);
            let a_hat = ring.into_ntt(a.clone()).expect("ntt");
            for k in [1, 3, 5, d + 1, 2 * d - 1, 4 * d + 3] {
                let mut out = ring.zero();
                ring.automorphism(&a, k, &mut out).expect("automorphism");
                let mut expected = vec![0u64; d];
                for (i, &x) in a_coeffs.iter().enumerate() {
                    let j = i * k % (2 * d);
                    if j < d {
                        expected[j] = x;
                    } else {
                        expected[j - d] = (q - x) % q;
                    }
                }
                assert_eq!(coeffs(&ring, &out), expected, "k={k}");
                let mut out_hat = ring.zero_ntt();
                ring.automorphism_ntt(&a_hat, k, &mut out_hat)
                    .expect("automorphism");
                assert_eq!(ring.into_coeffs(out_hat).expect("inverse"), out, "k={k}");
            }
            // τ_k is a ring homomorphism: τ(a·b) = τ(a)·τ(b).
            let (b, _) = random_poly(&ring, &mut rng);
            let b_hat = ring.into_ntt(b).expect("ntt");
            let mut ab = ring.zero_ntt();
            ring.mul(&mut ab, &a_hat, &b_hat).expect("mul");
            let (mut tab, mut ta, mut tb) = (ring.zero_ntt(), ring.zero_ntt(), ring.zero_ntt());
            ring.automorphism_ntt(&ab, 5, &mut tab).expect("auto");
            ring.automorphism_ntt(&a_hat, 5, &mut ta).expect("auto");
            ring.automorphism_ntt(&b_hat, 5, &mut tb).expect("auto");
            ring.mul_assign(&mut ta, &tb).expect("mul");
            assert_eq!(ta, tab);
            assert!(ring.automorphism(&a, 4, &mut ring.zero()).is_err());
        }
    }

    /// Respire's gadgets (Tables 3-5; pir-schemes.md section 4.1) and one for the small ring.
    #[test]
    fn gadget_decomposition_recomposes_exactly() {
        let mut rng = StdRng::seed_from_u64(14);
        let large = Ring::large().expect("ring");
        let small = Ring::small().expect("ring");
        let cases = [
            (&large, 127, 8),
            (&large, 16088, 4),
            (&large, 7, 20),
            (&large, 258794687, 2),
            (&large, 2, 56),
            (&small, 16, 6),
            (&small, 32, 5),
        ];
        for (ring, z, t) in cases {
            let gadget = ring.gadget(z, t).expect("gadget covers q");
            let q = ring.modulus();
            let (mut a, _) = random_poly(ring, &mut rng);
            // Include the extremes of the centred range.
            let mut edge = coeffs(ring, &a);
            edge[..6].copy_from_slice(&[0, 1, q - 1, q / 2, q / 2 + 1, q / 2 - 1]);
            ring.set_from_u64(&mut a, &edge).expect("set");
            let mut digits = vec![ring.zero(); t];
            ring.decompose(&a, &gadget, &mut digits).expect("decompose");
            let mut centred = vec![0i64; ring.degree()];
            for digit in &digits {
                ring.to_centred(digit, &mut centred).expect("centred");
                let bound = (z / 2) as i64;
                assert!(
                    centred.iter().all(|&c| -bound <= c && c <= bound),
                    "z={z} t={t}"
                );
            }
            let mut back = ring.zero();
            ring.recompose(&digits, &gadget, &mut back)
                .expect("recompose");
            assert_eq!(back, a, "z={z} t={t}");
        }
        // One digit too few cannot cover q.
        assert!(large.gadget(127, 7).is_err());
        assert!(small.gadget(16, 5).is_err());
        assert!(large.gadget(1, 60).is_err());
    }

    #[test]
    fn rounding_matches_exact_arithmetic() {
        let mut rng = StdRng::seed_from_u64(15);
        for ring in rings() {
            let q = ring.modulus();
            let (mut a, _) = random_poly(&ring, &mut rng);
            let mut edge = coeffs(&ring, &a);
            edge[..5].copy_from_slice(&[0, 1, q - 1, q / 2, q / 2 + 1]);
            ring.set_from_u64(&mut a, &edge).expect("set");
            for target in [2u64, 16, 256, u64::from(SMALL_MODULUS), q - 1] {
                let mut out = vec![0u64; ring.degree()];
                ring.round_to(&a, target, &mut out).expect("round");
                for (x, r) in edge.iter().zip(&out) {
                    // round(t·x/q) = floor((2·t·x + q) / 2q).
                    let exact = (2 * u128::from(target) * u128::from(*x) + u128::from(q))
                        / (2 * u128::from(q));
                    assert_eq!(
                        u128::from(*r),
                        exact % u128::from(target),
                        "t={target} x={x}"
                    );
                }
            }
        }
    }

    #[test]
    fn constant_divisor_is_exact() {
        let mut rng = StdRng::seed_from_u64(16);
        for d in [1u64, 2, 3, 7, 127, 16088, 258794687, (1 << 62) + 5] {
            let div = ConstDivisor::new(d);
            for x in
                (0..1000)
                    .map(|_| rng.gen_range(0..1u64 << 63))
                    .chain([0, d - 1, d, (1 << 63) - 1])
            {
                assert_eq!(div.div_rem(x), (x / d, x % d), "d={d} x={x}");
            }
        }
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let large = Ring::large().expect("ring");
        let small = Ring::small().expect("ring");
        let a = large.zero();
        let mut s = small.zero();
        assert!(matches!(
            small.add_assign(&mut s, &a),
            Err(PirError::Length { .. })
        ));
        assert!(matches!(
            large.forward(&s, &mut large.zero_ntt()),
            Err(PirError::Length { .. })
        ));
        assert!(matches!(
            small.poly_from_u64(&[1, 2, 3]),
            Err(PirError::Length { .. })
        ));
        let g = large.gadget(127, 8).expect("gadget");
        let mut digits = vec![large.zero(); 7];
        assert!(matches!(
            large.decompose(&a, &g, &mut digits),
            Err(PirError::Length { .. })
        ));
        assert!(small
            .scale_plaintext(&[16; SMALL_DEGREE], 16, &mut s)
            .is_err());
        assert!(Ring::new(512, &[SMALL_MODULUS, SMALL_MODULUS]).is_err());
        assert!(Ring::new(512, &[]).is_err());
        assert!(Ring::new(512, &[7681]).is_err());
    }
}
