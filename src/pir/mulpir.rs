//! MulPIR (Ali et al., USENIX Security 2021, <https://eprint.iacr.org/2019/1483>) on the BFV
//! scheme of the `fhe` crate.
//!
//! Layout: elements are packed into BFV plaintexts of `N = 4096` coefficients of 12 bits
//! (6144 bytes each); the plaintexts form a `d1 x d2` matrix. The query is one seeded BFV
//! ciphertext whose plaintext polynomial holds `2^-L` at coefficients `i` and `d1 + j` (row and
//! column of the wanted plaintext). The server
//! 1. expands it obliviously into `d1 + d2` ciphertexts of `0`/`1` (SealPIR expansion: `L`
//!    levels of substitutions with the client's Galois keys),
//! 2. computes for every column `j` the inner product of the row selectors with the column's
//!    plaintexts (plaintext-ciphertext products in the NTT domain),
//! 3. multiplies each column result with its column selector (ciphertext-ciphertext), sums,
//!    relinearises once and switches the modulus down to shrink the response.
//!
//! Parameters (see docs/private-lookup.md for the reasoning): `N = 4096`, ciphertext modulus
//! `q = q0 q1 q2 p` with 28-, 27-, 27- and 27-bit NTT primes (109 bits: 128-bit security
//! for N = 4096 in the HomomorphicEncryption.org standard), plaintext modulus `t = 4097`.
//! Queries live at level 1 (`q0 q1 q2`, 82 bits) so that the last prime `p` acts as the special
//! prime of hybrid key switching; responses are switched to level 2 (`q0 q1`, 55 bits).
//!
//! Every message from the other side is length-checked, decoded through the `fhe` protobuf
//! decoders, and structurally validated (levels, representations, exponents) before use; the
//! homomorphic evaluation itself runs under `catch_unwind` so that no input can take the
//! server down.

use crate::sys::thread_cpu_time;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fhe::bfv::traits::TryConvertFrom as BfvTryConvertFrom;
use fhe::bfv::{
    BfvParameters, BfvParametersBuilder, Ciphertext, Encoding, EvaluationKey, EvaluationKeyBuilder,
    Plaintext, RelinearizationKey, SecretKey,
};
use fhe::proto::bfv::{
    EvaluationKey as EvaluationKeyProto, KeySwitchingKey as KeySwitchingKeyProto,
    RelinearizationKey as RelinearizationKeyProto,
};
use fhe_math::rns::ScalingFactor;
use fhe_math::rq::scaler::Scaler;
use fhe_math::rq::traits::TryConvertFrom as PolyTryConvertFrom;
use fhe_math::rq::{Context, Poly, Representation};
use fhe_math::zq::Modulus;
use fhe_traits::{
    DeserializeParametrized, FheDecoder, FheDecrypter, FheEncoder, FheEncrypter, Serialize,
};
use prost::Message;
use rayon::prelude::*;

use super::scheme::{self, DbShape, IndexPir, PirClient, PirServer, HEADER_LEN};
use super::versioned::Versioned;
use super::{PirError, Reader};

/// Ring degree.
pub const DEGREE: usize = 4096;
/// Ciphertext moduli, level 0 first; `fhe` drops them from the end when switching down.
pub const MODULI: [u64; 4] = [268369921, 134176769, 134111233, 134012929];
/// Plaintext modulus (odd, so `2^-L` exists; 12 payload bits per coefficient).
pub const PLAINTEXT_MODULUS: u64 = 4097;
/// Payload bits per plaintext coefficient.
pub const PLAINTEXT_BITS: usize = 12;
/// Payload bytes per plaintext.
pub const PLAINTEXT_BYTES: usize = DEGREE * PLAINTEXT_BITS / 8;
/// Level of queries and of the whole server computation (moduli `q0 q1 q2`).
pub const QUERY_LEVEL: usize = 1;
/// Level of responses (moduli `q0 q1`).
pub const RESPONSE_LEVEL: usize = 2;
/// Number of moduli at the query level.
const LIMBS: usize = 3;
/// Parameter-set number carried in messages and PIRCFG.
pub const PARAMS_ID: u8 = 1;
/// Largest expansion depth (d1 + d2 <= 2^L): 2^18 plaintexts, 1.5 GiB of payload per shard.
/// (Level `l` substitutes with the Galois element `N / 2^l + 1`, which `fhe` exposes as a
/// column rotation while it is 1 mod 8, i.e. for `l <= 9`.)
pub const MAX_LEVEL: usize = 10;
/// Coefficients per block of the plaintext-ciphertext inner-product kernel.
const BLOCK: usize = 64;
/// Rows accumulated in u64 before a reduction: products are < 2^56, so 240 of them plus a
/// reduced value stay below 2^64.
const REDUCE_EVERY: usize = 240;
/// Plaintexts per group: the database is a list of groups so that changing an element copies
/// one group (64 x 48 KiB = 3 MiB of NTT words) instead of the database. Each block of a group
/// is a 16-KiB run the inner-product kernel streams; 16 plaintexts (4-KiB runs) measured
/// 10-30 % slower inner products than the flat layout, 64 and 256 the same.
const GROUP: usize = 64;
/// Words of one coefficient block of one group (`[plaintext in group][BLOCK]`).
const GROUP_BLOCK_WORDS: usize = GROUP * BLOCK;
/// Coefficient blocks of a plaintext (all limbs).
const BLOCKS: usize = LIMBS * DEGREE / BLOCK;

/// A phase clock: wall time, and CPU time of the calling thread (which covers the whole phase
/// when the answer runs on a one-thread pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseTime {
    pub wall: Duration,
    pub cpu: Duration,
}

struct Clock(Instant, Duration);

impl Clock {
    fn start() -> Clock {
        Clock(Instant::now(), thread_cpu_time())
    }

    fn stop(self) -> PhaseTime {
        PhaseTime {
            wall: self.0.elapsed(),
            cpu: thread_cpu_time().saturating_sub(self.1),
        }
    }
}

/// Time of each phase of one answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerTimings {
    /// Length checks and decoding of the query.
    pub parse: PhaseTime,
    /// Oblivious expansion (key switching).
    pub expand: PhaseTime,
    /// Plaintext-ciphertext inner products over the whole database.
    pub inner_products: PhaseTime,
    /// Ciphertext-ciphertext products with the column selectors.
    pub multiply: PhaseTime,
    /// Relinearisation, modulus switching, encoding.
    pub finish: PhaseTime,
}

/// The scheme marker for [`IndexPir`].
pub struct MulPir;

impl IndexPir for MulPir {
    const SCHEME_ID: u8 = 1;
    const PARAMS_ID: u8 = PARAMS_ID;
    const NAME: &'static str = "mulpir-bfv-n4096";
    type Client = MulPirClient;
    type Server = MulPirServer;
}

struct Shared {
    par: Arc<BfvParameters>,
    ctx_query: Arc<Context>,
    moduli: Vec<Modulus>,
    monomials: Vec<Poly>,
    /// Per expansion level, the column rotation `i` with `3^i = N / 2^l + 1 (mod 2N)`.
    rotations: Vec<usize>,
    /// Ciphertext products at the query level: extension to `q` plus three 62-bit primes
    /// (the basis fhe uses for its own products) and scaling back by `t / q`.
    extender: Scaler,
    down_scaler: Scaler,
    query_len: usize,
    response_len: usize,
}

