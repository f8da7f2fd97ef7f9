//! The response side of Respire's single-query scheme, end to end (Burton, Menon, Wu,
//! CCS 2024; the reference code's `answer_project`, `answer_compress_chunk`,
//! `answer_compress_vec`, `extract_one`, `src/pir/respire.rs`): from the server's result, a
//! large-ring ciphertext under the client's secret `s` whose plaintext holds `d1/d2` records
//! with the wanted one rotated to the multiples of `d1/d2` (the folding side's rotate-select),
//! to the response bytes, and back to the record at the client.
//!
//! 1. [`project`](super::project): onto the subring of degree `d2` (projection gadget 7, 20);
//! 2. [`vectorise`](super::vectorise): key switch to the vector secret (gadget 258794687, 2);
//! 3. [`compress`](super::compress): mask to `q2`, key switch to the small secret embedded in
//!    the large ring (gadget 2, 24 over `q2`), body to `q3`, subring coefficients kept.
//!
//! The response is `d2` mask residues mod `q2` at `ceil(log2 q2)` bits each, then `d2` body
//! residues mod `q3` at `log2 q3` bits each, each part a little-endian bit stream padded to a
//! byte: `512·24/8 + 512·8/8 = 1536 + 512 = 2048` bytes for the single-query set, the paper's
//! 2.000 KiB (rate 256/2048 = 0.125). The length is a function of the parameters only.
//!
//! Client key material beyond `s`: the vector secret (large ring, width 9.9) and the small
//! secret (`R_{512}`, width 253.6). Public keys sent to the server, with seeded masks (32 bytes
//! a row plus one element at `ceil(log2 q)` bits a coefficient): projection 2 × 20 rows over
//! `q1` = 574,720 bytes (the first two of the GSW coefficient expansion's keys, which use the
//! same gadget, so shared with query expansion), vectorisation 2 rows over `q1` = 28,736 bytes,
//! compression 24 rows over `q2` = 148,224 bytes ([`ResponseKeys::wire_bytes`]).

use rand::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::super::PirError;
use super::compress::{
    client_phase, compress, switch_params, CompressScratch, CompressedResponse, CompressionKey,
    RESPONSE_MODULUS,
};
use super::keyswitch::residue_bits;
use super::project::{project, ProjectScratch, ProjectionKeys};
use super::query::PublicKeys;
use super::record::{coeffs_to_record, plaintext_bits};
use super::ring::{Gadget, SMALL_DEGREE};
use super::rlwe::{Ciphertext, RlweParams, SecretKey};
use super::vectorise::{vector_params, vectorise, VectoriseKey, VectoriseScratch};
use super::wire::{BitReader, BitWriter};

/// The plaintext modulus of Respire's 256-byte-record sets (Tables 3-5).
pub const PLAINTEXT_MODULUS: u64 = 16;

/// Rings, distributions, gadgets and moduli of the response side.
#[derive(Debug, Clone)]
pub struct ResponseParams {
    large: RlweParams,
    vector: RlweParams,
    switch: RlweParams,
    small: RlweParams,
    projection_gadget: Gadget,
    vectorise_gadget: Gadget,
    compression_gadget: Gadget,
    q3: u64,
    p: u64,
}

impl ResponseParams {
    /// Respire's single-query set (Tables 3-5; `/work/shared/notes/pir-schemes.md` 4.1).
    pub fn respire() -> Result<ResponseParams, PirError> {
        let large = RlweParams::respire_large()?;
        let switch = switch_params()?;
        let projection_gadget = large.ring().gadget(7, 20)?;
        let vectorise_gadget = large.ring().gadget(258794687, 2)?;
        let compression_gadget = switch.ring().gadget(2, 24)?;
        let small = RlweParams::respire_small()?;
        if small.ring().degree() != SMALL_DEGREE {
            return Err(PirError::Param("small ring degree".into()));
        }
        Ok(ResponseParams {
            large,
            vector: vector_params()?,
            switch,
            small,
            projection_gadget,
            vectorise_gadget,
            compression_gadget,
            q3: RESPONSE_MODULUS,
            p: PLAINTEXT_MODULUS,
        })
    }

    /// The large ring with the query secret's distributions.
    pub fn large(&self) -> &RlweParams {
        &self.large
    }

    /// The large ring with the vector secret's distributions.
    pub fn vector(&self) -> &RlweParams {
        &self.vector
    }

    /// `R_{d1, q2}`, where the compression key lives.
    pub fn switch(&self) -> &RlweParams {
        &self.switch
    }

