//! Byte encodings of what a Respire client sends: its public keys ([`PublicKeys`] and
//! [`ResponseKeys`], once per key) and its queries ([`Query`], once per lookup).
//!
//! **Keys.** Every key row is a ciphertext whose mask `a` the client expanded from a 32-byte
//! seed ([`RlweParams::expand`]), so a row is sent as the seed and `b` in NTT form: per CRT
//! limb, the `d` evaluations at `ceil(log2 q_limb)` bits each (28 + 28 bits for `q1`, 24 for
//! `q2`), one little-endian bit stream per row padded to a byte. This is how the paper counts
//! public parameters. After a header of `1 + 6·6` bytes (the format version, then for each of
//! the six key groups the gadget base as a big-endian `u32`, the gadget's digit count and the
//! group's key count, all implied by the parameters and checked against them) come the
//! groups in this order:
//! 1. the RLWE coefficient expansion: `log2 d1` automorphism keys of `t` rows;
//! 2. the GSW coefficient expansion: `log2 d1` automorphism keys of `t` rows;
//! 3. the RLWE-to-GSW conversion key: one GSW ciphertext, `2t` columns (first half first);
//! 4. the projection: `log2(d1/d2)` automorphism keys of `t` rows, not sent when they are
//!    the first keys of the GSW expansion (same ring, error and gadget: Respire's `(7, 20)`),
//!    which the client then generates with [`ResponseKeys::generate_shared`] and the server
//!    rebuilds with [`ProjectionKeys::from_expansion`];
//! 5. the vectorisation key: `t` rows (the vector ring);
//! 6. the compression key: `t` rows over `R_{d1, q2}`.
//!
//! The automorphism powers (`d1/2^i + 1` for key `i`) and the gadgets are implied by the
//! parameters, so they are not sent. The length is a function of the parameters only
//! ([`keys_len`]); the parser checks it first, so it never allocates more than the parameters
//! imply, then checks every word against its limb's prime.
//!
//! **Queries.** The row selector then the column bits, each a [`PackedCiphertext`]: the
//! 32-byte seed, then the `2^ν1` (resp. `(ν2 + ν3)·t_gsw`) kept coefficients of `b` at
//! `ceil(log2 q1) = 56` bits each, a little-endian bit stream padded to a byte
//! ([`query_len`]).
//!
//! Both encodings are canonical: padding bits must be zero, every word below its modulus.

use super::super::PirError;
use super::compress::CompressionKey;
use super::expand::ExpansionKeys;
use super::gsw::GswCiphertext;
use super::keyswitch::{residue_bits, SwitchingKey};
use super::project::ProjectionKeys;
use super::query::{PackedCiphertext, PublicKeys, Query, QueryParams};
use super::response::{ResponseKeys, ResponseParams};
use super::ring::{Gadget, Ring, RingElement};
use super::rlwe::{AutomorphismKey, Ciphertext, RlweParams, SeededCiphertext};
use super::vectorise::VectoriseKey;

/// Version of the key encoding (the first byte of [`encode_keys`]' output).
pub const KEYS_VERSION: u8 = 1;

/// Bytes of a seed of a ciphertext's mask.
const SEED_BYTES: usize = 32;

/// Bytes of the keys' header: the version, then base (4), digits (1) and key count (1) for
/// each of the six groups.
const HEADER_BYTES: usize = 1 + 6 * 6;

/// Writes values of up to 64 bits, least significant bit first, into bytes.
#[derive(Debug, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    acc: u128,
    filled: u32,
}

impl BitWriter {
    /// A writer whose output will be about `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> BitWriter {
        BitWriter {
            bytes: Vec::with_capacity(capacity),
            acc: 0,
            filled: 0,
        }
    }

    /// Appends the low `bits` bits of `value` (`bits <= 64`; higher bits are dropped).
    pub fn write(&mut self, value: u64, bits: u32) {
        let bits = bits.min(64);
        let mask = u64::MAX.checked_shr(64 - bits).unwrap_or(0);
        self.acc |= u128::from(value & mask) << self.filled;
        self.filled += bits;
        while self.filled >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.filled -= 8;
        }
    }

    /// Pads the current byte with zero bits.
    pub fn align(&mut self) {
        if self.filled > 0 {
            self.bytes.push(self.acc as u8);
            self.acc = 0;
            self.filled = 0;
        }
    }

    /// Appends whole bytes, after padding the current byte.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.align();
        self.bytes.extend_from_slice(bytes);
    }

    /// The bytes written, the last one padded.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.align();
        self.bytes
    }
}

/// Reads what [`BitWriter`] wrote; reading past the end is [`PirError::Malformed`].
#[derive(Debug)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    acc: u128,
    filled: u32,
    what: &'static str,
}