fn shared() -> Result<&'static Shared, PirError> {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| build_shared().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| PirError::Fhe(format!("parameter setup: {e}")))
}

fn build_shared() -> Result<Shared, PirError> {
    let par = BfvParametersBuilder::new()
        .set_degree(DEGREE)
        .set_plaintext_modulus(PLAINTEXT_MODULUS)
        .set_moduli(&MODULI)
        .build_arc()
        .map_err(PirError::fhe)?;
    let ctx_query = par
        .context_at_level(QUERY_LEVEL)
        .map_err(PirError::fhe)?
        .clone();
    let moduli = MODULI[..LIMBS]
        .iter()
        .map(|&q| Modulus::new(q).map_err(PirError::fhe))
        .collect::<Result<Vec<_>, _>>()?;
    // Monomials x^(-2^l) = -x^(N - 2^l) of the expansion, as in fhe's EvaluationKey.
    let mut monomials = Vec::with_capacity(MAX_LEVEL);
    for l in 0..MAX_LEVEL {
        let mut m = vec![0i64; DEGREE];
        m[DEGREE - (1 << l)] = -1;
        let mut p = Poly::try_convert_from(&m[..], &ctx_query, true, Representation::PowerBasis)
            .map_err(PirError::fhe)?;
        p.change_representation(Representation::NttShoup);
        monomials.push(p);
    }
    let two_n = 2 * DEGREE;
    let mut rotations = Vec::with_capacity(MAX_LEVEL);
    for l in 0..MAX_LEVEL {
        let target = (DEGREE >> l) + 1;
        let mut x = 1usize;
        let mut found = None;
        for i in 1..DEGREE / 2 {
            x = x * 3 % two_n;
            if x == target {
                found = Some(i);
                break;
            }
        }
        rotations.push(found.ok_or_else(|| {
            PirError::Internal(format!("Galois element {target} is not a power of 3"))
        })?);
    }
    let mut mul_moduli = MODULI[..LIMBS].to_vec();
    let mut upper = 1u64 << 62;
    while mul_moduli.len() < 2 * LIMBS {
        upper = fhe_math::zq::primes::generate_prime(62, 2 * DEGREE as u64, upper)
            .ok_or_else(|| PirError::Internal("finding 62-bit NTT primes".into()))?;
        if !mul_moduli.contains(&upper) {
            mul_moduli.push(upper);
        }
    }
    let mul_ctx = Context::new_arc(&mul_moduli, DEGREE).map_err(PirError::fhe)?;
    let extender =
        Scaler::new(&ctx_query, &mul_ctx, ScalingFactor::one()).map_err(PirError::fhe)?;
    let down_scaler = Scaler::new(
        &mul_ctx,
        &ctx_query,
        ScalingFactor::new(
            &num_bigint::BigUint::from(PLAINTEXT_MODULUS),
            ctx_query.modulus(),
        ),
    )
    .map_err(PirError::fhe)?;
    // Message lengths depend on the parameters only; measure them on throwaway values.
    let mut rng = rand_fhe::rng();
    let sk = SecretKey::random(&par, &mut rng);
    let zero = Plaintext::try_encode(&[0u64], Encoding::poly_at_level(QUERY_LEVEL), &par)
        .map_err(PirError::fhe)?;
    let q: Ciphertext = sk.try_encrypt(&zero, &mut rng).map_err(PirError::fhe)?;
    let query_len = HEADER_LEN + q.to_bytes().len();
    let ctx_resp = par
        .context_at_level(RESPONSE_LEVEL)
        .map_err(PirError::fhe)?;
    let r = Ciphertext::new(
        vec![
            Poly::zero(ctx_resp, Representation::Ntt),
            Poly::zero(ctx_resp, Representation::Ntt),
        ],
        &par,
    )
    .map_err(PirError::fhe)?;
    let response_len = HEADER_LEN + r.to_bytes().len();
    Ok(Shared {
        par,
        ctx_query,
        moduli,
        monomials,
        rotations,
        extender,
        down_scaler,
        query_len,
        response_len,
    })
}

fn header(level: u8) -> [u8; HEADER_LEN] {
    scheme::header::<MulPir>(level)
}

/// Checks the header; returns the expansion level it names.
fn check_header(r: &mut Reader<'_>, what: &'static str) -> Result<u8, PirError> {
    scheme::check_header::<MulPir>(r, what)
}

/// Bytes of every MulPIR query.
pub fn query_len() -> Result<usize, PirError> {
    Ok(shared()?.query_len)
}

/// Bytes of every MulPIR response.
pub fn response_len() -> Result<usize, PirError> {
    Ok(shared()?.response_len)
}

/// Where elements sit: `elements_per_pt` per plaintext, plaintexts in a `d1 x d2` matrix
/// (plaintext `p` at row `p / d2`, column `p % d2`), expansion depth `level` (`d1 + d2 <=
/// 2^level`). Both sides derive it from the shape alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MulPirLayout {
    pub shape: DbShape,
    pub elements_per_pt: usize,
    pub num_pts: usize,
    pub d1: usize,
    pub d2: usize,
    pub level: usize,
}

impl MulPirLayout {
    pub fn new(shape: &DbShape) -> Result<MulPirLayout, PirError> {
        if shape.element_size == 0 || shape.element_size > PLAINTEXT_BYTES {
            return Err(PirError::Param(format!(
                "element of {} bytes (MulPIR holds 1..={PLAINTEXT_BYTES} bytes per element)",
                shape.element_size
            )));
        }
        if shape.num_elements == 0 {
            return Err(PirError::Param("empty database".into()));
        }
        if shape.batch != 0 {
            return Err(PirError::Param(
                "MulPIR takes no batch queries (Respire does)".into(),
            ));
        }
        let elements_per_pt = PLAINTEXT_BYTES / shape.element_size;
        let num_pts = shape.num_elements.div_ceil(elements_per_pt);
        // Smallest expansion depth whose square grid holds every plaintext...
        let mut level = 1;
        while (1usize << (level - 1)).pow(2) < num_pts {
            level += 1;
            if level > MAX_LEVEL {
                return Err(PirError::Param(format!(
                    "{} elements of {} bytes exceed MulPIR's {} plaintexts",
                    shape.num_elements,
                    shape.element_size,
                    1usize << (2 * (MAX_LEVEL - 1))
                )));
            }
        }
        // ...then the fewest columns (each costs a ciphertext multiplication).
        let cap = 1usize << level;
        let mut d2 = 1;
        while num_pts.div_ceil(d2) + d2 > cap {
            d2 += 1;
        }
        let d1 = num_pts.div_ceil(d2);
        Ok(MulPirLayout {
            shape: *shape,
            elements_per_pt,
            num_pts,
            d1,
            d2,
            level,
        })
    }

    /// Row, column and position inside the plaintext of element `index`.
    pub fn locate(&self, index: usize) -> Result<(usize, usize, usize), PirError> {
        if index >= self.shape.num_elements {
            return Err(PirError::IndexOutOfRange {
                index,
                count: self.shape.num_elements,
            });
        }
        let p = index / self.elements_per_pt;
        Ok((p / self.d2, p % self.d2, index % self.elements_per_pt))
    }
}

/// The client: a BFV secret key for one layout.
pub struct MulPirClient {
    layout: MulPirLayout,
    sk: SecretKey,
}