    /// `R_{d2, q2}`, the small ring.
    pub fn small(&self) -> &RlweParams {
        &self.small
    }

    /// The gadget of the projection keys.
    pub fn projection_gadget(&self) -> &Gadget {
        &self.projection_gadget
    }

    /// The gadget of the vectorisation key.
    pub fn vectorise_gadget(&self) -> &Gadget {
        &self.vectorise_gadget
    }

    /// The gadget of the compression key (over `q2`).
    pub fn compression_gadget(&self) -> &Gadget {
        &self.compression_gadget
    }

    /// `p`.
    pub fn plaintext_modulus(&self) -> u64 {
        self.p
    }

    /// `q3`.
    pub fn response_modulus(&self) -> u64 {
        self.q3
    }

    /// `d1/d2`: records in one large-ring plaintext.
    pub fn records_per_plaintext(&self) -> usize {
        self.large.ring().degree() / self.small.ring().degree()
    }

    /// Bytes of one record: `d2·log2(p)/8`.
    pub fn record_bytes(&self) -> usize {
        self.small.ring().degree() * self.p.trailing_zeros() as usize / 8
    }

    /// Bytes of one response (module doc).
    pub fn response_bytes(&self) -> usize {
        let d2 = self.small.ring().degree();
        (d2 * residue_bits(self.small.ring().modulus()) as usize).div_ceil(8)
            + (d2 * self.q3.trailing_zeros() as usize).div_ceil(8)
    }
}

/// The client's secrets for the response side (besides the query secret `s`).
pub struct ResponseSecrets {
    vector: SecretKey,
    small: SecretKey,
}

impl std::fmt::Debug for ResponseSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseSecrets(..)")
    }
}

impl ResponseSecrets {
    /// The vector secret (large ring).
    pub fn vector(&self) -> &SecretKey {
        &self.vector
    }

    /// The small ring's secret.
    pub fn small(&self) -> &SecretKey {
        &self.small
    }
}

/// The public keys the server needs for the response.
#[derive(Debug, Clone)]
pub struct ResponseKeys {
    pub projection: ProjectionKeys,
    pub vectorise: VectoriseKey,
    pub compression: CompressionKey,
}

/// Sizes in bytes of the public keys with seeded masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySizes {
    pub projection: usize,
    pub vectorise: usize,
    pub compression: usize,
}

impl KeySizes {
    pub fn total(&self) -> usize {
        self.projection + self.vectorise + self.compression
    }
}

impl ResponseKeys {
    /// Fresh response secrets and the keys for them, for the query secret `s`.
    pub fn generate<R: RngCore + CryptoRng>(
        params: &ResponseParams,
        s: &SecretKey,
        rng: &mut R,
    ) -> Result<(ResponseSecrets, ResponseKeys), PirError> {
        ResponseKeys::generate_with(params, s, rng, |rng| {
            ProjectionKeys::generate(
                &params.large,
                s,
                params.small.ring().degree(),
                &params.projection_gadget,
                rng,
            )
        })
    }

    /// The same, with the projection keys taken from the query's GSW coefficient expansion
    /// keys (the same automorphisms of the same ring, under the same gadget `(7, 20)`), so
    /// they are generated and sent once ([`super::wire`] sends them once only if they are
    /// shared so). A GSW expansion gadget other than the projection gadget is
    /// [`PirError::Param`].
    pub fn generate_shared<R: RngCore + CryptoRng>(
        params: &ResponseParams,
        s: &SecretKey,
        public: &PublicKeys,
        rng: &mut R,
    ) -> Result<(ResponseSecrets, ResponseKeys), PirError> {
        let shares = public.gsw_expansion.gadget().is_some_and(|g| {
            g.base() == params.projection_gadget.base()
                && g.digits() == params.projection_gadget.digits()
        });
        if !shares {
            return Err(PirError::Param(
                "the GSW expansion keys' gadget is not the projection gadget".into(),
            ));
        }
        ResponseKeys::generate_with(params, s, rng, |_| {
            ProjectionKeys::from_expansion(
                &params.large,
                &public.gsw_expansion,
                params.small.ring().degree(),
            )
        })
    }