impl<'a> BitReader<'a> {
    /// A reader of `bytes`, naming `what` in its errors.
    pub fn new(bytes: &'a [u8], what: &'static str) -> BitReader<'a> {
        BitReader {
            bytes,
            pos: 0,
            acc: 0,
            filled: 0,
            what,
        }
    }

    fn truncated(&self) -> PirError {
        PirError::malformed(
            self.what,
            format!("truncated after {} of {} bytes", self.pos, self.bytes.len()),
        )
    }

    /// The next `bits` bits (`bits <= 64`) as an integer.
    pub fn read(&mut self, bits: u32) -> Result<u64, PirError> {
        if bits > 64 {
            return Err(PirError::Internal(format!("reading {bits} bits at once")));
        }
        while self.filled < bits {
            let byte = *self.bytes.get(self.pos).ok_or_else(|| self.truncated())?;
            self.acc |= u128::from(byte) << self.filled;
            self.filled += 8;
            self.pos += 1;
        }
        let mask = u64::MAX.checked_shr(64 - bits).unwrap_or(0);
        let value = self.acc as u64 & mask;
        self.acc >>= bits;
        self.filled -= bits;
        Ok(value)
    }

    /// Skips to the next byte; the skipped padding bits must be zero (one encoding per value).
    pub fn align(&mut self) -> Result<(), PirError> {
        if self.acc != 0 {
            return Err(PirError::malformed(self.what, "non-zero padding bits"));
        }
        self.filled = 0;
        Ok(())
    }

    /// The next `N` whole bytes, after [`BitReader::align`].
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], PirError> {
        self.align()?;
        let end = self.pos.checked_add(N).filter(|&e| e <= self.bytes.len());
        let slice = match end {
            Some(end) => &self.bytes[self.pos..end],
            None => return Err(self.truncated()),
        };
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        self.pos += N;
        Ok(out)
    }

    /// Checks that everything was read (padding zero, no trailing bytes).
    pub fn finish(&mut self) -> Result<(), PirError> {
        self.align()?;
        let left = self.bytes.len() - self.pos;
        if left != 0 {
            return Err(PirError::malformed(
                self.what,
                format!("{left} trailing bytes"),
            ));
        }
        Ok(())
    }
}

/// Bytes of one seeded row of `ring`: the seed and `b` at each limb's bit width.
fn row_len(ring: &Ring) -> usize {
    let bits: usize = ring
        .limb_moduli()
        .map(|q| ring.degree() * residue_bits(u64::from(q)) as usize)
        .sum();
    SEED_BYTES + bits.div_ceil(8)
}

fn write_row(w: &mut BitWriter, ring: &Ring, seed: &[u8; 32], b: &impl RingElement) {
    w.write_bytes(seed);
    let d = ring.degree();
    for (l, q) in ring.limb_moduli().enumerate() {
        let bits = residue_bits(u64::from(q));
        for &word in &b.words()[l * d..(l + 1) * d] {
            w.write(u64::from(word), bits);
        }
    }
    w.align();
}

/// One seeded row of `params`' ring, its mask expanded from the seed.
fn read_row(
    r: &mut BitReader<'_>,
    params: &RlweParams,
) -> Result<([u8; 32], Ciphertext), PirError> {
    let seed = r.read_array::<SEED_BYTES>()?;
    let ring = params.ring();
    let d = ring.degree();
    let mut b = ring.zero_ntt();
    for (l, q) in ring.limb_moduli().enumerate() {
        let bits = residue_bits(u64::from(q));
        for word in &mut b.words_mut()[l * d..(l + 1) * d] {
            let value = r.read(bits)?;
            if value >= u64::from(q) {
                return Err(PirError::malformed(
                    r.what,
                    format!("word {value} not below its limb's prime {q}"),
                ));
            }
            // Below a limb prime < 2^30.
            *word = value as u32;
        }
    }
    r.align()?;
    let ct = params.expand(&SeededCiphertext { seed, b })?;
    Ok((seed, ct))
}

/// One group of keys: the ring parameters its rows are in, its gadget, how many keys, and
/// rows per key.
struct Group<'a> {
    name: &'static str,
    params: &'a RlweParams,
    gadget: &'a Gadget,
    keys: usize,
    rows_per_key: usize,
    /// Not sent: the keys are the first of the GSW expansion's (the projection keys, when the
    /// parameters allow it).
    shared: bool,
}

impl Group<'_> {
    fn len(&self) -> usize {
        if self.shared {
            return 0;
        }
        self.keys * self.rows_per_key * row_len(self.params.ring())
    }
}

