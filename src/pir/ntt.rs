//! The project's own negacyclic number-theoretic transform over one prime `q < 2^30`, for
//! the RLWE arithmetic of Respire. MulPIR (cargo feature `mulpir`, off by default) still uses
//! `fhe-math`, whose transform comes from `tfhe-ntt` (licence note in docs/ntt.md).
//!
//! A [`NttPlan`] for `(q, n)` maps a polynomial `a(X) = Σ a_i X^i` of
//! `Z_q[X]/(X^n + 1)` to its values at the odd powers of `ψ`, the smallest primitive `2n`-th
//! root of unity mod `q`. Forward output `j` is `a(ψ^(2·brv(j) + 1))`, where `brv` reverses
//! the `log2 n` bits of `j` (bit-reversed order, as every in-place Cooley-Tukey transform
//! without a permutation pass). Products in that domain are pointwise, so
//! `inverse(forward(a) ∘ forward(b))` is the negacyclic product `a·b mod (X^n + 1, q)`.
//!
//! Published algorithms used, none of them new:
//! - the merged negacyclic transform (the `ψ`-twist folded into the twiddles, Cooley-Tukey
//!   forward from natural to bit-reversed order, Gentleman-Sande inverse back):
//!   P. Longa and M. Naehrig, "Speeding up the Number Theoretic Transform for Faster Ideal
//!   Lattice-Based Cryptography", CANS 2016, Algorithms 1 and 2, with the final `n^-1`
//!   folded into the last inverse stage;
//! - lazy butterflies and Shoup multiplication by a constant with a precomputed quotient
//!   `w' = floor(w·2^32 / q)`: D. Harvey, "Faster arithmetic for number-theoretic
//!   transforms", J. Symbolic Computation 60 (2014), Algorithms 2 and 4 (the forward keeps
//!   values in `[0, 4q)`, the inverse in `[0, 2q)`). Shoup rather than Montgomery because
//!   every multiplication inside the transform is by a precomputed twiddle, and Shoup needs
//!   no change of representation, so plan outputs are plain residues;
//! - Barrett reduction (Handbook of Applied Cryptography, Algorithm 14.42, base 2) for the
//!   pointwise products, where neither factor is a constant.
//!
//! Storage is `u32`: with `q < 2^30` every lazy value (below `4q`) fits, an AVX2 register
//! holds 8 coefficients instead of 4, and a polynomial of 4096 coefficients is 16 KiB, half
//! an L1 data cache. The RLWE layer keeps one `u32` limb per CRT prime.
//!
//! Two implementations of each operation, chosen once per plan ([`Backend`]): AVX2 (x86_64,
//! detected at run time) and portable Rust. Both compute the same fully reduced results.
//! Neither allocates, and neither branches on coefficient values: conditional subtractions
//! are masks (portable) or unsigned minimums (AVX2), because the inputs are ciphertexts and
//! secret-dependent polynomials.

use super::PirError;
use thiserror::Error;

/// Smallest supported `log2 n`: the AVX2 transform works on blocks of 16 coefficients.
pub const MIN_LOG_N: u32 = 4;
/// Largest supported `log2 n`.
pub const MAX_LOG_N: u32 = 14;
/// Moduli must be below this bound: Harvey's forward butterfly keeps values below `4q`,
/// which must fit in a `u32`.
pub const MODULUS_BOUND: u64 = 1 << 30;

/// Why [`NttPlan::new`] or [`NttPlan::with_backend`] refused its parameters.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NttParamError {
    #[error("length {n} is not a power of two")]
    LengthNotPowerOfTwo { n: usize },
    #[error("length {n} is outside 2^{MIN_LOG_N}..=2^{MAX_LOG_N}")]
    LengthOutOfRange { n: usize },
    #[error("modulus {q} is outside 3..2^30")]
    ModulusOutOfRange { q: u64 },
    #[error("modulus {q} is not 1 mod 2n = {}, so it has no primitive 2n-th root of unity", 2 * n)]
    NoRootOfUnity { q: u64, n: usize },
    #[error("modulus {q} is not prime (divisible by {factor})")]
    NotPrime { q: u64, factor: u64 },
    #[error("the {0:?} backend is not available on this CPU")]
    BackendUnavailable(Backend),
}

/// Which implementation a plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Plain Rust, any target.
    Portable,
    /// `std::arch::x86_64` AVX2 intrinsics, 8 coefficients per register.
    Avx2,
}

impl Backend {
    /// The fastest backend this CPU supports.
    pub fn detect() -> Backend {
        if Backend::Avx2.is_available() {
            Backend::Avx2
        } else {
            Backend::Portable
        }
    }

    /// Whether this CPU can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Avx2 => false,
        }
    }
}

/// A multiplier `w < q` with its Shoup quotient `floor(w·2^32 / q)`; shared with the
/// ring arithmetic built on these plans (`pir/respire/ring.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShoupConst {
    w: u32,
    quotient: u32,
}

impl ShoupConst {
    pub(crate) fn new(w: u32, q: u32) -> ShoupConst {
        // w < q, so the quotient is below 2^32.
        let quotient = ((u64::from(w) << 32) / u64::from(q)) as u32;
        ShoupConst { w, quotient }
    }

    /// `x·w mod q` in `[0, 2q)` for any `x < 2^32` (Harvey 2014, Algorithm 2).
    #[inline(always)]
    pub(crate) fn mul_lazy(self, x: u32, q: u32) -> u32 {
        let estimate = ((u64::from(x) * u64::from(self.quotient)) >> 32) as u32;
        // The true difference is below 2q < 2^32, so 32-bit wrapping arithmetic is exact.
        x.wrapping_mul(self.w)
            .wrapping_sub(estimate.wrapping_mul(q))
    }

    /// `x·w mod q`, fully reduced.
    #[inline(always)]
    pub(crate) fn mul(self, x: u32, q: u32) -> u32 {
        sub_if_ge(self.mul_lazy(x, q), q)
    }
}

/// `v - m` if `v >= m`, else `v`, without a branch: the borrow of the 64-bit subtraction
/// becomes a mask that adds `m` back.
#[inline(always)]
pub(crate) fn sub_if_ge(v: u32, m: u32) -> u32 {
    let diff = u64::from(v).wrapping_sub(u64::from(m));
    let borrow = (diff >> 63) as u32;
    (diff as u32).wrapping_add(m & borrow.wrapping_neg())
}

/// Twiddle factors by index `k` in `1..n` (index 0 unused), each with its Shoup quotient.
#[derive(Debug, Clone)]
struct Twiddles {
    w: Vec<u32>,
    quotient: Vec<u32>,
}

impl Twiddles {
    /// `root^brv(k)` for `k` in `0..n`.
    fn bit_reversed_powers(root: u32, q: u32, log_n: u32) -> Twiddles {
        let n = 1usize << log_n;
        let mut powers = Vec::with_capacity(n);
        let mut x = 1u32;
        for _ in 0..n {
            powers.push(x);
            x = mul_mod(x, root, q);
        }
        let w: Vec<u32> = (0..n).map(|k| powers[bit_reverse(k, log_n)]).collect();
        let quotient = w.iter().map(|&w| ShoupConst::new(w, q).quotient).collect();
        Twiddles { w, quotient }
    }
}