impl std::fmt::Debug for MulPirClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MulPirClient")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl MulPirClient {
    pub fn layout(&self) -> &MulPirLayout {
        &self.layout
    }

    /// Diagnostic: bits of noise in a response (variable time; benchmarks only). Decryption
    /// is correct while this stays below `log2(q0 q1 / t) - 1` = 42.
    pub fn response_noise_bits(&self, response: &[u8]) -> Result<usize, PirError> {
        let ct = parse_response(response)?;
        // SAFETY (of the API contract): measure_noise is variable time in the noise; only
        // benchmarks call this, never the lookup path.
        unsafe { self.sk.measure_noise(&ct) }.map_err(PirError::fhe)
    }
}

fn parse_response(response: &[u8]) -> Result<Ciphertext, PirError> {
    let s = shared()?;
    if response.len() != s.response_len {
        return Err(PirError::Length {
            what: "PIR response",
            expected: s.response_len,
            got: response.len(),
        });
    }
    let mut r = Reader::new(response, "PIR response");
    check_header(&mut r, "PIR response")?;
    let ct = Ciphertext::from_bytes(r.rest(), &s.par)
        .map_err(|e| PirError::malformed("PIR response", e.to_string()))?;
    check_ciphertext(&ct, RESPONSE_LEVEL, "PIR response")?;
    Ok(ct)
}

fn check_ciphertext(ct: &Ciphertext, level: usize, what: &'static str) -> Result<(), PirError> {
    let s = shared()?;
    if ct.len() != 2 {
        return Err(PirError::malformed(
            what,
            format!("{} polynomials, expected 2", ct.len()),
        ));
    }
    for p in ct.iter() {
        let l = s
            .par
            .level_of_context(p.ctx())
            .map_err(|e| PirError::malformed(what, e.to_string()))?;
        if l != level {
            return Err(PirError::malformed(
                what,
                format!("level {l}, expected {level}"),
            ));
        }
        if p.representation() != &Representation::Ntt {
            return Err(PirError::malformed(what, "polynomial not in NTT form"));
        }
    }
    Ok(())
}

fn push_part(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl PirClient for MulPirClient {
    fn setup(shape: &DbShape) -> Result<(MulPirClient, Vec<u8>), PirError> {
        let s = shared()?;
        let layout = MulPirLayout::new(shape)?;
        let mut rng = rand_fhe::rng();
        let sk = SecretKey::random(&s.par, &mut rng);
        let mut key = header(layout.level as u8).to_vec();
        let ek = EvaluationKeyBuilder::new_leveled(&sk, QUERY_LEVEL, 0)
            .and_then(|mut b| {
                b.enable_expansion(layout.level)?;
                b.build(&mut rng)
            })
            .map_err(PirError::fhe)?;
        push_part(&mut key, &ek.to_bytes());
        let rk = RelinearizationKey::new_leveled(&sk, QUERY_LEVEL, 0, &mut rng)
            .map_err(PirError::fhe)?;
        push_part(&mut key, &rk.to_bytes());
        Ok((MulPirClient { layout, sk }, key))
    }

    fn shape(&self) -> &DbShape {
        &self.layout.shape
    }

    fn query(&self, index: usize) -> Result<Vec<u8>, PirError> {
        let s = shared()?;
        let (i, j, _) = self.layout.locate(index)?;
        let inv = fhe_util::inverse(1u64 << self.layout.level, PLAINTEXT_MODULUS)
            .ok_or_else(|| PirError::Internal("inverting 2^L modulo t".into()))?;
        let mut v = vec![0u64; self.layout.d1 + self.layout.d2];
        v[i] = inv;
        v[self.layout.d1 + j] = inv;
        let pt = Plaintext::try_encode(&v, Encoding::poly_at_level(QUERY_LEVEL), &s.par)
            .map_err(PirError::fhe)?;
        let ct: Ciphertext = self
            .sk
            .try_encrypt(&pt, &mut rand_fhe::rng())
            .map_err(PirError::fhe)?;
        let mut out = header(self.layout.level as u8).to_vec();
        out.extend_from_slice(&ct.to_bytes());
        if out.len() != s.query_len {
            return Err(PirError::Internal(format!(
                "encoding a query: {} bytes instead of {}",
                out.len(),
                s.query_len
            )));
        }
        Ok(out)
    }

    fn decode(&self, index: usize, response: &[u8]) -> Result<Vec<u8>, PirError> {
        let (_, _, offset) = self.layout.locate(index)?;
        let ct = parse_response(response)?;
        let pt = self.sk.try_decrypt(&ct).map_err(PirError::fhe)?;
        let values = Vec::<u64>::try_decode(&pt, Encoding::poly_at_level(RESPONSE_LEVEL))
            .map_err(PirError::fhe)?;
        let bytes = fhe_util::transcode_to_bytes(&values, PLAINTEXT_BITS);
        let es = self.layout.shape.element_size;
        bytes
            .get(offset * es..(offset + 1) * es)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| PirError::Internal("decoding a response: plaintext too short".into()))
    }
}

/// A client's evaluation key on the server: the Galois keys of the expansion and the
/// relinearisation key.
pub struct MulPirKey {
    ek: EvaluationKey,
    levels: usize,
    rk: RelinearizationKey,
    wire_len: usize,
}

impl std::fmt::Debug for MulPirKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MulPirKey")
            .field("levels", &self.levels)
            .field("wire_len", &self.wire_len)
            .finish()
    }
}

impl MulPirKey {
    /// Expansion depth the key supports.
    pub fn levels(&self) -> usize {
        self.levels
    }
}

/// The wire view of fhe-math's polynomial message (to check a key's representation before
/// fhe interprets it).
#[derive(Clone, PartialEq, prost::Message)]
struct RqView {
    #[prost(int32, tag = "1")]
    representation: i32,
    #[prost(uint32, tag = "2")]
    degree: u32,
    #[prost(bytes = "vec", tag = "3")]
    coefficients: Vec<u8>,
    #[prost(bool, tag = "4")]
    allow_variable_time: bool,
}

/// fhe-math's protobuf number for the NTT-Shoup representation of key polynomials.
const REPR_NTT_SHOUP: i32 = 3;

fn check_ksk(ksk: Option<&KeySwitchingKeyProto>, what: &'static str) -> Result<(), PirError> {
    let ksk = ksk.ok_or_else(|| PirError::malformed(what, "no key-switching key"))?;
    if ksk.ciphertext_level as usize != QUERY_LEVEL || ksk.ksk_level != 0 || ksk.log_base != 0 {
        return Err(PirError::malformed(
            what,
            format!(
                "levels {}/{} base {}, expected {QUERY_LEVEL}/0 base 0",
                ksk.ciphertext_level, ksk.ksk_level, ksk.log_base
            ),
        ));
    }
    if ksk.seed.len() != 32 || !ksk.c1.is_empty() {
        return Err(PirError::malformed(what, "expected a seeded key"));
    }
    if ksk.c0.len() != LIMBS {
        return Err(PirError::malformed(
            what,
            format!("{} components, expected {LIMBS}", ksk.c0.len()),
        ));
    }
    let expected: usize = MODULI
        .iter()
        .map(|&q| {
            Modulus::new(q)
                .map(|m| m.serialization_length(DEGREE))
                .unwrap_or(0)
        })
        .sum();
    for c in &ksk.c0 {
        let rq = RqView::decode(c.as_slice())
            .map_err(|e| PirError::malformed(what, format!("component: {e}")))?;
        if rq.representation != REPR_NTT_SHOUP
            || rq.degree as usize != DEGREE
            || rq.coefficients.len() != expected
        {
            return Err(PirError::malformed(what, "component of the wrong shape"));
        }
    }
    Ok(())
}