/// Whether the projection keys can be the first GSW expansion keys: the same ring, error
/// and gadget, and no more of them than there are expansion keys (always, for Respire's
/// parameters: `(7, 20)`, keys 0 and 1 of 11).
fn projection_shared(qp: &QueryParams, rp: &ResponseParams) -> bool {
    let (expansion, projection) = (qp.gsw_expansion_gadget(), rp.projection_gadget());
    let (query_ring, large_ring) = (qp.rlwe().ring(), rp.large().ring());
    expansion.base() == projection.base()
        && expansion.digits() == projection.digits()
        && query_ring.degree() == large_ring.degree()
        && query_ring.modulus() == large_ring.modulus()
        && qp.rlwe().error().width().to_bits() == rp.large().error().width().to_bits()
        && rp.records_per_plaintext().trailing_zeros() <= query_ring.degree().trailing_zeros()
}

/// The six groups in wire order (module doc), as the parameters imply them.
fn groups<'a>(qp: &'a QueryParams, rp: &'a ResponseParams) -> [Group<'a>; 6] {
    let log_d1 = qp.rlwe().ring().degree().trailing_zeros() as usize;
    let projections = rp.records_per_plaintext().trailing_zeros() as usize;
    [
        Group {
            name: "RLWE expansion keys",
            params: qp.rlwe(),
            gadget: qp.rlwe_expansion_gadget(),
            keys: log_d1,
            rows_per_key: qp.rlwe_expansion_gadget().digits(),
            shared: false,
        },
        Group {
            name: "GSW expansion keys",
            params: qp.rlwe(),
            gadget: qp.gsw_expansion_gadget(),
            keys: log_d1,
            rows_per_key: qp.gsw_expansion_gadget().digits(),
            shared: false,
        },
        Group {
            name: "conversion key",
            params: qp.rlwe(),
            gadget: qp.conversion_gadget(),
            keys: 1,
            rows_per_key: 2 * qp.conversion_gadget().digits(),
            shared: false,
        },
        Group {
            name: "projection keys",
            params: rp.large(),
            gadget: rp.projection_gadget(),
            keys: projections,
            rows_per_key: rp.projection_gadget().digits(),
            shared: projection_shared(qp, rp),
        },
        Group {
            name: "vectorisation key",
            params: rp.vector(),
            gadget: rp.vectorise_gadget(),
            keys: 1,
            rows_per_key: rp.vectorise_gadget().digits(),
            shared: false,
        },
        Group {
            name: "compression key",
            params: rp.switch(),
            gadget: rp.compression_gadget(),
            keys: 1,
            rows_per_key: rp.compression_gadget().digits(),
            shared: false,
        },
    ]
}

/// Exact bytes of [`encode_keys`]' output for these parameters.
pub fn keys_len(qp: &QueryParams, rp: &ResponseParams) -> usize {
    HEADER_BYTES + groups(qp, rp).iter().map(Group::len).sum::<usize>()
}

/// The automorphism power of key `i` of an expansion or projection: `x -> x^(d/2^i + 1)`.
fn power(params: &RlweParams, i: usize) -> usize {
    (params.ring().degree() >> i) + 1
}

/// Checks a key against its group before it is written, so that keys made for other
/// parameters (or a GSW ciphertext without seeds) are refused rather than mis-encoded.
fn check_switching_key(
    group: &Group<'_>,
    key: &SwitchingKey,
    power_of: Option<(usize, usize)>,
) -> Result<(), PirError> {
    let wrong = |reason: String| PirError::Param(format!("{}: {reason}", group.name));
    if let Some((got, expected)) = power_of {
        if got != expected {
            return Err(wrong(format!("key for x^{got}, expected x^{expected}")));
        }
    }
    let gadget = key.gadget();
    if gadget.base() != group.gadget.base() || gadget.digits() != group.gadget.digits() {
        return Err(wrong(format!(
            "gadget ({}, {}), expected ({}, {})",
            gadget.base(),
            gadget.digits(),
            group.gadget.base(),
            group.gadget.digits()
        )));
    }
    check_rows(group, key.rows(), key.seeds())
}

fn check_rows(group: &Group<'_>, rows: &[Ciphertext], seeds: &[[u8; 32]]) -> Result<(), PirError> {
    if rows.len() != seeds.len() {
        return Err(PirError::Param(format!(
            "{}: {} rows but {} seeds (only freshly generated keys can be sent)",
            group.name,
            rows.len(),
            seeds.len()
        )));
    }
    for row in rows {
        group.params.check_ct(row)?;
    }
    Ok(())
}

fn write_rows(w: &mut BitWriter, group: &Group<'_>, rows: &[Ciphertext], seeds: &[[u8; 32]]) {
    for (row, seed) in rows.iter().zip(seeds) {
        write_row(w, group.params.ring(), seed, &row.b);
    }
}