/// A negacyclic NTT of length `n` modulo the prime `q`, with its precomputed tables.
///
/// Every operation checks slice lengths and returns [`PirError::Length`] on a mismatch.
/// Coefficient ranges are preconditions (documented per method, checked by `debug_assert`
/// only, since checking them in release would cost a pass over the data): outside them the
/// results are wrong but nothing panics or reads out of bounds.
#[derive(Debug, Clone)]
pub struct NttPlan {
    q: u32,
    n: usize,
    root: u32,
    backend: Backend,
    /// `ψ^brv(k)`: Cooley-Tukey stage with `m` groups uses entries `m..2m`.
    forward: Twiddles,
    /// `ψ^-brv(k)`: Gentleman-Sande stage with `m` groups uses entries `m..2m`.
    inverse: Twiddles,
    /// `n^-1`, and `ψ^-brv(1)·n^-1`: the scaling folded into the last inverse stage.
    n_inv: ShoupConst,
    inverse_last: ShoupConst,
    /// Barrett: `k` is the bit length of `q`, `mu = floor(2^(2k) / q)`.
    barrett_k: u32,
    barrett_mu: u32,
    /// Reduction of a `u64` as `hi·2^32 + lo`: `2^32 mod q`, and the Shoup quotient of 1.
    two_32: ShoupConst,
    one: ShoupConst,
    /// Products of two residues a [`WideAcc`] can add before it must be reduced.
    wide_capacity: u32,
}

impl NttPlan {
    /// A plan for length `n` (a power of two in `2^4..=2^14`) modulo the prime
    /// `q ≡ 1 (mod 2n)`, `q < 2^30`, on the fastest backend of this CPU.
    pub fn new(q: u64, n: usize) -> Result<NttPlan, PirError> {
        Self::build(q, n, Backend::detect())
    }

    /// The same plan on another backend, e.g. to compare the two.
    pub fn with_backend(&self, backend: Backend) -> Result<NttPlan, PirError> {
        if !backend.is_available() {
            return Err(NttParamError::BackendUnavailable(backend).into());
        }
        let mut plan = self.clone();
        plan.backend = backend;
        Ok(plan)
    }

    fn build(q: u64, n: usize, backend: Backend) -> Result<NttPlan, PirError> {
        if !n.is_power_of_two() {
            return Err(NttParamError::LengthNotPowerOfTwo { n }.into());
        }
        let log_n = n.trailing_zeros();
        if !(MIN_LOG_N..=MAX_LOG_N).contains(&log_n) {
            return Err(NttParamError::LengthOutOfRange { n }.into());
        }
        if !(3..MODULUS_BOUND).contains(&q) {
            return Err(NttParamError::ModulusOutOfRange { q }.into());
        }
        if q % (2 * n as u64) != 1 {
            return Err(NttParamError::NoRootOfUnity { q, n }.into());
        }
        if let Some(factor) = smallest_factor(q) {
            return Err(NttParamError::NotPrime { q, factor }.into());
        }
        // q < 2^30 was checked above.
        let q = q as u32;
        let root = smallest_primitive_root(q, n)?;
        let root_inv = pow_mod(root, 2 * n as u64 - 1, q);
        // n^-1 = q - (q-1)/n, since n divides q-1.
        let n_inv = q - (q - 1) / n as u32;
        let forward = Twiddles::bit_reversed_powers(root, q, log_n);
        let inverse = Twiddles::bit_reversed_powers(root_inv, q, log_n);
        let inverse_last = ShoupConst::new(mul_mod(inverse.w[1], n_inv, q), q);
        let barrett_k = 32 - q.leading_zeros();
        let barrett_mu = ((1u64 << (2 * barrett_k)) / u64::from(q)) as u32;
        let two_32 = ShoupConst::new(((1u64 << 32) % u64::from(q)) as u32, q);
        // Starting from a reduced value (< q), add products (< (q-1)^2) until the next would
        // overflow a u64.
        let max_product = u128::from(q - 1) * u128::from(q - 1);
        let capacity = (u128::from(u64::MAX) - u128::from(q - 1)) / max_product;
        let wide_capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
        Ok(NttPlan {
            q,
            n,
            root,
            backend,
            forward,
            inverse,
            n_inv: ShoupConst::new(n_inv, q),
            inverse_last,
            barrett_k,
            barrett_mu,
            two_32,
            one: ShoupConst::new(1, q),
            wide_capacity,
        })
    }

    /// The modulus `q`.
    pub fn modulus(&self) -> u32 {
        self.q
    }

    /// The length `n`.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false: a plan has at least 2^4 coefficients (for clippy's `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `ψ`, the primitive `2n`-th root of unity the transform evaluates at.
    pub fn root(&self) -> u32 {
        self.root
    }

    /// The implementation this plan runs.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many products [`NttPlan::mul_acc_wide`] adds before it folds the sums mod `q`:
    /// `floor((2^64 - q) / (q-1)^2)` (256 for a 28-bit `q`, 65,536 for a 24-bit one).
    pub fn wide_capacity(&self) -> u32 {
        self.wide_capacity
    }

    /// Forward transform in place: coefficients (each below `4q`) in natural order to
    /// evaluations in bit-reversed order, fully reduced (below `q`).
    /// `x mod q` for any `u64` (two Shoup products), for the ring arithmetic on this plan.
    #[inline(always)]
    pub(crate) fn reduce_u64(&self, x: u64) -> u32 {
        portable::reduce_u64(x, self)
    }

    pub fn forward(&self, a: &mut [u32]) -> Result<(), PirError> {
        self.check_len("NTT input", a.len())?;
        debug_assert!(a.iter().all(|&x| u64::from(x) < 4 * u64::from(self.q)));
        match self.backend {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a plan holds Backend::Avx2 only after is_available() found AVX2.
            Backend::Avx2 => unsafe { avx2::forward(self, a) },
            _ => portable::forward(self, a),
        }
        Ok(())
    }

    /// Inverse transform in place, including the `n^-1` scaling: evaluations (each below
    /// `2q`) in bit-reversed order to coefficients in natural order, fully reduced.
    pub fn inverse(&self, a: &mut [u32]) -> Result<(), PirError> {
        self.check_len("NTT input", a.len())?;
        debug_assert!(a.iter().all(|&x| x < 2 * self.q));
        match self.backend {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a plan holds Backend::Avx2 only after is_available() found AVX2.
            Backend::Avx2 => unsafe { avx2::inverse(self, a) },
            _ => portable::inverse(self, a),
        }
        Ok(())
    }

    /// `a ← a ∘ b mod q`, pointwise. Inputs below `2^k` (`k` the bit length of `q`, so any
    /// residue qualifies); the output is fully reduced.
    pub fn mul(&self, a: &mut [u32], b: &[u32]) -> Result<(), PirError> {
        self.check_len("NTT product operand", a.len())?;
        self.check_len("NTT product operand", b.len())?;
        debug_assert!(self.below_barrett_bound(a) && self.below_barrett_bound(b));
        match self.backend {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a plan holds Backend::Avx2 only after is_available() found AVX2.
            Backend::Avx2 => unsafe { avx2::mul(self, a, b) },
            _ => portable::mul(self, a, b),
        }
        Ok(())
    }

    /// `acc ← acc + a ∘ b mod q`, pointwise, with one reduction per coefficient (the sum
    /// stays below `2^2k`, Barrett's input bound). Inputs below `2^k`; `acc` comes out
    /// fully reduced.
    pub fn mul_acc(&self, acc: &mut [u32], a: &[u32], b: &[u32]) -> Result<(), PirError> {
        self.check_len("NTT accumulator", acc.len())?;
        self.check_len("NTT product operand", a.len())?;
        self.check_len("NTT product operand", b.len())?;
        debug_assert!(
            self.below_barrett_bound(acc)
                && self.below_barrett_bound(a)
                && self.below_barrett_bound(b)
        );
        match self.backend {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a plan holds Backend::Avx2 only after is_available() found AVX2.
            Backend::Avx2 => unsafe { avx2::mul_acc(self, acc, a, b) },
            _ => portable::mul_acc(self, acc, a, b),
        }
        Ok(())
    }