/// Upper bound on one key part (each Galois or relinearisation key is about 170 KB).
const MAX_KEY_PART: usize = 4 << 20;

fn parse_key_bytes(key: &[u8]) -> Result<MulPirKey, PirError> {
    let s = shared()?;
    let mut r = Reader::new(key, "PIR evaluation key");
    let levels = check_header(&mut r, "PIR evaluation key")? as usize;
    if levels == 0 || levels > MAX_LEVEL {
        return Err(PirError::malformed(
            "PIR evaluation key",
            format!("expansion depth {levels} outside 1..={MAX_LEVEL}"),
        ));
    }
    let part = |r: &mut Reader<'_>, field: &str| -> Result<Vec<u8>, PirError> {
        let len = r.u32(field)? as usize;
        if len > MAX_KEY_PART {
            return Err(PirError::malformed(
                "PIR evaluation key",
                format!("{field} of {len} bytes"),
            ));
        }
        Ok(r.take(len, field)?.to_vec())
    };
    let bytes = part(&mut r, "Galois keys")?;
    let proto = EvaluationKeyProto::decode(bytes.as_slice())
        .map_err(|e| PirError::malformed("PIR evaluation key", format!("Galois keys: {e}")))?;
    if proto.ciphertext_level as usize != QUERY_LEVEL || proto.evaluation_key_level != 0 {
        return Err(PirError::malformed(
            "PIR evaluation key",
            "Galois keys at the wrong level",
        ));
    }
    let mut exponents: Vec<usize> = proto.gk.iter().map(|g| g.exponent as usize).collect();
    exponents.sort_unstable();
    let mut wanted: Vec<usize> = (0..levels).map(|l| (DEGREE >> l) + 1).collect();
    wanted.sort_unstable();
    if exponents != wanted {
        return Err(PirError::malformed(
            "PIR evaluation key",
            format!("Galois elements {exponents:?}, expected {wanted:?}"),
        ));
    }
    for g in &proto.gk {
        check_ksk(g.ksk.as_ref(), "PIR evaluation key (Galois key)")?;
    }
    let ek = EvaluationKey::from_bytes(&bytes, &s.par)
        .map_err(|e| PirError::malformed("PIR evaluation key", e.to_string()))?;
    if !(0..levels).all(|l| ek.supports_column_rotation_by(s.rotations[l])) {
        return Err(PirError::malformed(
            "PIR evaluation key",
            "missing Galois keys",
        ));
    }
    let bytes = part(&mut r, "relinearisation key")?;
    let proto = RelinearizationKeyProto::decode(bytes.as_slice()).map_err(|e| {
        PirError::malformed("PIR evaluation key", format!("relinearisation key: {e}"))
    })?;
    check_ksk(
        proto.ksk.as_ref(),
        "PIR evaluation key (relinearisation key)",
    )?;
    let rk = RelinearizationKey::try_convert_from(&proto, &s.par)
        .map_err(|e| PirError::malformed("PIR evaluation key", e.to_string()))?;
    r.finish()?;
    Ok(MulPirKey {
        ek,
        levels,
        rk,
        wire_len: key.len(),
    })
}

/// The server: the database in the NTT domain, one `u32` per coefficient, in groups of
/// `GROUP` plaintexts (plaintext `p = i * d2 + j` in group `p / GROUP`), each group
/// block-major (`[limb][coefficient block][plaintext in group][coefficient in block]`) so that
/// the inner-product kernel streams each block of each group sequentially.
///
/// **Updates while queries run.** The groups live in a `Versioned` (`pir/versioned.rs`,
/// read-copy-update): a query reads one version of every group. An update re-encodes the
/// changed plaintexts into copies of their groups off to the side
/// ([`PirServer::prepare_update`], no lock); [`PirServer::commit_update`] stores the next
/// version, a clone of the group pointers with the new groups. The groups an update replaced
/// are freed when the last query using the old version ends (memory: one copy of the touched
/// groups per version still in use).
pub struct MulPirServer {
    layout: MulPirLayout,
    groups: Versioned<Vec<Arc<[u32]>>>,
}

/// Re-encoded groups waiting to be swapped in ([`PirServer::prepare_update`]).
pub struct MulPirUpdate {
    generation: u64,
    groups: Vec<(usize, Arc<[u32]>)>,
    plaintexts: usize,
}

impl std::fmt::Debug for MulPirUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MulPirUpdate")
            .field("generation", &self.generation)
            .field("groups", &self.groups.len())
            .field("plaintexts", &self.plaintexts)
            .finish()
    }
}

impl std::fmt::Debug for MulPirServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MulPirServer")
            .field("layout", &self.layout)
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

const PT_WORDS: usize = LIMBS * DEGREE;

impl MulPirServer {
    pub fn layout(&self) -> &MulPirLayout {
        &self.layout
    }