    fn generate_with<R: RngCore + CryptoRng>(
        params: &ResponseParams,
        s: &SecretKey,
        rng: &mut R,
        projection: impl FnOnce(&mut R) -> Result<ProjectionKeys, PirError>,
    ) -> Result<(ResponseSecrets, ResponseKeys), PirError> {
        let vector = params.vector.keygen(rng)?;
        let small = params.small.keygen(rng)?;
        let projection = projection(rng)?;
        let vectorise =
            VectoriseKey::generate(&params.vector, s, &vector, &params.vectorise_gadget, rng)?;
        let compression = CompressionKey::generate(
            &params.switch,
            &vector,
            &small,
            &params.compression_gadget,
            rng,
        )?;
        Ok((
            ResponseSecrets { vector, small },
            ResponseKeys {
                projection,
                vectorise,
                compression,
            },
        ))
    }

    /// The keys' sizes on the wire (module doc).
    pub fn wire_bytes(&self, params: &ResponseParams) -> KeySizes {
        KeySizes {
            projection: self.projection.wire_bytes(&params.large),
            vectorise: self.vectorise.wire_bytes(params.large.ring()),
            compression: self.compression.wire_bytes(params.switch.ring()),
        }
    }
}

/// The server's response pipeline with its buffers, allocated once.
#[derive(Debug)]
pub struct Responder<'a> {
    params: &'a ResponseParams,
    keys: &'a ResponseKeys,
    project: ProjectScratch,
    vectorise: VectoriseScratch,
    compress: CompressScratch,
    compressed: CompressedResponse,
}

impl<'a> Responder<'a> {
    pub fn new(params: &'a ResponseParams, keys: &'a ResponseKeys) -> Result<Self, PirError> {
        let d2 = params.small.ring().degree();
        Ok(Responder {
            params,
            keys,
            project: keys.projection.scratch(&params.large)?,
            vectorise: keys.vectorise.scratch(params.large.ring()),
            compress: keys
                .compression
                .scratch(params.large.ring(), params.switch.ring()),
            compressed: CompressedResponse {
                mask: vec![0; d2],
                body: vec![0; d2],
            },
        })
    }

    /// Projects, vectorises and compresses `ct` (consumed as a buffer) into
    /// `out` (exactly [`ResponseParams::response_bytes`] long).
    pub fn respond(&mut self, ct: &mut Ciphertext, out: &mut [u8]) -> Result<(), PirError> {
        let params = self.params;
        project(&params.large, &self.keys.projection, ct, &mut self.project)?;
        vectorise(
            params.large.ring(),
            &self.keys.vectorise,
            ct,
            &mut self.vectorise,
        )?;
        compress(
            params.large.ring(),
            params.switch.ring(),
            &self.keys.compression,
            params.q3,
            ct,
            &mut self.compress,
            &mut self.compressed,
        )?;
        encode_response(params, &self.compressed, out)
    }
}

/// `out ← ` the bytes of `response` (module doc); `out` is exactly
/// [`ResponseParams::response_bytes`] long.
pub fn encode_response(
    params: &ResponseParams,
    response: &CompressedResponse,
    out: &mut [u8],
) -> Result<(), PirError> {
    let d2 = params.small.ring().degree();
    let expected = params.response_bytes();
    if out.len() != expected || response.mask.len() != d2 || response.body.len() != d2 {
        return Err(PirError::Length {
            what: "Respire response buffer",
            expected,
            got: out.len(),
        });
    }
    let mask_bits = residue_bits(params.small.ring().modulus());
    let body_bits = params.q3.trailing_zeros();
    let mut w = BitWriter::with_capacity(expected);
    for &m in &response.mask {
        w.write(u64::from(m), mask_bits);
    }
    w.align();
    for &b in &response.body {
        w.write(u64::from(b), body_bits);
    }
    out.copy_from_slice(&w.into_bytes());
    Ok(())
}

/// The compressed response in `bytes`, checked: the length must be
/// [`ResponseParams::response_bytes`] ([`PirError::Length`]) and every mask residue below `q2`
/// ([`PirError::Malformed`]); any body is valid.
pub fn decode_response(
    params: &ResponseParams,
    bytes: &[u8],
) -> Result<CompressedResponse, PirError> {
    let expected = params.response_bytes();
    if bytes.len() != expected {
        return Err(PirError::Length {
            what: "Respire response",
            expected,
            got: bytes.len(),
        });
    }
    let d2 = params.small.ring().degree();
    let q2 = params.small.ring().modulus();
    let mask_bits = residue_bits(q2);
    let mut r = BitReader::new(bytes, "Respire response");
    let mut response = CompressedResponse {
        mask: vec![0; d2],
        body: vec![0; d2],
    };
    for m in response.mask.iter_mut() {
        // At most 24 bits.
        *m = r.read(mask_bits)? as u32;
    }
    r.align()?;
    for b in response.body.iter_mut() {
        // At most 16 bits.
        *b = r.read(params.q3.trailing_zeros())? as u32;
    }
    r.finish()?;
    // The mask is public (it is what was sent), so this check may branch on it.
    if let Some((i, &m)) = response
        .mask
        .iter()
        .enumerate()
        .find(|(_, &m)| u64::from(m) >= q2)
    {
        return Err(PirError::Malformed {
            what: "Respire response",
            reason: format!("mask coefficient {i} is {m}, not below q2 = {q2}"),
        });
    }
    Ok(response)
}