    /// A zeroed wide accumulator for this plan (allocates `n` words; reuse it).
    pub fn wide_acc(&self) -> WideAcc {
        WideAcc {
            sums: vec![0; self.n],
            q: self.q,
            terms: 0,
        }
    }

    /// `acc += a ∘ b` without reducing: for long inner products (Respire's first dimension,
    /// gadget products), one reduction per coefficient at the end instead of one per term.
    /// Inputs must be fully reduced (below `q`). Every [`NttPlan::wide_capacity`] terms the
    /// sums are folded mod `q` in place, so they never overflow.
    pub fn mul_acc_wide(&self, acc: &mut WideAcc, a: &[u32], b: &[u32]) -> Result<(), PirError> {
        self.check_wide(acc)?;
        self.check_len("NTT product operand", a.len())?;
        self.check_len("NTT product operand", b.len())?;
        debug_assert!(a.iter().chain(b).all(|&x| x < self.q));
        if acc.terms >= self.wide_capacity {
            match self.backend {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: a plan holds Backend::Avx2 only after is_available() found AVX2.
                Backend::Avx2 => unsafe { avx2::fold_wide(self, &mut acc.sums) },
                _ => portable::fold_wide(self, &mut acc.sums),
            }
            acc.terms = 0;
        }
        match self.backend {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a plan holds Backend::Avx2 only after is_available() found AVX2.
            Backend::Avx2 => unsafe { avx2::mul_acc_wide(&mut acc.sums, a, b) },
            _ => portable::mul_acc_wide(&mut acc.sums, a, b),
        }
        acc.terms += 1;
        Ok(())
    }

    /// `out ← acc mod q`, fully reduced and in the usual coefficient order. `acc` is left as
    /// it is ([`WideAcc::clear`] starts a new sum).
    pub fn reduce_wide(&self, acc: &WideAcc, out: &mut [u32]) -> Result<(), PirError> {
        self.check_wide(acc)?;
        self.check_len("NTT output", out.len())?;
        match self.backend {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a plan holds Backend::Avx2 only after is_available() found AVX2.
            Backend::Avx2 => unsafe { avx2::reduce_wide(self, &acc.sums, out) },
            _ => portable::reduce_wide(self, &acc.sums, out),
        }
        Ok(())
    }

    fn check_len(&self, what: &'static str, got: usize) -> Result<(), PirError> {
        if got == self.n {
            Ok(())
        } else {
            Err(PirError::Length {
                what,
                expected: self.n,
                got,
            })
        }
    }

    fn check_wide(&self, acc: &WideAcc) -> Result<(), PirError> {
        self.check_len("NTT wide accumulator", acc.sums.len())?;
        if acc.q == self.q {
            Ok(())
        } else {
            Err(PirError::Param(format!(
                "wide accumulator for modulus {} used with modulus {}",
                acc.q, self.q
            )))
        }
    }

    fn below_barrett_bound(&self, a: &[u32]) -> bool {
        a.iter().all(|&x| u64::from(x) < 1u64 << self.barrett_k)
    }
}

/// Unreduced sums of pointwise products (see [`NttPlan::mul_acc_wide`]). The words are
/// kept in an internal order (per block of 8 coefficients: the 4 even positions, then the 4
/// odd ones, which is what the AVX2 multiply produces), so they are only read through
/// [`NttPlan::reduce_wide`].
#[derive(Debug, Clone)]
pub struct WideAcc {
    sums: Vec<u64>,
    q: u32,
    /// Products added since the sums were last below `q`.
    terms: u32,
}

impl WideAcc {
    /// Back to zero, keeping the allocation.
    pub fn clear(&mut self) {
        self.sums.fill(0);
        self.terms = 0;
    }
}

fn mul_mod(a: u32, b: u32, q: u32) -> u32 {
    (u64::from(a) * u64::from(b) % u64::from(q)) as u32
}

fn pow_mod(base: u32, mut exp: u64, q: u32) -> u32 {
    let (mut result, mut base) = (1u32, base);
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, base, q);
        }
        base = mul_mod(base, base, q);
        exp >>= 1;
    }
    result
}

fn bit_reverse(k: usize, bits: u32) -> usize {
    k.reverse_bits() >> (usize::BITS - bits)
}

/// The smallest prime factor of `x` below `x` itself, by trial division (`x < 2^30`, so at
/// most 2^15 candidates, once per plan).
fn smallest_factor(x: u64) -> Option<u64> {
    (2..)
        .take_while(|d| d * d <= x)
        .find(|&d| x.is_multiple_of(d))
}

/// The distinct prime factors of `x`.
fn prime_factors(mut x: u64) -> Vec<u64> {
    let mut factors = Vec::new();
    while let Some(p) = smallest_factor(x) {
        factors.push(p);
        while x.is_multiple_of(p) {
            x /= p;
        }
    }
    if x > 1 {
        factors.push(x);
    }
    factors
}

/// The smallest primitive `2n`-th root of unity mod the prime `q ≡ 1 (mod 2n)`. Found from
/// the smallest generator `g` of `Z_q^*` (the smallest `g` with `g^((q-1)/p) ≠ 1` for every
/// prime `p | q-1`): `g^((q-1)/2n)` is one primitive root, its odd powers are all of them,
/// and the smallest of those is the one used. Deterministic, and independent of how the
/// first root was found.
fn smallest_primitive_root(q: u32, n: usize) -> Result<u32, PirError> {
    let order = u64::from(q - 1);
    let factors = prime_factors(order);
    let generator = (2..q)
        .find(|&g| factors.iter().all(|&p| pow_mod(g, order / p, q) != 1))
        .ok_or_else(|| PirError::Internal(format!("finding a generator mod {q}")))?;
    let first = pow_mod(generator, order / (2 * n as u64), q);
    let step = mul_mod(first, first, q);
    let mut candidate = first;
    let mut smallest = first;
    for _ in 0..n {
        smallest = smallest.min(candidate);
        candidate = mul_mod(candidate, step, q);
    }
    Ok(smallest)
}

/// Plain Rust. The loops are simple enough for the compiler to vectorise some of them.
mod portable {
    use super::{sub_if_ge, NttPlan, ShoupConst};

    #[inline(always)]
    fn mul_shoup_lazy(x: u32, c: ShoupConst, q: u32) -> u32 {
        c.mul_lazy(x, q)
    }

    /// `p mod q` in `[0, 3q)` for `p < 2^2k` (HAC 14.42: the estimate is at most 2 short).
    #[inline(always)]
    fn barrett_lazy(p: u64, k: u32, mu: u32, q: u32) -> u32 {
        let estimate = ((p >> (k - 1)) * u64::from(mu)) >> (k + 1);
        (p - estimate * u64::from(q)) as u32
    }

    /// `x mod q` for any `u64`, as `hi·(2^32 mod q) + lo·1` with two Shoup products.
    #[inline(always)]
    pub(super) fn reduce_u64(x: u64, plan: &NttPlan) -> u32 {
        let q = plan.q;
        let hi = mul_shoup_lazy((x >> 32) as u32, plan.two_32, q);
        let lo = mul_shoup_lazy(x as u32, plan.one, q);
        sub_if_ge(sub_if_ge(hi + lo, 2 * q), q)
    }