    /// The server computation for a batch of validated queries. The per-query parts that use
    /// the client's key (expansion, relinearisation) run per query under their own
    /// `catch_unwind`, so one bad key fails only its own query; the inner products over the
    /// database run once for the whole batch, reading the database a single time.
    fn evaluate_batch(
        &self,
        items: Vec<(&MulPirKey, Ciphertext)>,
        timings: &mut AnswerTimings,
    ) -> Vec<Result<Vec<u8>, PirError>> {
        let s = match shared() {
            Ok(s) => s,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        let MulPirLayout { d1, d2, level, .. } = self.layout;
        let keys: Vec<&MulPirKey> = items.iter().map(|(k, _)| *k).collect();

        let clock = Clock::start();
        let expanded: Vec<Result<Vec<Ciphertext>, PirError>> = items
            .into_par_iter()
            .map(|(key, mut query)| {
                for p in query.iter_mut() {
                    // SAFETY (of the API contract): the server only sees ciphertexts;
                    // variable-time arithmetic on them reveals nothing they do not.
                    unsafe { p.allow_variable_time_computations() };
                }
                catch_unwind(AssertUnwindSafe(|| expand(key, s, query, d1 + d2, level)))
                    .map_err(|_| internal("expanding a PIR query"))?
            })
            .collect();
        timings.expand = clock.stop();

        let clock = Clock::start();
        let selectors: Vec<Vec<[Vec<u32>; 2]>> = expanded
            .iter()
            .map(|e| match e {
                Ok(cts) => cts[..d1]
                    .par_iter()
                    .map(|ct| selector_words(ct, &s.moduli))
                    .collect(),
                Err(_) => Vec::new(),
            })
            .collect();
        let columns = self.inner_products(&selectors, s);
        drop(selectors);
        timings.inner_products = clock.stop();

        let clock = Clock::start();
        let products: Vec<Result<Ciphertext, PirError>> = expanded
            .into_iter()
            .zip(columns)
            .map(|(cts, cols)| {
                let (cts, cols) = (cts?, cols?);
                catch_unwind(AssertUnwindSafe(|| multiply_columns(s, cols, &cts[d1..])))
                    .map_err(|_| internal("multiplying a PIR query"))?
            })
            .collect();
        timings.multiply = clock.stop();

        let clock = Clock::start();
        let out = products
            .into_iter()
            .zip(keys)
            .map(|(product, key)| {
                let product = product?;
                catch_unwind(AssertUnwindSafe(|| finish(s, key, product)))
                    .map_err(|_| internal("finishing a PIR answer"))?
            })
            .collect();
        timings.finish = clock.stop();
        out
    }

    /// [`PirServer::answer`] with the time of each phase (for benchmarks and profiling).
    pub fn answer_timed(
        &self,
        key: &MulPirKey,
        query: &[u8],
    ) -> Result<(Vec<u8>, AnswerTimings), PirError> {
        let (mut out, timings) = self.answer_batch_timed(&[(key, query)]);
        let first = out
            .pop()
            .ok_or_else(|| PirError::Internal("an empty batch answer".into()))?;
        first.map(|r| (r, timings))
    }

    /// [`PirServer::answer_batch`] with the time of each phase.
    pub fn answer_batch_timed(
        &self,
        items: &[(&MulPirKey, &[u8])],
    ) -> (Vec<Result<Vec<u8>, PirError>>, AnswerTimings) {
        let mut timings = AnswerTimings::default();
        let clock = Clock::start();
        let parsed: Vec<Result<Ciphertext, PirError>> =
            items.iter().map(|(_, q)| self.parse_query(q)).collect();
        timings.parse = clock.stop();
        let mut good = Vec::new();
        let mut slots = Vec::with_capacity(items.len());
        for ((key, _), ct) in items.iter().zip(parsed) {
            slots.push(match ct {
                Ok(ct) => {
                    good.push((*key, ct));
                    Ok(())
                }
                Err(e) => Err(e),
            });
        }
        let mut answers = self.evaluate_batch(good, &mut timings).into_iter();
        let out = slots
            .into_iter()
            .map(|slot| {
                slot?;
                answers
                    .next()
                    .unwrap_or_else(|| Err(internal("collecting a batch answer")))
            })
            .collect();
        (out, timings)
    }

    fn parse_query(&self, query: &[u8]) -> Result<Ciphertext, PirError> {
        let s = shared()?;
        if query.len() != s.query_len {
            return Err(PirError::Length {
                what: "PIR query",
                expected: s.query_len,
                got: query.len(),
            });
        }
        let mut r = Reader::new(query, "PIR query");
        let level = check_header(&mut r, "PIR query")? as usize;
        if level != self.layout.level {
            return Err(PirError::malformed(
                "PIR query",
                format!(
                    "made for depth {level}, the database has depth {}",
                    self.layout.level
                ),
            ));
        }
        let body = r.rest();
        let ct = catch_unwind(|| Ciphertext::from_bytes(body, &s.par))
            .map_err(|_| PirError::malformed("PIR query", "rejected by the decoder"))?
            .map_err(|e| PirError::malformed("PIR query", e.to_string()))?;
        check_ciphertext(&ct, QUERY_LEVEL, "PIR query")?;
        Ok(ct)
    }

    /// For every column `j`: `sum_i selector_i * plaintext(i, j)`, computed block by block of
    /// coefficients (each block of each limb is independent in the NTT domain, so the blocks run
    /// in parallel and each one's selectors and accumulators stay in cache). Reads one snapshot
    /// of the database for the whole batch.
    fn inner_products(
        &self,
        selectors: &[Vec<[Vec<u32>; 2]>],
        s: &Shared,
    ) -> Vec<Result<Vec<Ciphertext>, PirError>> {
        let MulPirLayout { d1, d2, .. } = self.layout;
        let blocks_per_limb = DEGREE / BLOCK;
        let live: Vec<&[[Vec<u32>; 2]]> = selectors
            .iter()
            .filter(|s| s.len() == d1)
            .map(Vec::as_slice)
            .collect();
        // blocks[b][query] = (acc0, acc1), each `[column][BLOCK]`.
        let blocks: Vec<Vec<(Vec<u64>, Vec<u64>)>> = if live.is_empty() {
            Vec::new()
        } else {
            let snapshot = self.groups.load();
            (0..BLOCKS)
                .into_par_iter()
                .map(|b| {
                    let q = &s.moduli[b / blocks_per_limb];
                    block_inner_products(&snapshot.value, b, &live, d1, d2, q)
                })
                .collect()
        };
        let mut next_live = 0;
        selectors
            .iter()
            .map(|sel| {
                if sel.len() != d1 {
                    return Err(internal("a query without selectors"));
                }
                let qi = next_live;
                next_live += 1;
                (0..d2)
                    .into_par_iter()
                    .map(|j| column_ciphertext(s, &blocks, qi, j))
                    .collect()
            })
            .collect()
    }
}

/// Column `j` of query `qi` as a ciphertext, gathered from the per-block accumulators.
fn column_ciphertext(
    s: &Shared,
    blocks: &[Vec<(Vec<u64>, Vec<u64>)>],
    qi: usize,
    j: usize,
) -> Result<Ciphertext, PirError> {
    let blocks_per_limb = DEGREE / BLOCK;
    let mut c = [vec![0u64; PT_WORDS], vec![0u64; PT_WORDS]];
    for (b, per_query) in blocks.iter().enumerate() {
        let (acc0, acc1) = &per_query[qi];
        let off = (b / blocks_per_limb) * DEGREE + (b % blocks_per_limb) * BLOCK;
        c[0][off..off + BLOCK].copy_from_slice(&acc0[j * BLOCK..(j + 1) * BLOCK]);
        c[1][off..off + BLOCK].copy_from_slice(&acc1[j * BLOCK..(j + 1) * BLOCK]);
    }
    let polys = c
        .into_iter()
        .map(|v| {
            let mut p = Poly::try_convert_from(v, &s.ctx_query, true, Representation::Ntt)
                .map_err(PirError::fhe)?;
            // SAFETY: see `evaluate_batch`.
            unsafe { p.allow_variable_time_computations() };
            Ok(p)
        })
        .collect::<Result<Vec<_>, PirError>>()?;
    Ciphertext::new(polys, &s.par).map_err(PirError::fhe)
}

fn internal(what: &str) -> PirError {
    PirError::Internal(format!("{what} (bad evaluation key or query)"))
}

/// Relinearises, switches to the response level and encodes.
fn finish(s: &Shared, key: &MulPirKey, mut out: Ciphertext) -> Result<Vec<u8>, PirError> {
    key.rk.relinearizes(&mut out).map_err(PirError::fhe)?;
    out.switch_to_level(RESPONSE_LEVEL).map_err(PirError::fhe)?;
    for p in out.iter_mut() {
        p.disallow_variable_time_computations();
    }
    let mut bytes = header(0).to_vec();
    bytes.extend_from_slice(&out.to_bytes());
    if bytes.len() != s.response_len {
        return Err(PirError::Internal(format!(
            "encoding a response: {} bytes instead of {}",
            bytes.len(),
            s.response_len
        )));
    }
    Ok(bytes)
}

/// The inner products of one block `b` of coefficients: block `b` of each group holds that
/// block of the group's plaintexts (`[plaintext][BLOCK]`, plaintexts in order `p = i * d2 +
/// j`), and `b * BLOCK` is the block's offset in a selector's words. Returns the reduced
/// accumulators `[column][BLOCK]` of both ciphertext polynomials.
fn block_inner_products(
    groups: &[Arc<[u32]>],
    b: usize,
    selectors: &[&[[Vec<u32>; 2]]],
    d1: usize,
    d2: usize,
    q: &Modulus,
) -> Vec<(Vec<u64>, Vec<u64>)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { block_inner_products_avx512(groups, b, selectors, d1, d2, q) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { block_inner_products_avx2(groups, b, selectors, d1, d2, q) };
        }
    }
    block_inner_products_body(groups, b, selectors, d1, d2, q)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_inner_products_avx512(
    groups: &[Arc<[u32]>],
    b: usize,
    selectors: &[&[[Vec<u32>; 2]]],
    d1: usize,
    d2: usize,
    q: &Modulus,
) -> Vec<(Vec<u64>, Vec<u64>)> {
    block_inner_products_body(groups, b, selectors, d1, d2, q)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_inner_products_avx2(
    groups: &[Arc<[u32]>],
    b: usize,
    selectors: &[&[[Vec<u32>; 2]]],
    d1: usize,
    d2: usize,
    q: &Modulus,
) -> Vec<(Vec<u64>, Vec<u64>)> {
    block_inner_products_body(groups, b, selectors, d1, d2, q)
}

#[inline(always)]
fn block_inner_products_body(
    groups: &[Arc<[u32]>],
    b: usize,
    selectors: &[&[[Vec<u32>; 2]]],
    d1: usize,
    d2: usize,
    q: &Modulus,
) -> Vec<(Vec<u64>, Vec<u64>)> {
    let mut acc: Vec<(Vec<u64>, Vec<u64>)> = selectors
        .iter()
        .map(|_| (vec![0u64; d2 * BLOCK], vec![0u64; d2 * BLOCK]))
        .collect();
    let off = b * BLOCK;
    let reduce = |acc: &mut Vec<(Vec<u64>, Vec<u64>)>| {
        for (a0, a1) in acc.iter_mut() {
            a0.iter_mut()
                .chain(a1.iter_mut())
                .for_each(|x| *x = q.reduce(*x));
        }
    };
    // Row i and column j of the next plaintext; every accumulator gets one product per row.
    let (mut i, mut j) = (0usize, 0usize);
    'groups: for group in groups {
        let region = group
            .get(b * GROUP_BLOCK_WORDS..(b + 1) * GROUP_BLOCK_WORDS)
            .unwrap_or(&[]);
        for pt in region.chunks_exact(BLOCK) {
            if i == d1 {
                break 'groups;
            }
            for (sel, (a0, a1)) in selectors.iter().zip(acc.iter_mut()) {
                let s0 = &sel[i][0][off..off + BLOCK];
                let s1 = &sel[i][1][off..off + BLOCK];
                mac(
                    &mut a0[j * BLOCK..(j + 1) * BLOCK],
                    &mut a1[j * BLOCK..(j + 1) * BLOCK],
                    s0,
                    s1,
                    pt,
                );
            }
            j += 1;
            if j == d2 {
                j = 0;
                i += 1;
                if i % REDUCE_EVERY == 0 {
                    reduce(&mut acc);
                }
            }
        }
    }
    reduce(&mut acc);
    acc
}