fn check_count(group: &Group<'_>, got: usize) -> Result<(), PirError> {
    if got == group.keys {
        Ok(())
    } else {
        Err(PirError::Param(format!(
            "{}: {got} keys, the parameters imply {}",
            group.name, group.keys
        )))
    }
}

/// The client's public keys as bytes (module doc), exactly [`keys_len`] long. Keys that do
/// not match the parameters, or a conversion key that was not freshly generated (no seeds),
/// are [`PirError::Param`].
pub fn encode_keys(
    qp: &QueryParams,
    rp: &ResponseParams,
    public: &PublicKeys,
    response: &ResponseKeys,
) -> Result<Vec<u8>, PirError> {
    let groups = groups(qp, rp);
    let [rlwe_exp, gsw_exp, conversion, projection, vectorise, compression] = &groups;
    let automorphism_groups: [(&Group<'_>, &[AutomorphismKey]); 3] = [
        (rlwe_exp, public.rlwe_expansion.keys()),
        (gsw_exp, public.gsw_expansion.keys()),
        (projection, response.projection.keys()),
    ];
    for (group, keys) in automorphism_groups {
        check_count(group, keys.len())?;
        for (i, key) in keys.iter().enumerate() {
            let expected = power(group.params, i);
            check_switching_key(group, key.switching_key(), Some((key.power(), expected)))?;
        }
    }
    if projection.shared {
        // Sent once: the parsed projection keys will be the GSW expansion's, so only keys
        // that already are (ResponseKeys::generate_shared) are encoded.
        let same = response
            .projection
            .keys()
            .iter()
            .zip(public.gsw_expansion.keys())
            .all(|(p, g)| {
                let (p, g) = (p.switching_key(), g.switching_key());
                p.seeds() == g.seeds() && p.rows() == g.rows()
            });
        if !same {
            return Err(PirError::Param(
                "projection keys: not the GSW expansion's first keys, which the parameters \
                 share with them (generate them with ResponseKeys::generate_shared)"
                    .into(),
            ));
        }
    }
    let gsw = &public.conversion;
    if gsw.gadget().base() != conversion.gadget.base()
        || 2 * gsw.gadget().digits() != conversion.rows_per_key
    {
        return Err(PirError::Param("conversion key: gadget".into()));
    }
    let columns: Vec<Ciphertext> = gsw.columns().cloned().collect();
    check_rows(conversion, &columns, gsw.seeds())?;
    check_switching_key(vectorise, response.vectorise.switching_key(), None)?;
    check_switching_key(compression, response.compression.switching_key(), None)?;

    let mut w = BitWriter::with_capacity(keys_len(qp, rp));
    w.write_bytes(&[KEYS_VERSION]);
    for group in &groups {
        // Every field fits (bases below 2^32, at most 24 digits and 11 keys); one that did not
        // would be written saturated, and refused by the parser rather than aliased.
        let base = u32::try_from(group.gadget.base()).unwrap_or(u32::MAX);
        w.write_bytes(&base.to_be_bytes());
        let digits = u8::try_from(group.gadget.digits()).unwrap_or(u8::MAX);
        w.write_bytes(&[digits, u8::try_from(group.keys).unwrap_or(u8::MAX)]);
    }
    for (group, keys) in automorphism_groups.iter().take(2) {
        for key in keys.iter() {
            let switch = key.switching_key();
            write_rows(&mut w, group, switch.rows(), switch.seeds());
        }
    }
    write_rows(&mut w, conversion, &columns, gsw.seeds());
    if !projection.shared {
        for key in response.projection.keys() {
            let switch = key.switching_key();
            write_rows(&mut w, projection, switch.rows(), switch.seeds());
        }
    }
    for (group, switch) in [
        (vectorise, response.vectorise.switching_key()),
        (compression, response.compression.switching_key()),
    ] {
        write_rows(&mut w, group, switch.rows(), switch.seeds());
    }
    let bytes = w.into_bytes();
    if bytes.len() != keys_len(qp, rp) {
        return Err(PirError::Internal(format!(
            "encoding keys: {} bytes, expected {}",
            bytes.len(),
            keys_len(qp, rp)
        )));
    }
    Ok(bytes)
}

const KEYS_WHAT: &str = "Respire public keys";

fn read_switching_key(r: &mut BitReader<'_>, group: &Group<'_>) -> Result<SwitchingKey, PirError> {
    let mut rows = Vec::with_capacity(group.rows_per_key);
    let mut seeds = Vec::with_capacity(group.rows_per_key);
    for _ in 0..group.rows_per_key {
        let (seed, row) = read_row(r, group.params)?;
        rows.push(row);
        seeds.push(seed);
    }
    SwitchingKey::from_rows(group.gadget.clone(), rows, seeds)
}

fn read_automorphism_keys(
    r: &mut BitReader<'_>,
    group: &Group<'_>,
) -> Result<Vec<AutomorphismKey>, PirError> {
    (0..group.keys)
        .map(|i| {
            let switch = read_switching_key(r, group)?;
            Ok(AutomorphismKey::from_switching_key(
                power(group.params, i),
                switch,
            ))
        })
        .collect()
}

/// Parses [`encode_keys`]' output for these parameters. Any other length is
/// [`PirError::Length`]; another version is [`PirError::Version`]; a header that does not
/// match the parameters, a word not below its prime or non-zero padding is
/// [`PirError::Malformed`].
pub fn decode_keys(
    qp: &QueryParams,
    rp: &ResponseParams,
    bytes: &[u8],
) -> Result<(PublicKeys, ResponseKeys), PirError> {
    let expected = keys_len(qp, rp);
    if bytes.len() != expected {
        return Err(PirError::Length {
            what: KEYS_WHAT,
            expected,
            got: bytes.len(),
        });
    }
    let groups = groups(qp, rp);
    let mut r = BitReader::new(bytes, KEYS_WHAT);
    let [version] = r.read_array::<1>()?;
    if version != KEYS_VERSION {
        return Err(PirError::Version {
            what: KEYS_WHAT,
            got: version,
            supported: KEYS_VERSION,
        });
    }
    for group in &groups {
        let base = u32::from_be_bytes(r.read_array::<4>()?);
        let [digits, keys] = r.read_array::<2>()?;
        let implied = (group.gadget.base(), group.gadget.digits(), group.keys);
        if (u64::from(base), usize::from(digits), usize::from(keys)) != implied {
            return Err(PirError::malformed(
                KEYS_WHAT,
                format!(
                    "{}: gadget ({base}, {digits}) and {keys} keys, the parameters imply \
                     ({}, {}) and {}",
                    group.name, implied.0, implied.1, implied.2
                ),
            ));
        }
    }
    let [rlwe_exp, gsw_exp, conversion, projection, vectorise, compression] = &groups;
    let rlwe_expansion = ExpansionKeys::from_keys(read_automorphism_keys(&mut r, rlwe_exp)?);
    let gsw_expansion = ExpansionKeys::from_keys(read_automorphism_keys(&mut r, gsw_exp)?);
    let t = qp.conversion_gadget().digits();
    let mut columns = Vec::with_capacity(2 * t);
    let mut seeds = Vec::with_capacity(2 * t);
    for _ in 0..2 * t {
        let (seed, column) = read_row(&mut r, conversion.params)?;
        columns.push(column);
        seeds.push(seed);
    }
    let plain = columns.split_off(t);
    let conversion =
        GswCiphertext::from_seeded_columns(qp.conversion_gadget().clone(), columns, plain, seeds)?;
    let projection = if projection.shared {
        ProjectionKeys::from_expansion(rp.large(), &gsw_expansion, rp.small().ring().degree())?
    } else {
        ProjectionKeys::from_keys(rp.large(), read_automorphism_keys(&mut r, projection)?)?
    };
    let vectorise = VectoriseKey::from_switching_key(read_switching_key(&mut r, vectorise)?);
    let compression = CompressionKey::from_switching_key(read_switching_key(&mut r, compression)?);
    r.finish()?;
    Ok((
        PublicKeys {
            rlwe_expansion,
            gsw_expansion,
            conversion,
        },
        ResponseKeys {
            projection,
            vectorise,
            compression,
        },
    ))
}

/// Bits of one packed query coefficient: `ceil(log2 q1)`.
fn coeff_bits(qp: &QueryParams) -> u32 {
    residue_bits(qp.rlwe().ring().modulus())
}

fn packed_len(qp: &QueryParams, count: usize) -> usize {
    SEED_BYTES + (count * coeff_bits(qp) as usize).div_ceil(8)
}

/// Exact bytes of [`encode_query`]'s output for these parameters.
pub fn query_len(qp: &QueryParams) -> usize {
    packed_len(qp, qp.rows()) + packed_len(qp, qp.gsw_rows())
}

const QUERY_WHAT: &str = "Respire query";

/// A query as bytes (module doc), exactly [`query_len`] long. A query of other lengths or
/// with a coefficient not below `q1` is [`PirError::Param`].
pub fn encode_query(qp: &QueryParams, query: &Query) -> Result<Vec<u8>, PirError> {
    let q = qp.rlwe().ring().modulus();
    let bits = coeff_bits(qp);
    let mut w = BitWriter::with_capacity(query_len(qp));
    for (packed, count) in [(&query.rows, qp.rows()), (&query.columns, qp.gsw_rows())] {
        if packed.coeffs.len() != count || packed.coeffs.iter().any(|&c| c >= q) {
            return Err(PirError::Param(format!(
                "query of {} coefficients (expected {count}, each below {q})",
                packed.coeffs.len()
            )));
        }
        w.write_bytes(&packed.seed);
        for &c in &packed.coeffs {
            w.write(c, bits);
        }
        w.align();
    }
    Ok(w.into_bytes())
}

/// Parses [`encode_query`]'s output: any other length is [`PirError::Length`], a coefficient
/// not below `q1` or non-zero padding [`PirError::Malformed`].
pub fn decode_query(qp: &QueryParams, bytes: &[u8]) -> Result<Query, PirError> {
    let expected = query_len(qp);
    if bytes.len() != expected {
        return Err(PirError::Length {
            what: QUERY_WHAT,
            expected,
            got: bytes.len(),
        });
    }
    let q = qp.rlwe().ring().modulus();
    let bits = coeff_bits(qp);
    let mut r = BitReader::new(bytes, QUERY_WHAT);
    let mut read_packed = |count: usize| -> Result<PackedCiphertext, PirError> {
        let seed = r.read_array::<SEED_BYTES>()?;
        let mut coeffs = Vec::with_capacity(count);
        for _ in 0..count {
            let c = r.read(bits)?;
            if c >= q {
                return Err(PirError::malformed(
                    QUERY_WHAT,
                    format!("coefficient {c} not below q1 = {q}"),
                ));
            }
            coeffs.push(c);
        }
        r.align()?;
        Ok(PackedCiphertext { seed, coeffs })
    };
    let rows = read_packed(qp.rows())?;
    let columns = read_packed(qp.gsw_rows())?;
    r.finish()?;
    Ok(Query { rows, columns })
}

#[cfg(test)]
mod tests {
    use super::super::response::{decode_record, Responder};
    use super::*;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn bits_round_trip_and_reading_past_the_end_is_an_error() {
        let mut rng = ChaCha20Rng::seed_from_u64(120);
        let widths = [1u32, 7, 8, 24, 28, 56, 64, 3];
        let values: Vec<(u64, u32)> = (0..200)
            .map(|i| {
                let bits = widths[i % widths.len()];
                (
                    rng.next_u64() & u64::MAX.checked_shr(64 - bits).unwrap_or(0),
                    bits,
                )
            })
            .collect();
        let mut w = BitWriter::default();
        for &(v, bits) in &values {
            w.write(v, bits);
        }
        let total: u32 = values.iter().map(|&(_, b)| b).sum();
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), (total as usize).div_ceil(8));
        let mut r = BitReader::new(&bytes, "test bits");
        for &(v, bits) in &values {
            assert_eq!(r.read(bits).expect("read"), v);
        }
        r.finish().expect("finish");
        assert!(matches!(r.read(8), Err(PirError::Malformed { .. })));
        assert!(matches!(
            r.read_array::<1>(),
            Err(PirError::Malformed { .. })
        ));
        assert!(matches!(r.read(65), Err(PirError::Internal(_))));

        // Non-zero padding and trailing bytes are refused.
        let mut r = BitReader::new(&[0xff], "test bits");
        assert_eq!(r.read(3).expect("read"), 7);
        assert!(r.finish().is_err());
        let mut r = BitReader::new(&[0x07, 0], "test bits");
        assert_eq!(r.read(3).expect("read"), 7);
        assert!(r.finish().is_err());
        let mut r = BitReader::new(&[], "test bits");
        assert!(r.read(1).is_err());
    }

    struct Setup {
        qp: QueryParams,
        rp: ResponseParams,
        keys: Vec<u8>,
    }

    /// Keys of the small shape, and the records, database and secrets that go with them.
    fn small_setup(
        rng: &mut ChaCha20Rng,
    ) -> (
        Setup,
        super::super::rlwe::SecretKey,
        super::super::response::ResponseSecrets,
        PublicKeys,
        ResponseKeys,
    ) {
        let qp = QueryParams::respire_with_rotation(3, 2, 2).expect("params");
        let rp = ResponseParams::respire().expect("response params");
        let (sk, public) = qp.keygen(rng).expect("keygen");
        let (secrets, response) =
            ResponseKeys::generate_shared(&rp, &sk, &public, rng).expect("keys");
        let keys = encode_keys(&qp, &rp, &public, &response).expect("encode keys");
        (Setup { qp, rp, keys }, sk, secrets, public, response)
    }

    /// The keys and queries pass through bytes of exactly the announced lengths, parse back to
    /// the same values, and the parsed keys and queries answer end to end with the selected
    /// record (as `a_query_answered_and_compressed_decodes_to_the_selected_record`).
    #[test]
    fn keys_and_queries_through_bytes_answer_the_selected_record() {
        let mut rng = ChaCha20Rng::seed_from_u64(121);
        let (setup, sk, secrets, public, response) = small_setup(&mut rng);
        let Setup { qp, rp, keys } = setup;
        assert_eq!(keys.len(), keys_len(&qp, &rp));
        let (parsed_public, parsed_response) = decode_keys(&qp, &rp, &keys).expect("decode");
        // The parsed keys are the same keys: masks from the seeds, bodies from the bytes.
        let again = encode_keys(&qp, &rp, &parsed_public, &parsed_response).expect("encode again");
        assert!(again == keys, "re-encoding the parsed keys changes them");
        for (a, b) in public
            .gsw_expansion
            .keys()
            .iter()
            .zip(parsed_public.gsw_expansion.keys())
        {
            assert_eq!(a.power(), b.power());
            assert!(a.switching_key().rows() == b.switching_key().rows());
        }
        assert!(public
            .conversion
            .columns()
            .eq(parsed_public.conversion.columns()));
        assert!(
            response.compression.switching_key().rows()
                == parsed_response.compression.switching_key().rows()
        );
        drop((public, response));

        let (records, db) = super::super::random_database(&qp, &rp, &mut rng);
        let mut responder = Responder::new(&rp, &parsed_response).expect("responder");
        let mut out = vec![0u8; rp.response_bytes()];
        for index in [0usize, 37, 127, 90] {
            let query = qp.query(&sk, index, &mut rng).expect("query");
            let bytes = encode_query(&qp, &query).expect("encode query");
            assert_eq!(bytes.len(), query_len(&qp));
            let parsed = decode_query(&qp, &bytes).expect("decode query");
            assert_eq!(parsed, query);
            let mut answer = qp.answer(&parsed_public, &db, &parsed).expect("answer");
            responder.respond(&mut answer, &mut out).expect("respond");
            let record = decode_record(&rp, &secrets, &out).expect("decode record");
            assert_eq!(record, records[index], "index {index}");
        }
    }

    /// Truncated, over-long, out-of-range and mislabelled key bytes are typed errors.
    #[test]
    fn hostile_key_bytes_are_typed_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(122);
        let (setup, ..) = small_setup(&mut rng);
        let Setup { qp, rp, keys } = setup;
        let decode = |bytes: &[u8]| decode_keys(&qp, &rp, bytes).map(|_| ());
        assert!(matches!(
            decode(&keys[..keys.len() - 1]),
            Err(PirError::Length { .. })
        ));
        let mut longer = keys.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(PirError::Length { .. })));
        assert!(matches!(decode(&[]), Err(PirError::Length { .. })));

        let mut version = keys.clone();
        version[0] ^= 0xff;
        assert!(matches!(decode(&version), Err(PirError::Version { .. })));
        // Each header field: gadget base, digits, key count.
        for at in [4, 5, 6, HEADER_BYTES - 1] {
            let mut header = keys.clone();
            header[at] ^= 1;
            assert!(
                matches!(decode(&header), Err(PirError::Malformed { .. })),
                "header byte {at}"
            );
        }
        // The first word of the first row's body (28 bits) set to 2^28 - 1, above the prime;
        // then the last word of the compression key's last row (24 bits) to 2^24 - 1.
        let first_word = HEADER_BYTES + SEED_BYTES;
        let mut word = keys.clone();
        word[first_word..first_word + 3].fill(0xff);
        word[first_word + 3] |= 0x0f;
        assert!(matches!(decode(&word), Err(PirError::Malformed { .. })));
        let mut last = keys.clone();
        let end = last.len();
        last[end - 3..].fill(0xff);
        assert!(matches!(decode(&last), Err(PirError::Malformed { .. })));
        // A seed changed is still a valid encoding (of other keys).
        let mut seed = keys.clone();
        seed[HEADER_BYTES] ^= 1;
        assert!(decode(&seed).is_ok());

        // Random bytes of the right length: the header alone refuses them.
        let mut random = vec![0u8; keys.len()];
        rng.fill_bytes(&mut random);
        assert!(decode(&random).is_err());
        random[..HEADER_BYTES].copy_from_slice(&keys[..HEADER_BYTES]);
        assert!(matches!(decode(&random), Err(PirError::Malformed { .. })));

        // Projection keys of their own, which would not survive the sharing, are refused.
        let (sk, public) = qp.keygen(&mut rng).expect("keygen");
        let (_, own) = ResponseKeys::generate(&rp, &sk, &mut rng).expect("keys");
        assert!(matches!(
            encode_keys(&qp, &rp, &public, &own),
            Err(PirError::Param(_))
        ));
        // Keys for other parameters are refused by the encoder.
        let (_, response) =
            ResponseKeys::generate_shared(&rp, &sk, &public, &mut rng).expect("keys");
        let mut swapped = public.clone();
        std::mem::swap(&mut swapped.rlwe_expansion, &mut swapped.gsw_expansion);
        assert!(matches!(
            encode_keys(&qp, &rp, &swapped, &response),
            Err(PirError::Param(_))
        ));
        let mut computed = public.clone();
        let columns: Vec<Ciphertext> = public.conversion.columns().cloned().collect();
        let t = qp.conversion_gadget().digits();
        computed.conversion = GswCiphertext::from_columns(
            qp.conversion_gadget().clone(),
            columns[..t].to_vec(),
            columns[t..].to_vec(),
        )
        .expect("columns");
        assert!(matches!(
            encode_keys(&qp, &rp, &computed, &response),
            Err(PirError::Param(_))
        ));
    }

    /// Truncated, over-long, out-of-range and random query bytes: typed errors or (random but
    /// in range) a query, never a panic.
    #[test]
    fn hostile_query_bytes_are_typed_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(123);
        let qp = QueryParams::respire_with_rotation(3, 2, 2).expect("params");
        let sk = qp.rlwe().keygen(&mut rng).expect("keygen");
        let query = qp.query(&sk, 77, &mut rng).expect("query");
        let bytes = encode_query(&qp, &query).expect("encode");
        assert_eq!(bytes.len(), query_len(&qp));
        // 2 seeds, 8 and 32 coefficients of 56 bits.
        assert_eq!(query_len(&qp), 64 + 7 * (8 + 32));
        assert!(matches!(
            decode_query(&qp, &bytes[..bytes.len() - 1]),
            Err(PirError::Length { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode_query(&qp, &longer),
            Err(PirError::Length { .. })
        ));
        // A coefficient of 2^56 - 1 > q1.
        let mut big = bytes.clone();
        big[SEED_BYTES..SEED_BYTES + 7].fill(0xff);
        assert!(matches!(
            decode_query(&qp, &big),
            Err(PirError::Malformed { .. })
        ));
        let mut random = vec![0u8; bytes.len()];
        let (mut ok, mut malformed) = (0, 0);
        for _ in 0..200 {
            rng.fill_bytes(&mut random);
            // Coefficients kept below 2^55 < q1 half the time, so some parse.
            if rng.next_u32() & 1 == 0 {
                for i in 0..40 {
                    let byte = if i < 8 {
                        SEED_BYTES + 7 * i + 6
                    } else {
                        2 * SEED_BYTES + 7 * i + 6
                    };
                    random[byte] &= 0x7f;
                }
            }
            match decode_query(&qp, &random) {
                Ok(q) => {
                    ok += 1;
                    assert_eq!(encode_query(&qp, &q).expect("encode"), random);
                }
                Err(PirError::Malformed { .. }) => malformed += 1,
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        assert!(ok > 0 && malformed > 0, "ok {ok}, malformed {malformed}");

        // The encoder refuses queries of the wrong shape.
        let mut short = query.clone();
        short.columns.coeffs.pop();
        assert!(matches!(encode_query(&qp, &short), Err(PirError::Param(_))));
    }

    /// The sizes at the paper's 2^20 shape (`ν1 = ν2 = 9`, `ν3 = 2`), from the parameters only.
    #[test]
    fn sizes_at_the_paper_shape() {
        let qp = QueryParams::respire_with_rotation(9, 9, 2).expect("params");
        let rp = ResponseParams::respire().expect("response params");
        let keys = keys_len(&qp, &rp);
        let query = query_len(&qp);
        let groups = groups(&qp, &rp);
        for group in &groups {
            eprintln!(
                "Respire wire, {}: {} keys x {} rows = {} bytes{}",
                group.name,
                group.keys,
                group.rows_per_key,
                group.len(),
                if group.shared {
                    " (shared with the GSW expansion)"
                } else {
                    ""
                }
            );
        }
        assert!(groups[3].shared);
        eprintln!(
            "Respire wire at 2^20 records (nu1 = 9, nu2 = 9, nu3 = 2): keys {keys} bytes \
             ({:.1} KiB), query {query} bytes ({:.2} KiB)",
            keys as f64 / 1024.0,
            query as f64 / 1024.0
        );
        // 32-byte seeds and 56-bit coefficients: 512 row values and 11·8 column values.
        assert_eq!(query, 64 + 7 * (512 + 88));
        let large_row = 32 + 2048 * 56 / 8;
        let small_row = 32 + 2048 * 24 / 8;
        assert_eq!(
            keys,
            HEADER_BYTES + (11 * 4 + 11 * 20 + 8 + 2) * large_row + 24 * small_row
        );
    }
}