    pub(super) fn forward(plan: &NttPlan, a: &mut [u32]) {
        let (q, two_q) = (plan.q, 2 * plan.q);
        let n = a.len();
        let (mut m, mut t) = (1, n / 2);
        while t >= 1 {
            let twiddles = plan.forward.w[m..2 * m]
                .iter()
                .zip(&plan.forward.quotient[m..2 * m]);
            for (block, (&w, &quotient)) in a.chunks_exact_mut(2 * t).zip(twiddles) {
                let c = ShoupConst { w, quotient };
                let (xs, ys) = block.split_at_mut(t);
                for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
                    // Harvey's Algorithm 4: in and out in [0, 4q).
                    let u = sub_if_ge(*x, two_q);
                    let v = mul_shoup_lazy(*y, c, q);
                    *x = u + v;
                    *y = u + two_q - v;
                }
            }
            m *= 2;
            t /= 2;
        }
        for x in a.iter_mut() {
            *x = sub_if_ge(sub_if_ge(*x, two_q), q);
        }
    }

    pub(super) fn inverse(plan: &NttPlan, a: &mut [u32]) {
        let (q, two_q) = (plan.q, 2 * plan.q);
        let n = a.len();
        let (mut m, mut t) = (n / 2, 1);
        while m > 1 {
            let twiddles = plan.inverse.w[m..2 * m]
                .iter()
                .zip(&plan.inverse.quotient[m..2 * m]);
            for (block, (&w, &quotient)) in a.chunks_exact_mut(2 * t).zip(twiddles) {
                let c = ShoupConst { w, quotient };
                let (xs, ys) = block.split_at_mut(t);
                for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
                    // Harvey's inverse butterfly: in and out in [0, 2q).
                    let (u, v) = (*x, *y);
                    *x = sub_if_ge(u + v, two_q);
                    *y = mul_shoup_lazy(u + two_q - v, c, q);
                }
            }
            m /= 2;
            t *= 2;
        }
        // Last stage, with n^-1 folded into both outputs.
        let (xs, ys) = a.split_at_mut(n / 2);
        for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
            let (u, v) = (*x, *y);
            *x = sub_if_ge(mul_shoup_lazy(u + v, plan.n_inv, q), q);
            *y = sub_if_ge(mul_shoup_lazy(u + two_q - v, plan.inverse_last, q), q);
        }
    }

    pub(super) fn mul(plan: &NttPlan, a: &mut [u32], b: &[u32]) {
        let q = plan.q;
        for (x, &y) in a.iter_mut().zip(b) {
            let p = u64::from(*x) * u64::from(y);
            let r = barrett_lazy(p, plan.barrett_k, plan.barrett_mu, q);
            *x = sub_if_ge(sub_if_ge(r, 2 * q), q);
        }
    }

    pub(super) fn mul_acc(plan: &NttPlan, acc: &mut [u32], a: &[u32], b: &[u32]) {
        let q = plan.q;
        for ((s, &x), &y) in acc.iter_mut().zip(a).zip(b) {
            let p = u64::from(x) * u64::from(y) + u64::from(*s);
            let r = barrett_lazy(p, plan.barrett_k, plan.barrett_mu, q);
            *s = sub_if_ge(sub_if_ge(r, 2 * q), q);
        }
    }

    /// Position of coefficient `j` of a block of 8 in the wide accumulator's block.
    #[inline(always)]
    fn wide_slot(j: usize) -> usize {
        j / 2 + 4 * (j & 1)
    }

    pub(super) fn mul_acc_wide(sums: &mut [u64], a: &[u32], b: &[u32]) {
        let blocks = sums.as_chunks_mut::<8>().0.iter_mut();
        for ((s, x), y) in blocks.zip(a.as_chunks::<8>().0).zip(b.as_chunks::<8>().0) {
            for j in 0..8 {
                s[wide_slot(j)] += u64::from(x[j]) * u64::from(y[j]);
            }
        }
    }

    pub(super) fn fold_wide(plan: &NttPlan, sums: &mut [u64]) {
        for s in sums.iter_mut() {
            *s = u64::from(reduce_u64(*s, plan));
        }
    }

    pub(super) fn reduce_wide(plan: &NttPlan, sums: &[u64], out: &mut [u32]) {
        let blocks = sums.as_chunks::<8>().0.iter();
        for (s, o) in blocks.zip(out.as_chunks_mut::<8>().0) {
            for (j, o) in o.iter_mut().enumerate() {
                *o = reduce_u64(s[wide_slot(j)], plan);
            }
        }
    }
}