/// `sum_j columns[j] * selectors[j]` as one 3-part ciphertext. Each product is BFV's tensor
/// product in the extended basis (as in fhe's own multiplication); the tensors are summed there
/// and scaled by `t / q` once, instead of once per column.
fn multiply_columns(
    s: &Shared,
    columns: Vec<Ciphertext>,
    selectors: &[Ciphertext],
) -> Result<Ciphertext, PirError> {
    let extend = |p: &Poly| p.scale(&s.extender).map_err(PirError::fhe);
    let sum = columns
        .into_par_iter()
        .zip(selectors.par_iter())
        .map(|(col, sel)| -> Result<[Poly; 3], PirError> {
            let (a0, a1) = (extend(&col[0])?, extend(&col[1])?);
            let (b0, b1) = (extend(&sel[0])?, extend(&sel[1])?);
            let mut c1 = &a0 * &b1;
            c1 += &(&a1 * &b0);
            Ok([&a0 * &b0, c1, &a1 * &b1])
        })
        .try_reduce_with(|mut x, y| {
            for (xi, yi) in x.iter_mut().zip(&y) {
                *xi += yi;
            }
            Ok(x)
        })
        .ok_or_else(|| PirError::Internal("empty column set".into()))??;
    let parts = sum
        .into_iter()
        .map(|mut c| {
            c.change_representation(Representation::PowerBasis);
            let mut c = c.scale(&s.down_scaler).map_err(PirError::fhe)?;
            c.change_representation(Representation::Ntt);
            Ok(c)
        })
        .collect::<Result<Vec<_>, PirError>>()?;
    Ciphertext::new(parts, &s.par).map_err(PirError::fhe)
}

/// `a0 += s0 * pt`, `a1 += s1 * pt` on 64 lanes (u32 x u32 -> u64, vectorised by the compiler).
#[inline(always)]
fn mac(a0: &mut [u64], a1: &mut [u64], s0: &[u32], s1: &[u32], pt: &[u32]) {
    let (a0, a1, s0, s1, pt) = (
        &mut a0[..BLOCK],
        &mut a1[..BLOCK],
        &s0[..BLOCK],
        &s1[..BLOCK],
        &pt[..BLOCK],
    );
    for k in 0..BLOCK {
        let x = u64::from(pt[k]);
        a0[k] += u64::from(s0[k]) * x;
        a1[k] += u64::from(s1[k]) * x;
    }
}

/// The two polynomials of a selector ciphertext as `[limb][coefficient]` words, reduced.
fn selector_words(ct: &Ciphertext, moduli: &[Modulus]) -> [Vec<u32>; 2] {
    let words = |p: &Poly| -> Vec<u32> {
        let mut out = Vec::with_capacity(PT_WORDS);
        for (row, q) in p.coefficients().outer_iter().zip(moduli) {
            out.extend(row.iter().map(|&x| q.reduce(x) as u32));
        }
        out
    };
    [words(&ct[0]), words(&ct[1])]
}

/// Oblivious expansion of `query` into `size` ciphertexts (the algorithm of fhe's
/// `EvaluationKey::expands`, with the independent substitutions of each level in parallel).
fn expand(
    key: &MulPirKey,
    s: &Shared,
    query: Ciphertext,
    size: usize,
    level: usize,
) -> Result<Vec<Ciphertext>, PirError> {
    if key.levels < level {
        return Err(PirError::Param(format!(
            "evaluation key supports depth {}, the database needs {level}",
            key.levels
        )));
    }
    let mut out = vec![Ciphertext::zero(&s.par); 1 << level];
    out[0] = query;
    for l in 0..level {
        let rotation = s.rotations[l];
        let monomial = &s.monomials[l];
        let step = 1 << l;
        let (low, high) = out.split_at_mut(step);
        low.par_iter_mut()
            .zip(high.par_iter_mut())
            .enumerate()
            .try_for_each(|(i, (lo, hi))| -> Result<(), PirError> {
                let sub = key
                    .ek
                    .rotates_columns_by(lo, rotation)
                    .map_err(PirError::fhe)?;
                if (step | i) < size {
                    let mut t = lo.clone();
                    t -= &sub;
                    t[0] *= monomial;
                    t[1] *= monomial;
                    *hi = t;
                }
                *lo += &sub;
                Ok(())
            })?;
    }
    out.truncate(size);
    Ok(out)
}