/// The client's decoding of response `bytes` to the record (exactly
/// [`ResponseParams::record_bytes`] long): the phase mod `q3` ([`client_phase`]) rounded to
/// `p` (`q3` and `p` powers of two: `round(p·x/q3) = (x + q3/2p) >> log2(q3/p)`), and the
/// residues read as record bits ([`coeffs_to_record`]).
pub fn decode_record(
    params: &ResponseParams,
    secrets: &ResponseSecrets,
    bytes: &[u8],
) -> Result<Vec<u8>, PirError> {
    let response = decode_response(params, bytes)?;
    let d2 = params.small.ring().degree();
    let mut phase = vec![0u32; d2];
    client_phase(
        &params.small,
        &secrets.small,
        params.q3,
        &response,
        &mut phase,
    )?;
    plaintext_bits(params.p)?;
    let shift = (params.q3 / params.p).trailing_zeros();
    let half = (params.q3 / params.p / 2) as u32;
    let p_mask = (params.p - 1) as u32;
    for x in phase.iter_mut() {
        *x = ((*x + half) >> shift) & p_mask;
    }
    let mut record = vec![0u8; params.record_bytes()];
    coeffs_to_record(&phase, params.p, &mut record)?;
    phase.zeroize();
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pir::respire::compress::tests::phase_noise;
    use crate::pir::respire::project::tests::subring_part;
    use crate::pir::respire::record::{pack_records, record_to_coeffs};
    use crate::pir::respire::ring::{Poly, LARGE_DEGREE};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn sizes_are_the_papers() {
        let params = ResponseParams::respire().expect("params");
        assert_eq!(params.response_bytes(), 2048);
        assert_eq!(params.record_bytes(), 256);
        assert_eq!(params.records_per_plaintext(), 4);
        let mut rng = ChaCha20Rng::seed_from_u64(80);
        let s = params.large().keygen(&mut rng).expect("keygen");
        let (_, keys) = ResponseKeys::generate(&params, &s, &mut rng).expect("keys");
        let sizes = keys.wire_bytes(&params);
        println!(
            "response {} bytes for a {}-byte record (rate {:.3}); public keys: projection {} \
             bytes, vectorisation {}, compression {}, total {} ({:.1} KiB)",
            params.response_bytes(),
            params.record_bytes(),
            params.record_bytes() as f64 / params.response_bytes() as f64,
            sizes.projection,
            sizes.vectorise,
            sizes.compression,
            sizes.total(),
            sizes.total() as f64 / 1024.0
        );
        assert_eq!(
            sizes,
            KeySizes {
                projection: 2 * 20 * (32 + 2048 * 56 / 8),
                vectorise: 2 * (32 + 2048 * 56 / 8),
                compression: 24 * (32 + 2048 * 24 / 8),
            }
        );
    }

    /// `ct ← ct·x^-r` (a plaintext product by the monomial `-x^(d-r)`): what the folding
    /// side's homomorphic rotate-select computes when the query selects record `r`.
    fn rotate_down(params: &RlweParams, ct: &mut Ciphertext, r: usize) {
        if r == 0 {
            return;
        }
        let ring = params.ring();
        let mut monomial = vec![0i64; ring.degree()];
        monomial[ring.degree() - r] = -1;
        let pt = ring
            .into_ntt(ring.poly_from_i64(&monomial).expect("poly"))
            .expect("ntt");
        params.mul_plain_assign(ct, &pt).expect("rotate");
    }

    /// From a fresh large-ring encryption of 4 packed records to each record's bytes, with the
    /// noise after every step.
    #[test]
    fn full_chain_decodes_each_of_the_four_records() {
        let mut rng = ChaCha20Rng::seed_from_u64(81);
        let params = ResponseParams::respire().expect("params");
        let (p, q3) = (params.plaintext_modulus(), params.response_modulus());
        let large = params.large();
        let ring = large.ring();
        let s = large.keygen(&mut rng).expect("keygen");
        let (secrets, keys) = ResponseKeys::generate(&params, &s, &mut rng).expect("keys");
        let records: Vec<Vec<u8>> = (0..4)
            .map(|_| {
                let mut r = vec![0u8; params.record_bytes()];
                rng.fill_bytes(&mut r);
                r
            })
            .collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let packed = pack_records(&refs, p, LARGE_DEGREE).expect("pack");
        let answer = large.encrypt(&s, &packed, p, &mut rng).expect("encrypt");

        let mut responder = Responder::new(&params, &keys).expect("responder");
        let mut bytes = vec![0u8; params.response_bytes()];
        for (r, record) in records.iter().enumerate() {
            // The expected subring plaintext: Δ·(record r) at the multiples of 4.
            let mut coeffs = vec![0u32; SMALL_DEGREE];
            record_to_coeffs(record, p, &mut coeffs).expect("coeffs");
            let mut spread = vec![0u32; LARGE_DEGREE];
            for (i, &c) in coeffs.iter().enumerate() {
                spread[4 * i] = c;
            }
            let mut expected: Poly = ring.zero();
            ring.scale_plaintext(&spread, p, &mut expected)
                .expect("scale");
            assert_eq!(subring_part(ring, &expected, 4), expected);

            // Step by step, measuring the noise.
            let mut ct = answer.clone();
            rotate_down(large, &mut ct, r);
            project(large, &keys.projection, &mut ct, &mut responder.project).expect("project");
            let e_project = large.noise(&s, &ct, &expected).expect("noise");
            vectorise(ring, &keys.vectorise, &mut ct, &mut responder.vectorise).expect("vectorise");
            let vector = params.vector();
            let e_vector = vector
                .noise(secrets.vector(), &ct, &expected)
                .expect("noise");
            let mut compressed = CompressedResponse {
                mask: vec![0; SMALL_DEGREE],
                body: vec![0; SMALL_DEGREE],
            };
            compress(
                ring,
                params.switch().ring(),
                &keys.compression,
                q3,
                &ct,
                &mut responder.compress,
                &mut compressed,
            )
            .expect("compress");
            let mut phase = vec![0u32; SMALL_DEGREE];
            client_phase(params.small(), secrets.small(), q3, &compressed, &mut phase)
                .expect("phase");
            let e_compress = phase_noise(&phase, &coeffs, q3, p);
            let bound = q3 / (2 * p);
            println!(
                "record {r}: max |e| after projection 2^{:.1} (margin {:.1} bits), after \
                 vectorisation 2^{:.1} (margin {:.1} bits), after compression {e_compress}/{q3} \
                 against < {bound} (margin {:.2} bits)",
                (e_project as f64).log2(),
                large.margin_bits(e_project, p),
                (e_vector as f64).log2(),
                vector.margin_bits(e_vector, p),
                (bound as f64 / e_compress.max(1) as f64).log2()
            );
            assert!(large.margin_bits(e_project, p) > 35.0);
            assert!(vector.margin_bits(e_vector, p) > 10.0);
            assert!(e_compress < bound);

            // The whole pipeline through bytes.
            let mut ct = answer.clone();
            rotate_down(large, &mut ct, r);
            let start = std::time::Instant::now();
            responder.respond(&mut ct, &mut bytes).expect("respond");
            let elapsed = start.elapsed();
            let mut encoded = vec![0u8; params.response_bytes()];
            encode_response(&params, &compressed, &mut encoded).expect("encode");
            assert_eq!(
                decode_response(&params, &encoded).expect("decode"),
                compressed
            );
            let decoded = decode_record(&params, &secrets, &bytes).expect("decode");
            println!("record {r}: respond {elapsed:?}, {} bytes", bytes.len());
            assert_eq!(&decoded, record, "record {r}");
        }
    }

    /// The folding side hands over a ciphertext with far more error than a fresh one: an
    /// extra error uniform in `[-2^48, 2^48]` (2.9 bits under the `q1/(2p)` decoding bound)
    /// still decodes exactly, since compression scales it by `q3/q1` to at most 1/4 of a unit
    /// of `q3`.
    #[test]
    fn large_input_error_still_decodes() {
        let mut rng = ChaCha20Rng::seed_from_u64(83);
        let params = ResponseParams::respire().expect("params");
        let (p, q3) = (params.plaintext_modulus(), params.response_modulus());
        let large = params.large();
        let ring = large.ring();
        let s = large.keygen(&mut rng).expect("keygen");
        let (secrets, keys) = ResponseKeys::generate(&params, &s, &mut rng).expect("keys");
        let mut responder = Responder::new(&params, &keys).expect("responder");
        let record: Vec<u8> = (0..256).map(|_| rng.next_u32() as u8).collect();
        let mut coeffs = vec![0u32; SMALL_DEGREE];
        record_to_coeffs(&record, p, &mut coeffs).expect("coeffs");
        let mut spread = vec![0u32; LARGE_DEGREE];
        for (i, &c) in coeffs.iter().enumerate() {
            spread[4 * i] = c;
        }
        let mut ct = large.encrypt(&s, &spread, p, &mut rng).expect("encrypt");
        let extra: Vec<i64> = (0..LARGE_DEGREE)
            .map(|_| (rng.next_u64() % (1 << 49)) as i64 - (1 << 48))
            .collect();
        let extra = ring
            .into_ntt(ring.poly_from_i64(&extra).expect("poly"))
            .expect("ntt");
        ring.add_assign(&mut ct.b, &extra).expect("add");
        let mut expected = ring.zero();
        ring.scale_plaintext(&spread, p, &mut expected)
            .expect("scale");
        let e_in = large.noise(&s, &ct, &expected).expect("noise");
        let mut bytes = vec![0u8; params.response_bytes()];
        responder.respond(&mut ct, &mut bytes).expect("respond");
        let response = decode_response(&params, &bytes).expect("decode");
        let mut phase = vec![0u32; SMALL_DEGREE];
        client_phase(params.small(), secrets.small(), q3, &response, &mut phase).expect("phase");
        let e_out = phase_noise(&phase, &coeffs, q3, p);
        println!(
            "input error 2^{:.1} (margin {:.1} bits at q1): after compression {e_out}/{q3} \
             against < {}",
            (e_in as f64).log2(),
            large.margin_bits(e_in, p),
            q3 / (2 * p)
        );
        assert!(e_out < q3 / (2 * p));
        assert_eq!(
            decode_record(&params, &secrets, &bytes).expect("record"),
            record
        );
    }

    #[test]
    fn hostile_bytes_are_typed_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(82);
        let params = ResponseParams::respire().expect("params");
        let s = params.large().keygen(&mut rng).expect("keygen");
        let (secrets, _) = ResponseKeys::generate(&params, &s, &mut rng).expect("keys");
        for len in [0, 1, 1536, 2047, 2049, 4096] {
            assert!(
                matches!(
                    decode_record(&params, &secrets, &vec![0u8; len]),
                    Err(PirError::Length { .. })
                ),
                "length {len}"
            );
        }
        // A mask residue at or above q2 (0xffffff).
        let mut bytes = vec![0u8; 2048];
        bytes[3..6].fill(0xff);
        assert!(matches!(
            decode_record(&params, &secrets, &bytes),
            Err(PirError::Malformed { .. })
        ));
        // Random bytes with every mask residue below q2 decode to some record.
        for _ in 0..8 {
            rng.fill_bytes(&mut bytes);
            for chunk in bytes[..1536].chunks_mut(3) {
                chunk[2] &= 0x7f;
            }
            let record = decode_record(&params, &secrets, &bytes).expect("decodes");
            assert_eq!(record.len(), 256);
        }
        let compressed = CompressedResponse {
            mask: vec![0; 512],
            body: vec![0; 512],
        };
        assert!(encode_response(&params, &compressed, &mut [0u8; 100]).is_err());
    }

    #[test]
    fn bit_streams_round_trip() {
        let round_trip = |values: &[u32], bits: u32, len: usize| {
            let mut w = BitWriter::default();
            for &v in values {
                w.write(u64::from(v), bits);
            }
            let bytes = w.into_bytes();
            assert_eq!(bytes.len(), len);
            let mut r = BitReader::new(&bytes, "test");
            let back: Vec<u32> = values
                .iter()
                .map(|_| r.read(bits).expect("read") as u32)
                .collect();
            r.finish().expect("whole");
            assert_eq!(back, values);
        };
        let values: Vec<u32> = (0..37u32).map(|i| i * 123_457 % (1 << 24)).collect();
        round_trip(&values, 24, (37 * 24usize).div_ceil(8));
        let small: Vec<u32> = (0..9u32).map(|i| i % 8).collect();
        round_trip(&small, 3, 4);
    }
}