/// AVX2, 8 coefficients per register. The arithmetic is the portable path's, lane by lane;
/// conditional subtractions are `min(v, v - m)` on unsigned lanes (`v - m` wraps above `v`
/// exactly when `v < m`).
///
/// Shoup's high product `floor(x·w' / 2^32)` has no 32-bit instruction, so it is two
/// `_mm256_mul_epu32` (even lanes, then odd lanes shifted down) and a blend; the low
/// products are `_mm256_mullo_epi32`.
///
/// The transform's stages with half-blocks `t >= 8` broadcast one twiddle per block. The
/// last three forward stages (`t = 4, 2, 1`; the first three inverse ones) work on 16
/// coefficients `a0..a15` in two registers, shuffled between stages so that each stage has
/// its `x` and `y` operands in separate registers:
/// - `t = 4`: `x = a0..3 a8..11`, `y = a4..7 a12..15` (twiddles `w0 ×4, w1 ×4`);
/// - `t = 2`: `x = a0 a1 a4 a5 a8 a9 a12 a13`, `y = a2 a3 a6 a7 ...` (`w0 w0 w1 w1 ...`);
/// - `t = 1`: `x = a0 a2 ... a14`, `y = a1 a3 ... a15` (`w0 .. w7`, a plain load).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::NttPlan;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load(src: &[u32; 8]) -> __m256i {
        // SAFETY: src is 32 readable bytes; loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(src.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn store(dst: &mut [u32; 8], v: __m256i) {
        // SAFETY: dst is 32 writable bytes; storeu has no alignment requirement.
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), v) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_wide(src: &[u64; 4]) -> __m256i {
        // SAFETY: src is 32 readable bytes; loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(src.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn store_wide(dst: &mut [u64; 4], v: __m256i) {
        // SAFETY: dst is 32 writable bytes; storeu has no alignment requirement.
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), v) }
    }

    /// `w0 w0 w1 w1 w2 w2 w3 w3`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_pairs(src: &[u32; 4]) -> __m256i {
        // SAFETY: src is 16 readable bytes; loadu has no alignment requirement.
        let four = unsafe { _mm_loadu_si128(src.as_ptr().cast()) };
        let index = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
        _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(four), index)
    }

    /// `w0 ×4, w1 ×4`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_quads(src: &[u32; 2]) -> __m256i {
        _mm256_setr_m128i(_mm_set1_epi32(src[0] as i32), _mm_set1_epi32(src[1] as i32))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn splat(x: u32) -> __m256i {
        _mm256_set1_epi32(x as i32)
    }

    /// `v - m` in the lanes where `v >= m`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sub_if_ge(v: __m256i, m: __m256i) -> __m256i {
        _mm256_min_epu32(v, _mm256_sub_epi32(v, m))
    }

    /// The high halves of the 32x32-bit products, lane by lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul_hi(x: __m256i, y: __m256i) -> __m256i {
        let even = _mm256_srli_epi64::<32>(_mm256_mul_epu32(x, y));
        let odd = _mm256_mul_epu32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(y));
        _mm256_blend_epi32::<0b1010_1010>(even, odd)
    }

    /// `x·w mod q` in `[0, 2q)`, lane by lane (Harvey 2014, Algorithm 2).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul_shoup_lazy(x: __m256i, w: __m256i, quotient: __m256i, q: __m256i) -> __m256i {
        let estimate = mul_hi(x, quotient);
        _mm256_sub_epi32(_mm256_mullo_epi32(x, w), _mm256_mullo_epi32(estimate, q))
    }

    /// Harvey's forward butterfly: in and out in `[0, 4q)`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn forward_butterfly(
        x: __m256i,
        y: __m256i,
        w: __m256i,
        quotient: __m256i,
        q: __m256i,
        two_q: __m256i,
    ) -> (__m256i, __m256i) {
        let u = sub_if_ge(x, two_q);
        let v = mul_shoup_lazy(y, w, quotient, q);
        (
            _mm256_add_epi32(u, v),
            _mm256_sub_epi32(_mm256_add_epi32(u, two_q), v),
        )
    }

    /// Harvey's inverse butterfly: in and out in `[0, 2q)`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn inverse_butterfly(
        x: __m256i,
        y: __m256i,
        w: __m256i,
        quotient: __m256i,
        q: __m256i,
        two_q: __m256i,
    ) -> (__m256i, __m256i) {
        let sum = sub_if_ge(_mm256_add_epi32(x, y), two_q);
        let diff = _mm256_sub_epi32(_mm256_add_epi32(x, two_q), y);
        (sum, mul_shoup_lazy(diff, w, quotient, q))
    }

    /// `(x of a0..a7, y of a0..a7)` to `(x of a0..a15 even, odd)` and back (the same blend
    /// both ways, see the module doc's `t = 2` and `t = 1` layouts).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn swap_odd_even(x: __m256i, y: __m256i) -> (__m256i, __m256i) {
        (
            _mm256_blend_epi32::<0b1010_1010>(x, _mm256_slli_epi64::<32>(y)),
            _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(x), y),
        )
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn forward(plan: &NttPlan, a: &mut [u32]) {
        let (q, two_q) = (splat(plan.q), splat(2 * plan.q));
        let n = a.len();
        let (w, quotient) = (&plan.forward.w[..], &plan.forward.quotient[..]);
        let (mut m, mut t) = (1, n / 2);
        while t >= 8 {
            let twiddles = w[m..2 * m].iter().zip(&quotient[m..2 * m]);
            for (block, (&wk, &qk)) in a.chunks_exact_mut(2 * t).zip(twiddles) {
                let (wk, qk) = (splat(wk), splat(qk));
                let (xs, ys) = block.split_at_mut(t);
                let (xs, ys) = (xs.as_chunks_mut::<8>().0, ys.as_chunks_mut::<8>().0);
                for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
                    let (u, v) = forward_butterfly(load(x), load(y), wk, qk, q, two_q);
                    store(x, u);
                    store(y, v);
                }
            }
            m *= 2;
            t /= 2;
        }
        // The last three stages, 16 coefficients at a time; m = n/8 here.
        let w4 = w[n / 8..n / 4].as_chunks::<2>().0.iter();
        let q4 = quotient[n / 8..n / 4].as_chunks::<2>().0.iter();
        let w2 = w[n / 4..n / 2].as_chunks::<4>().0.iter();
        let q2 = quotient[n / 4..n / 2].as_chunks::<4>().0.iter();
        let w1 = w[n / 2..n].as_chunks::<8>().0.iter();
        let q1 = quotient[n / 2..n].as_chunks::<8>().0.iter();
        let twiddles = w4.zip(q4).zip(w2.zip(q2)).zip(w1.zip(q1));
        for (block, (((w4, q4), (w2, q2)), (w1, q1))) in
            a.as_chunks_mut::<16>().0.iter_mut().zip(twiddles)
        {
            let (v0, v1) = load16(block);
            let x = _mm256_permute2x128_si256::<0x20>(v0, v1);
            let y = _mm256_permute2x128_si256::<0x31>(v0, v1);
            let (x, y) = forward_butterfly(x, y, load_quads(w4), load_quads(q4), q, two_q);
            let (x, y) = (_mm256_unpacklo_epi64(x, y), _mm256_unpackhi_epi64(x, y));
            let (x, y) = forward_butterfly(x, y, load_pairs(w2), load_pairs(q2), q, two_q);
            let (x, y) = swap_odd_even(x, y);
            let (x, y) = forward_butterfly(x, y, load(w1), load(q1), q, two_q);
            // [0, 4q) to [0, q).
            let x = sub_if_ge(sub_if_ge(x, two_q), q);
            let y = sub_if_ge(sub_if_ge(y, two_q), q);
            // Interleave back: a0..3 a8..11 and a4..7 a12..15, then the halves in order.
            let (l, h) = (_mm256_unpacklo_epi32(x, y), _mm256_unpackhi_epi32(x, y));
            store16(
                block,
                _mm256_permute2x128_si256::<0x20>(l, h),
                _mm256_permute2x128_si256::<0x31>(l, h),
            );
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn inverse(plan: &NttPlan, a: &mut [u32]) {
        let (q, two_q) = (splat(plan.q), splat(2 * plan.q));
        let n = a.len();
        let (w, quotient) = (&plan.inverse.w[..], &plan.inverse.quotient[..]);
        // The first three stages (m = n/2, n/4, n/8), 16 coefficients at a time: the
        // forward tail's shuffles in reverse.
        let w1 = w[n / 2..n].as_chunks::<8>().0.iter();
        let q1 = quotient[n / 2..n].as_chunks::<8>().0.iter();
        let w2 = w[n / 4..n / 2].as_chunks::<4>().0.iter();
        let q2 = quotient[n / 4..n / 2].as_chunks::<4>().0.iter();
        let w4 = w[n / 8..n / 4].as_chunks::<2>().0.iter();
        let q4 = quotient[n / 8..n / 4].as_chunks::<2>().0.iter();
        let twiddles = w1.zip(q1).zip(w2.zip(q2)).zip(w4.zip(q4));
        for (block, (((w1, q1), (w2, q2)), (w4, q4))) in
            a.as_chunks_mut::<16>().0.iter_mut().zip(twiddles)
        {
            let (v0, v1) = load16(block);
            // a0..3 a8..11 and a4..7 a12..15, then even and odd coefficients.
            let l = _mm256_permute2x128_si256::<0x20>(v0, v1);
            let h = _mm256_permute2x128_si256::<0x31>(v0, v1);
            let (l, h) = (_mm256_castsi256_ps(l), _mm256_castsi256_ps(h));
            let x = _mm256_castps_si256(_mm256_shuffle_ps::<0b10_00_10_00>(l, h));
            let y = _mm256_castps_si256(_mm256_shuffle_ps::<0b11_01_11_01>(l, h));
            let (x, y) = inverse_butterfly(x, y, load(w1), load(q1), q, two_q);
            let (x, y) = swap_odd_even(x, y);
            let (x, y) = inverse_butterfly(x, y, load_pairs(w2), load_pairs(q2), q, two_q);
            let (x, y) = (_mm256_unpacklo_epi64(x, y), _mm256_unpackhi_epi64(x, y));
            let (x, y) = inverse_butterfly(x, y, load_quads(w4), load_quads(q4), q, two_q);
            store16(
                block,
                _mm256_permute2x128_si256::<0x20>(x, y),
                _mm256_permute2x128_si256::<0x31>(x, y),
            );
        }
        let (mut m, mut t) = (n / 16, 8);
        while m > 1 {
            let twiddles = w[m..2 * m].iter().zip(&quotient[m..2 * m]);
            for (block, (&wk, &qk)) in a.chunks_exact_mut(2 * t).zip(twiddles) {
                let (wk, qk) = (splat(wk), splat(qk));
                let (xs, ys) = block.split_at_mut(t);
                let (xs, ys) = (xs.as_chunks_mut::<8>().0, ys.as_chunks_mut::<8>().0);
                for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
                    let (u, v) = inverse_butterfly(load(x), load(y), wk, qk, q, two_q);
                    store(x, u);
                    store(y, v);
                }
            }
            m /= 2;
            t *= 2;
        }
        // Last stage, with n^-1 folded into both outputs.
        let (n_inv, n_inv_q) = (splat(plan.n_inv.w), splat(plan.n_inv.quotient));
        let (last, last_q) = (
            splat(plan.inverse_last.w),
            splat(plan.inverse_last.quotient),
        );
        let (xs, ys) = a.split_at_mut(n / 2);
        let (xs, ys) = (xs.as_chunks_mut::<8>().0, ys.as_chunks_mut::<8>().0);
        for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
            let (u, v) = (load(x), load(y));
            let sum = _mm256_add_epi32(u, v);
            let diff = _mm256_sub_epi32(_mm256_add_epi32(u, two_q), v);
            store(x, sub_if_ge(mul_shoup_lazy(sum, n_inv, n_inv_q, q), q));
            store(y, sub_if_ge(mul_shoup_lazy(diff, last, last_q, q), q));
        }
    }

    /// Barrett's `p mod q` in `[0, 3q)` for `p < 2^2k` in each 64-bit lane (the result in
    /// the low half, zero in the high half).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn barrett_lazy(p: __m256i, b: &Barrett) -> __m256i {
        let estimate = _mm256_mul_epu32(_mm256_srl_epi64(p, b.shift_down), b.mu);
        let estimate = _mm256_srl_epi64(estimate, b.shift_up);
        _mm256_sub_epi64(p, _mm256_mul_epu32(estimate, b.q))
    }

    /// Barrett's constants in registers.
    struct Barrett {
        q: __m256i,
        mu: __m256i,
        /// `k - 1` and `k + 1`.
        shift_down: __m128i,
        shift_up: __m128i,
    }

    impl Barrett {
        #[inline]
        #[target_feature(enable = "avx2")]
        fn new(plan: &NttPlan) -> Barrett {
            Barrett {
                q: splat(plan.q),
                mu: splat(plan.barrett_mu),
                shift_down: _mm_cvtsi32_si128(plan.barrett_k as i32 - 1),
                shift_up: _mm_cvtsi32_si128(plan.barrett_k as i32 + 1),
            }
        }
    }

    /// `(acc + x·y) mod q`, fully reduced, lane by lane: the products of even and odd lanes
    /// in separate 64-bit registers, reduced, and blended back.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul_add_reduce(acc: __m256i, x: __m256i, y: __m256i, b: &Barrett) -> __m256i {
        let low_halves = _mm256_set1_epi64x(0xffff_ffff);
        let even = _mm256_add_epi64(_mm256_mul_epu32(x, y), _mm256_and_si256(acc, low_halves));
        let odd = _mm256_add_epi64(
            _mm256_mul_epu32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(y)),
            _mm256_srli_epi64::<32>(acc),
        );
        let even = barrett_lazy(even, b);
        let odd = barrett_lazy(odd, b);
        let r = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
        // [0, 3q) to [0, q).
        sub_if_ge(sub_if_ge(r, _mm256_add_epi32(b.q, b.q)), b.q)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn mul(plan: &NttPlan, a: &mut [u32], b: &[u32]) {
        let barrett = Barrett::new(plan);
        let zero = _mm256_setzero_si256();
        for (x, y) in a
            .as_chunks_mut::<8>()
            .0
            .iter_mut()
            .zip(b.as_chunks::<8>().0)
        {
            store(x, mul_add_reduce(zero, load(x), load(y), &barrett));
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn mul_acc(plan: &NttPlan, acc: &mut [u32], a: &[u32], b: &[u32]) {
        let barrett = Barrett::new(plan);
        let operands = a.as_chunks::<8>().0.iter().zip(b.as_chunks::<8>().0);
        for (s, (x, y)) in acc.as_chunks_mut::<8>().0.iter_mut().zip(operands) {
            store(s, mul_add_reduce(load(s), load(x), load(y), &barrett));
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn mul_acc_wide(sums: &mut [u64], a: &[u32], b: &[u32]) {
        let operands = a.as_chunks::<8>().0.iter().zip(b.as_chunks::<8>().0);
        for (s, (x, y)) in sums
            .as_chunks_mut::<4>()
            .0
            .chunks_exact_mut(2)
            .zip(operands)
        {
            let (x, y) = (load(x), load(y));
            let even = _mm256_mul_epu32(x, y);
            let odd = _mm256_mul_epu32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(y));
            if let [s_even, s_odd] = s {
                store_wide(s_even, _mm256_add_epi64(load_wide(s_even), even));
                store_wide(s_odd, _mm256_add_epi64(load_wide(s_odd), odd));
            }
        }
    }

    /// Each 64-bit lane mod `q` (in the low half, zero in the high half): `hi·(2^32 mod q)`
    /// and `lo` by Shoup, each in `[0, 2q)`, added and reduced.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce_u64(x: __m256i, c: &WideConsts) -> __m256i {
        let hi = _mm256_srli_epi64::<32>(x);
        let hi_estimate = _mm256_srli_epi64::<32>(_mm256_mul_epu32(hi, c.two_32_quotient));
        let hi_rem = _mm256_sub_epi64(
            _mm256_mul_epu32(hi, c.two_32),
            _mm256_mul_epu32(hi_estimate, c.q),
        );
        let lo_estimate = _mm256_srli_epi64::<32>(_mm256_mul_epu32(x, c.one_quotient));
        let lo_rem = _mm256_sub_epi64(
            _mm256_and_si256(x, c.low_halves),
            _mm256_mul_epu32(lo_estimate, c.q),
        );
        // Below 4q < 2^32; the high halves stay zero through the unsigned minimums.
        let r = _mm256_add_epi64(hi_rem, lo_rem);
        sub_if_ge(sub_if_ge(r, c.two_q), c.q)
    }

    struct WideConsts {
        q: __m256i,
        two_q: __m256i,
        two_32: __m256i,
        two_32_quotient: __m256i,
        one_quotient: __m256i,
        low_halves: __m256i,
    }

    impl WideConsts {
        #[inline]
        #[target_feature(enable = "avx2")]
        fn new(plan: &NttPlan) -> WideConsts {
            WideConsts {
                q: splat(plan.q),
                two_q: splat(2 * plan.q),
                two_32: splat(plan.two_32.w),
                two_32_quotient: splat(plan.two_32.quotient),
                one_quotient: splat(plan.one.quotient),
                low_halves: _mm256_set1_epi64x(0xffff_ffff),
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn fold_wide(plan: &NttPlan, sums: &mut [u64]) {
        let c = WideConsts::new(plan);
        for s in sums.as_chunks_mut::<4>().0 {
            store_wide(s, reduce_u64(load_wide(s), &c));
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn reduce_wide(plan: &NttPlan, sums: &[u64], out: &mut [u32]) {
        let c = WideConsts::new(plan);
        let blocks = sums.as_chunks::<4>().0.chunks_exact(2);
        for (s, o) in blocks.zip(out.as_chunks_mut::<8>().0) {
            if let [s_even, s_odd] = s {
                let even = reduce_u64(load_wide(s_even), &c);
                let odd = reduce_u64(load_wide(s_odd), &c);
                store(
                    o,
                    _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd)),
                );
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load16(src: &[u32; 16]) -> (__m256i, __m256i) {
        // SAFETY: src is 64 readable bytes; loadu has no alignment requirement.
        unsafe {
            (
                _mm256_loadu_si256(src.as_ptr().cast()),
                _mm256_loadu_si256(src.as_ptr().add(8).cast()),
            )
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn store16(dst: &mut [u32; 16], v0: __m256i, v1: __m256i) {
        // SAFETY: dst is 64 writable bytes; storeu has no alignment requirement.
        unsafe {
            _mm256_storeu_si256(dst.as_mut_ptr().cast(), v0);
            _mm256_storeu_si256(dst.as_mut_ptr().add(8).cast(), v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Respire's primes at its ring sizes, and MulPIR's moduli at 4096.
    const PAIRS: [(u64, usize); 7] = [
        (268369921, 2048),
        (249561089, 2048),
        (16760833, 512),
        (268369921, 4096),
        (134176769, 4096),
        (134111233, 4096),
        (134012929, 4096),
    ];

    /// The plan on every backend this CPU has.
    fn plans(q: u64, n: usize) -> Vec<NttPlan> {
        let plan = NttPlan::new(q, n).expect("valid parameters");
        [Backend::Portable, Backend::Avx2]
            .into_iter()
            .filter(|b| b.is_available())
            .map(|b| plan.with_backend(b).expect("available backend"))
            .collect()
    }

    fn random_below(rng: &mut StdRng, bound: u64, n: usize) -> Vec<u32> {
        (0..n).map(|_| rng.gen_range(0..bound) as u32).collect()
    }

    /// The negacyclic product by definition: `X^n = -1`.
    fn schoolbook(a: &[u32], b: &[u32], q: u32) -> Vec<u32> {
        let (n, q) = (a.len(), u64::from(q));
        let mut c = vec![0u64; n];
        for (i, &x) in a.iter().enumerate() {
            for (j, &y) in b.iter().enumerate() {
                let p = u64::from(x) * u64::from(y) % q;
                let k = (i + j) % n;
                c[k] = if i + j < n { c[k] + p } else { c[k] + q - p } % q;
            }
        }
        c.into_iter().map(|x| x as u32).collect()
    }

    fn evaluate(a: &[u32], x: u32, q: u32) -> u32 {
        a.iter().rev().fold(0, |acc, &c| {
            ((u64::from(acc) * u64::from(x) + u64::from(c)) % u64::from(q)) as u32
        })
    }

    #[test]
    fn forward_evaluates_at_odd_powers_of_the_root_in_bit_reversed_order() {
        let mut rng = StdRng::seed_from_u64(1);
        for (q, n) in [(7681, 16), (7681, 256), (268369921, 16), (16760833, 64)] {
            for plan in plans(q, n) {
                let a = random_below(&mut rng, q, n);
                let mut hat = a.clone();
                plan.forward(&mut hat).expect("length");
                let log_n = n.trailing_zeros();
                for (j, &value) in hat.iter().enumerate() {
                    let exponent = 2 * bit_reverse(j, log_n) as u64 + 1;
                    let point = pow_mod(plan.root(), exponent, plan.modulus());
                    assert_eq!(
                        value,
                        evaluate(&a, point, plan.modulus()),
                        "q={q} n={n} j={j}"
                    );
                }
            }
        }
    }

    #[test]
    fn root_is_the_smallest_primitive_2n_th_root() {
        for (q, n) in PAIRS.into_iter().chain([(7681, 16), (268369921, 16384)]) {
            let plan = NttPlan::new(q, n).expect("valid parameters");
            let (root, q) = (plan.root(), plan.modulus());
            // x^n = -1 is exactly "x is a primitive 2n-th root" when n is a power of two.
            assert_eq!(pow_mod(root, n as u64, q), q - 1, "q={q} n={n}");
            assert!(
                (1..root).all(|x| pow_mod(x, n as u64, q) != q - 1),
                "q={q} n={n}"
            );
        }
    }

    #[test]
    fn inverse_undoes_forward_at_every_size() {
        let mut rng = StdRng::seed_from_u64(2);
        let sizes = (MIN_LOG_N..=MAX_LOG_N).map(|log_n| (268369921, 1 << log_n));
        for (q, n) in sizes.chain(PAIRS) {
            for plan in plans(q, n) {
                let a = random_below(&mut rng, q, n);
                let mut b = a.clone();
                plan.forward(&mut b).expect("length");
                assert!(b.iter().all(|&x| u64::from(x) < q));
                plan.inverse(&mut b).expect("length");
                assert_eq!(a, b, "q={q} n={n} {:?}", plan.backend());
            }
        }
    }

    #[test]
    fn pointwise_products_are_negacyclic_products() {
        let mut rng = StdRng::seed_from_u64(3);
        for (q, n) in PAIRS {
            let a = random_below(&mut rng, q, n);
            let b = random_below(&mut rng, q, n);
            let c = random_below(&mut rng, q, n);
            let expected = schoolbook(&a, &b, q as u32);
            for plan in plans(q, n) {
                let (mut a_hat, mut b_hat) = (a.clone(), b.clone());
                plan.forward(&mut a_hat).expect("length");
                plan.forward(&mut b_hat).expect("length");
                let mut product = a_hat.clone();
                plan.mul(&mut product, &b_hat).expect("length");
                plan.inverse(&mut product).expect("length");
                assert_eq!(product, expected, "mul q={q} n={n} {:?}", plan.backend());

                // c + a·b through mul_acc.
                let mut acc = c.clone();
                plan.forward(&mut acc).expect("length");
                plan.mul_acc(&mut acc, &a_hat, &b_hat).expect("length");
                plan.inverse(&mut acc).expect("length");
                let with_c: Vec<u32> = expected
                    .iter()
                    .zip(&c)
                    .map(|(&x, &y)| ((u64::from(x) + u64::from(y)) % q) as u32)
                    .collect();
                assert_eq!(acc, with_c, "mul_acc q={q} n={n} {:?}", plan.backend());
            }
        }
    }

    /// Inner products longer than the wide capacity, so the accumulator folds on the way.
    #[test]
    fn wide_accumulation_matches_exact_sums() {
        let mut rng = StdRng::seed_from_u64(4);
        for (q, n) in [(268369921, 512), (16760833, 512), (1073479681, 64)] {
            for plan in plans(q, n) {
                let terms = plan.wide_capacity() as usize * 2 + 3;
                let terms = terms.min(1000);
                let mut exact = vec![0u128; n];
                let mut acc = plan.wide_acc();
                let mut fully_reduced = vec![0u32; n];
                for _ in 0..terms {
                    let a = random_below(&mut rng, q, n);
                    let b = random_below(&mut rng, q, n);
                    for ((e, &x), &y) in exact.iter_mut().zip(&a).zip(&b) {
                        *e += u128::from(x) * u128::from(y);
                    }
                    plan.mul_acc_wide(&mut acc, &a, &b).expect("length");
                    plan.mul_acc(&mut fully_reduced, &a, &b).expect("length");
                }
                let expected: Vec<u32> =
                    exact.iter().map(|&e| (e % u128::from(q)) as u32).collect();
                let mut out = vec![0u32; n];
                plan.reduce_wide(&acc, &mut out).expect("length");
                assert_eq!(out, expected, "q={q} {:?}", plan.backend());
                assert_eq!(fully_reduced, expected, "q={q} {:?}", plan.backend());
                acc.clear();
                plan.reduce_wide(&acc, &mut out).expect("length");
                assert!(out.iter().all(|&x| x == 0));
            }
        }
    }

    /// The largest sum a wide accumulator can hold: every product (q-1)^2, to the capacity.
    #[test]
    fn wide_accumulation_at_capacity_with_maximal_products() {
        for (q, n) in [(268369921, 16), (1073479681, 16)] {
            for plan in plans(q, n) {
                let top = vec![plan.modulus() - 1; n];
                let mut acc = plan.wide_acc();
                let terms = 3 * u64::from(plan.wide_capacity()) + 1;
                for _ in 0..terms {
                    plan.mul_acc_wide(&mut acc, &top, &top).expect("length");
                }
                let mut out = vec![0u32; n];
                plan.reduce_wide(&acc, &mut out).expect("length");
                let expected = (u128::from(terms) * u128::from(q - 1) * u128::from(q - 1)
                    % u128::from(q)) as u32;
                assert!(
                    out.iter().all(|&x| x == expected),
                    "q={q} {:?}",
                    plan.backend()
                );
            }
        }
    }

    /// Both backends on the same inputs, including the largest each operation accepts.
    #[test]
    fn backends_agree() {
        if !Backend::Avx2.is_available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        // 1073741441 is the largest prime below 2^30 that is 1 mod 32.
        let extremes = [(1073479681, 16), (1073741441, 16), (7681, 32)];
        for (q, n) in PAIRS.into_iter().chain(extremes) {
            let portable = NttPlan::new(q, n)
                .and_then(|p| p.with_backend(Backend::Portable))
                .expect("valid parameters");
            let avx2 = portable.with_backend(Backend::Avx2).expect("AVX2");
            let barrett_bound = 1u64 << (64 - u64::from(portable.modulus()).leading_zeros());
            for _ in 0..20 {
                let a = random_below(&mut rng, 4 * q, n);
                let (mut x, mut y) = (a.clone(), a.clone());
                portable.forward(&mut x).expect("length");
                avx2.forward(&mut y).expect("length");
                assert_eq!(x, y, "forward q={q} n={n}");

                let a = random_below(&mut rng, 2 * q, n);
                let (mut x, mut y) = (a.clone(), a.clone());
                portable.inverse(&mut x).expect("length");
                avx2.inverse(&mut y).expect("length");
                assert_eq!(x, y, "inverse q={q} n={n}");
                assert!(x.iter().all(|&v| u64::from(v) < q));

                let a = random_below(&mut rng, barrett_bound, n);
                let b = random_below(&mut rng, barrett_bound, n);
                let c = random_below(&mut rng, barrett_bound, n);
                let (mut x, mut y) = (a.clone(), a.clone());
                portable.mul(&mut x, &b).expect("length");
                avx2.mul(&mut y, &b).expect("length");
                assert_eq!(x, y, "mul q={q} n={n}");
                assert!(x.iter().all(|&v| u64::from(v) < q));
                let (mut x, mut y) = (c.clone(), c.clone());
                portable.mul_acc(&mut x, &a, &b).expect("length");
                avx2.mul_acc(&mut y, &a, &b).expect("length");
                assert_eq!(x, y, "mul_acc q={q} n={n}");
                assert!(x.iter().all(|&v| u64::from(v) < q));
            }
        }
    }

    #[test]
    fn boundary_values() {
        for (q, n) in PAIRS {
            let top = (q - 1) as u32;
            let patterns: [Vec<u32>; 4] = [
                vec![0; n],
                vec![top; n],
                (0..n).map(|i| if i % 2 == 0 { top } else { 0 }).collect(),
                (0..n).map(|i| if i == n - 1 { top } else { 0 }).collect(),
            ];
            for plan in plans(q, n) {
                for a in &patterns {
                    let mut b = a.clone();
                    plan.forward(&mut b).expect("length");
                    assert!(b.iter().all(|&x| x <= top));
                    plan.inverse(&mut b).expect("length");
                    assert_eq!(&b, a, "q={q} n={n} {:?}", plan.backend());
                }
                // (q-1)·(q-1) everywhere in the NTT domain is 1 everywhere: the polynomial 1.
                let mut product = vec![top; n];
                plan.mul(&mut product, &patterns[1]).expect("length");
                assert!(product.iter().all(|&x| x == 1));
                plan.inverse(&mut product).expect("length");
                assert_eq!(product[0], 1);
                assert!(product[1..].iter().all(|&x| x == 0));
                // The largest lazy forward input, 4q - 1, is q - 1 mod q.
                let mut lazy = vec![(4 * q - 1) as u32; n];
                let mut reduced = vec![top; n];
                plan.forward(&mut lazy).expect("length");
                plan.forward(&mut reduced).expect("length");
                assert!(lazy == reduced, "q={q} n={n} {:?}", plan.backend());
            }
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        let cases: [(u64, usize, NttParamError); 10] = [
            (
                268369921,
                3000,
                NttParamError::LengthNotPowerOfTwo { n: 3000 },
            ),
            (268369921, 0, NttParamError::LengthNotPowerOfTwo { n: 0 }),
            (268369921, 8, NttParamError::LengthOutOfRange { n: 8 }),
            (
                268369921,
                1 << 15,
                NttParamError::LengthOutOfRange { n: 1 << 15 },
            ),
            (0, 16, NttParamError::ModulusOutOfRange { q: 0 }),
            (1 << 30, 16, NttParamError::ModulusOutOfRange { q: 1 << 30 }),
            (
                u64::MAX,
                16,
                NttParamError::ModulusOutOfRange { q: u64::MAX },
            ),
            // 2^13 · 16379 + 1: a root of order 8192 but not 16384.
            (
                134176769,
                8192,
                NttParamError::NoRootOfUnity {
                    q: 134176769,
                    n: 8192,
                },
            ),
            // 2^12 + 1 = 17 · 241.
            (
                4097,
                1024,
                NttParamError::NotPrime {
                    q: 4097,
                    factor: 17,
                },
            ),
            (1025, 16, NttParamError::NotPrime { q: 1025, factor: 5 }),
        ];
        for (q, n, expected) in cases {
            match NttPlan::new(q, n) {
                Err(PirError::Ntt(e)) => assert_eq!(e, expected, "q={q} n={n}"),
                other => panic!("q={q} n={n}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let plan = NttPlan::new(16760833, 512).expect("valid parameters");
        let other = NttPlan::new(268369921, 512).expect("valid parameters");
        let (mut short, long, right) = (vec![0u32; 511], vec![0u32; 1024], vec![0u32; 512]);
        let mut out = right.clone();
        assert!(matches!(
            plan.forward(&mut short),
            Err(PirError::Length { got: 511, .. })
        ));
        assert!(matches!(
            plan.inverse(&mut short),
            Err(PirError::Length { .. })
        ));
        assert!(matches!(
            plan.mul(&mut out, &long),
            Err(PirError::Length { .. })
        ));
        assert!(matches!(
            plan.mul_acc(&mut out, &right, &long),
            Err(PirError::Length { .. })
        ));
        let mut acc = plan.wide_acc();
        assert!(matches!(
            plan.mul_acc_wide(&mut acc, &short, &right),
            Err(PirError::Length { .. })
        ));
        assert!(matches!(
            plan.reduce_wide(&acc, &mut short),
            Err(PirError::Length { .. })
        ));
        assert!(matches!(
            other.reduce_wide(&acc, &mut out),
            Err(PirError::Param(_))
        ));
        assert!(matches!(
            NttPlan::new(16760833, 1024).and_then(|p| p.reduce_wide(&acc, &mut out)),
            Err(PirError::Length { .. })
        ));
    }

    proptest! {
        #[test]
        fn any_parameters_give_a_plan_or_an_error(q in any::<u64>(), n in any::<usize>()) {
            if let Ok(plan) = NttPlan::new(q, n) {
                prop_assert!(q % (2 * n as u64) == 1 && smallest_factor(q).is_none());
                prop_assert_eq!(pow_mod(plan.root(), n as u64, plan.modulus()), plan.modulus() - 1);
            }
        }

        #[test]
        fn small_ntt_friendly_moduli_give_plans(log_n in MIN_LOG_N..=8u32, k in 1u64..2000) {
            let n = 1usize << log_n;
            let q = k * 2 * n as u64 + 1;
            let plan = NttPlan::new(q, n);
            prop_assert_eq!(plan.is_ok(), smallest_factor(q).is_none());
        }

        #[test]
        fn roundtrip_and_backends_agree(pair in 0..PAIRS.len(), seed in any::<u64>()) {
            let (q, n) = PAIRS[pair];
            let mut rng = StdRng::seed_from_u64(seed);
            let a = random_below(&mut rng, q, n);
            let mut outputs = Vec::new();
            for plan in plans(q, n) {
                let mut b = a.clone();
                plan.forward(&mut b).expect("length");
                outputs.push(b.clone());
                plan.inverse(&mut b).expect("length");
                prop_assert_eq!(&b, &a);
            }
            prop_assert!(outputs.windows(2).all(|w| w[0] == w[1]));
        }
    }
}