/// Encodes plaintext `p` of `elements` into its NTT words (`[limb][coefficient]`).
fn encode_plaintext(
    layout: &MulPirLayout,
    elements: &[u8],
    p: usize,
    s: &Shared,
    out: &mut [u32],
) -> Result<(), PirError> {
    let span = layout.elements_per_pt * layout.shape.element_size;
    let start = (p * span).min(elements.len());
    let end = ((p + 1) * span).min(elements.len());
    let mut bytes = vec![0u8; PLAINTEXT_BYTES];
    bytes[..end - start].copy_from_slice(&elements[start..end]);
    let values = fhe_util::transcode_from_bytes(&bytes, PLAINTEXT_BITS);
    let t = PLAINTEXT_MODULUS as i64;
    // Centred representatives (|v| <= t/2) keep the product noise lower.
    let centred: Vec<i64> = values
        .iter()
        .take(DEGREE)
        .map(|&v| {
            let v = v as i64;
            if v > t / 2 {
                v - t
            } else {
                v
            }
        })
        .collect();
    let mut poly =
        Poly::try_convert_from(&centred[..], &s.ctx_query, true, Representation::PowerBasis)
            .map_err(PirError::fhe)?;
    poly.change_representation(Representation::Ntt);
    for (dst, &src) in out.iter_mut().zip(poly.coefficients().iter()) {
        *dst = src as u32;
    }
    Ok(())
}

/// Writes plaintext `m` of a group (`words` as `[limb][coefficient]`) into the group's
/// block-major layout.
fn scatter(group: &mut [u32], m: usize, words: &[u32]) {
    for (b, src) in words.chunks_exact(BLOCK).enumerate().take(BLOCKS) {
        let at = b * GROUP_BLOCK_WORDS + m * BLOCK;
        group[at..at + BLOCK].copy_from_slice(src);
    }
}

impl PirServer for MulPirServer {
    type Key = MulPirKey;
    type Update = MulPirUpdate;

    fn load(shape: &DbShape, elements: &[u8]) -> Result<MulPirServer, PirError> {
        let s = shared()?;
        let layout = MulPirLayout::new(shape)?;
        let expected = shape.num_elements * shape.element_size;
        if elements.len() != expected {
            return Err(PirError::Length {
                what: "PIR database",
                expected,
                got: elements.len(),
            });
        }
        let groups = (0..(layout.d1 * layout.d2).div_ceil(GROUP))
            .into_par_iter()
            .map(|g| {
                let mut data = vec![0u32; GROUP * PT_WORDS];
                let mut words = vec![0u32; PT_WORDS];
                // Plaintexts past `num_pts` (padding of the matrix) stay zero.
                for p in g * GROUP..((g + 1) * GROUP).min(layout.num_pts) {
                    encode_plaintext(&layout, elements, p, s, &mut words)?;
                    scatter(&mut data, p % GROUP, &words);
                }
                Ok(Arc::from(data))
            })
            .collect::<Result<Vec<Arc<[u32]>>, PirError>>()?;
        Ok(MulPirServer {
            layout,
            groups: Versioned::new(groups),
        })
    }

    fn shape(&self) -> &DbShape {
        &self.layout.shape
    }

    fn parse_key(&self, key: &[u8]) -> Result<MulPirKey, PirError> {
        let parsed = catch_unwind(|| parse_key_bytes(key))
            .map_err(|_| PirError::malformed("PIR evaluation key", "rejected by the decoder"))??;
        if parsed.levels() < self.layout.level {
            return Err(PirError::Param(format!(
                "evaluation key supports depth {}, the database needs {}",
                parsed.levels(),
                self.layout.level
            )));
        }
        Ok(parsed)
    }

    fn answer(&self, key: &MulPirKey, query: &[u8]) -> Result<Vec<u8>, PirError> {
        self.answer_timed(key, query).map(|(r, _)| r)
    }

    /// Re-encodes the plaintexts holding the `changed` elements (each copied into a new group
    /// with its unchanged neighbours), in parallel, without touching what queries read.
    fn prepare_update(&self, elements: &[u8], changed: &[usize]) -> Result<MulPirUpdate, PirError> {
        let s = shared()?;
        let layout = &self.layout;
        let expected = layout.shape.num_elements * layout.shape.element_size;
        if elements.len() != expected {
            return Err(PirError::Length {
                what: "PIR database",
                expected,
                got: elements.len(),
            });
        }
        let mut by_group: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &e in changed {
            if e >= layout.shape.num_elements {
                return Err(PirError::IndexOutOfRange {
                    index: e,
                    count: layout.shape.num_elements,
                });
            }
            let p = e / layout.elements_per_pt;
            let pts = by_group.entry(p / GROUP).or_default();
            if !pts.contains(&p) {
                pts.push(p);
            }
        }
        let plaintexts = by_group.values().map(Vec::len).sum();
        let snapshot = self.groups.load();
        let groups = by_group
            .into_par_iter()
            .map(|(g, pts)| {
                let old = snapshot
                    .value
                    .get(g)
                    .ok_or_else(|| PirError::Internal(format!("updating group {g}")))?;
                // Copy on write, once: readers keep the old group; the copy is made
                // straight into its shared allocation.
                let mut data: Arc<[u32]> = Arc::from(&old[..]);
                let buf = Arc::get_mut(&mut data)
                    .ok_or_else(|| PirError::Internal(format!("group {g} copy is shared")))?;
                let mut words = vec![0u32; PT_WORDS];
                for p in pts {
                    encode_plaintext(layout, elements, p, s, &mut words)?;
                    scatter(buf, p % GROUP, &words);
                }
                Ok((g, data))
            })
            .collect::<Result<Vec<_>, PirError>>()?;
        Ok(MulPirUpdate {
            generation: snapshot.generation,
            groups,
            plaintexts,
        })
    }

    fn commit_update(&self, update: MulPirUpdate) -> Result<usize, PirError> {
        let plaintexts = update.plaintexts;
        self.groups.commit(update.generation, |current| {
            let mut groups = current.clone();
            for (g, data) in update.groups {
                if let Some(slot) = groups.get_mut(g) {
                    *slot = data;
                }
            }
            Ok(groups)
        })?;
        Ok(plaintexts)
    }

    fn answer_batch(&self, items: &[(&MulPirKey, &[u8])]) -> Vec<Result<Vec<u8>, PirError>> {
        self.answer_batch_timed(items).0
    }

    fn query_len(&self) -> usize {
        shared().map(|s| s.query_len).unwrap_or(0)
    }

    fn response_len(&self) -> usize {
        shared().map(|s| s.response_len).unwrap_or(0)
    }

    fn memory_bytes(&self) -> usize {
        self.groups.load().value.len() * GROUP * PT_WORDS * std::mem::size_of::<u32>()
    }

    fn key_memory_bytes(key: &MulPirKey) -> usize {
        // Each key-switching key holds c0 and c1: LIMBS x (LIMBS + 1) x N words.
        (key.levels + 1) * 2 * LIMBS * (LIMBS + 1) * DEGREE * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore};

    fn random_db(shape: &DbShape) -> Vec<u8> {
        let mut db = vec![0u8; shape.num_elements * shape.element_size];
        rand::thread_rng().fill_bytes(&mut db);
        db
    }

    #[test]
    fn layout_fits_the_expansion() {
        for (n, es) in [
            (1usize, 1024usize),
            (7, 1024),
            (1 << 10, 1024),
            (1 << 18, 1024),
            (1 << 12, 256),
        ] {
            let l = MulPirLayout::new(&DbShape {
                num_elements: n,
                element_size: es,
                batch: 0,
            })
            .unwrap();
            assert!(l.d1 * l.d2 >= l.num_pts);
            assert!(l.d1 + l.d2 <= 1 << l.level);
            assert_eq!(l.elements_per_pt, PLAINTEXT_BYTES / es);
        }
        let big = MulPirLayout::new(&DbShape {
            num_elements: 1 << 18,
            element_size: 1024,
            batch: 0,
        })
        .unwrap();
        assert_eq!(big.level, 9);
        assert!(MulPirLayout::new(&DbShape {
            num_elements: 1,
            element_size: PLAINTEXT_BYTES + 1,
            batch: 0,
        })
        .is_err());
    }

    #[test]
    fn query_answer_decode_returns_the_element() {
        crate::sys::tune_allocator();
        // 2^12 slots of 256 bytes as 1024 buckets of 4 slots: 171 plaintexts, depth 5.
        let shape = DbShape {
            num_elements: 1024,
            element_size: 1024,
            batch: 0,
        };
        let db = random_db(&shape);
        let server = MulPirServer::load(&shape, &db).unwrap();
        let (client, key_bytes) = MulPirClient::setup(&shape).unwrap();
        let key = server.parse_key(&key_bytes).unwrap();
        let mut rng = rand::thread_rng();
        let mut indexes = vec![0, shape.num_elements - 1];
        indexes.extend((0..4).map(|_| rng.gen_range(0..shape.num_elements)));
        for index in indexes {
            let q = client.query(index).unwrap();
            assert_eq!(q.len(), server.query_len());
            let r = server.answer(&key, &q).unwrap();
            assert_eq!(r.len(), server.response_len());
            let got = client.decode(index, &r).unwrap();
            assert_eq!(got, db[index * 1024..(index + 1) * 1024], "element {index}");
            assert!(client.response_noise_bits(&r).unwrap() < 42);
        }
    }

    #[test]
    fn batch_answers_match_single_answers() {
        let shape = DbShape {
            num_elements: 300,
            element_size: 1024,
            batch: 0,
        };
        let db = random_db(&shape);
        let server = MulPirServer::load(&shape, &db).unwrap();
        let (a, ka) = MulPirClient::setup(&shape).unwrap();
        let (b, kb) = MulPirClient::setup(&shape).unwrap();
        let (ka, kb) = (
            server.parse_key(&ka).unwrap(),
            server.parse_key(&kb).unwrap(),
        );
        let (qa, qb) = (a.query(17).unwrap(), b.query(299).unwrap());
        let junk = vec![0u8; qa.len()];
        let out = server.answer_batch(&[(&ka, &qa), (&kb, &qb), (&ka, &junk), (&kb, &qb[..9])]);
        assert_eq!(out.len(), 4);
        assert_eq!(
            a.decode(17, out[0].as_ref().unwrap()).unwrap(),
            db[17 * 1024..18 * 1024]
        );
        assert_eq!(
            b.decode(299, out[1].as_ref().unwrap()).unwrap(),
            db[299 * 1024..300 * 1024]
        );
        assert!(out[2].is_err() && out[3].is_err());
        // A query answered with another client's key decodes to garbage, never panics.
        let crossed = server.answer_batch(&[(&kb, &qa)]);
        if let Ok(r) = &crossed[0] {
            assert_ne!(
                a.decode(17, r).ok(),
                Some(db[17 * 1024..18 * 1024].to_vec())
            );
        }
    }

    #[test]
    fn answers_single_threaded_too() {
        let shape = DbShape {
            num_elements: 40,
            element_size: 1024,
            batch: 0,
        };
        let db = random_db(&shape);
        let server = MulPirServer::load(&shape, &db).unwrap();
        let (client, key_bytes) = MulPirClient::setup(&shape).unwrap();
        let key = server.parse_key(&key_bytes).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let q = client.query(33).unwrap();
        let r = pool.install(|| server.answer(&key, &q)).unwrap();
        assert_eq!(client.decode(33, &r).unwrap(), db[33 * 1024..34 * 1024]);
    }

    #[test]
    fn updates_swap_in_whole_plaintexts() {
        // 1024 elements: 171 plaintexts in 3 groups; change elements in two of them.
        let shape = DbShape {
            num_elements: 1024,
            element_size: 1024,
            batch: 0,
        };
        let mut db = random_db(&shape);
        let server = MulPirServer::load(&shape, &db).unwrap();
        let (client, key_bytes) = MulPirClient::setup(&shape).unwrap();
        let key = server.parse_key(&key_bytes).unwrap();
        let old = db.clone();
        let changed = [0usize, 5, 200, 1023];
        for &e in &changed {
            rand::thread_rng().fill_bytes(&mut db[e * 1024..(e + 1) * 1024]);
        }
        let memory = server.memory_bytes();
        let update = server.prepare_update(&db, &changed).unwrap();
        // Prepared but not committed: queries still see the old content.
        let q = client.query(200).unwrap();
        let r = server.answer(&key, &q).unwrap();
        assert_eq!(client.decode(200, &r).unwrap(), old[200 * 1024..201 * 1024]);
        // A second update prepared from the same version cannot be committed after it.
        let stale = server.prepare_update(&db, &[7]).unwrap();
        assert_eq!(
            server.commit_update(update).unwrap(),
            3,
            "plaintexts 0, 33 and 170"
        );
        assert!(server.commit_update(stale).is_err());
        assert_eq!(server.memory_bytes(), memory);
        for index in [0usize, 5, 6, 200, 201, 1023, 1022, 700] {
            let q = client.query(index).unwrap();
            let r = server.answer(&key, &q).unwrap();
            assert_eq!(
                client.decode(index, &r).unwrap(),
                db[index * 1024..(index + 1) * 1024],
                "element {index}"
            );
        }
        // Bad input is an error.
        assert!(server.prepare_update(&db[1..], &[1]).is_err());
        assert!(server.prepare_update(&db, &[1024]).is_err());
    }

    #[test]
    fn hostile_messages_are_errors_not_panics() {
        let shape = DbShape {
            num_elements: 40,
            element_size: 1024,
            batch: 0,
        };
        let server = MulPirServer::load(&shape, &random_db(&shape)).unwrap();
        let (client, key_bytes) = MulPirClient::setup(&shape).unwrap();
        let key = server.parse_key(&key_bytes).unwrap();
        let q = client.query(3).unwrap();
        // Wrong lengths.
        assert!(server.answer(&key, &q[..q.len() - 1]).is_err());
        assert!(server.answer(&key, &[]).is_err());
        assert!(server.parse_key(&key_bytes[..key_bytes.len() - 1]).is_err());
        assert!(server.parse_key(&[]).is_err());
        // Same length, garbage content.
        let mut rng = rand::thread_rng();
        for _ in 0..20 {
            let mut bad = q.clone();
            let at = rng.gen_range(0..bad.len());
            bad[at] ^= 1 << rng.gen_range(0..8);
            let _ = server.answer(&key, &bad);
            let mut junk = vec![0u8; q.len()];
            rng.fill_bytes(&mut junk);
            junk[..4].copy_from_slice(&q[..4]);
            assert!(server.answer(&key, &junk).is_err());
        }
        for _ in 0..20 {
            let mut bad = key_bytes.clone();
            let at = rng.gen_range(0..200.min(bad.len()));
            bad[at] ^= 1 << rng.gen_range(0..8);
            let _ = server.parse_key(&bad);
        }
        // A response that is not one.
        let mut junk = vec![0u8; server.response_len()];
        rng.fill_bytes(&mut junk);
        assert!(client.decode(3, &junk).is_err());
        assert!(client.decode(3, &junk[..10]).is_err());
        assert!(client.query(40).is_err());
    }
}
