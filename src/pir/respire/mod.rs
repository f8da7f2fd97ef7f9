//! Respire: single-server PIR for databases of small records (A. Burton, S. J. Menon,
//! D. J. Wu, "Respire: High-Rate PIR for Databases with Small Records", ACM CCS 2024,
//! eprint 2024/1165), written from the paper on the project's own NTT (`pir/ntt.rs`; issue 13).
//!
//! Respire follows Spiral (S. J. Menon and D. J. Wu, "Spiral: Fast, High-Rate Single-Server
//! PIR via FHE Composition", IEEE S&P 2022): the client's query is packed RLWE ciphertexts,
//! which the server expands with automorphisms, turns partly into GSW ciphertexts, multiplies
//! into the database's first dimension and folds the rest with GSW external products. What
//! Respire adds for 256-byte records is the small response: the answer is projected to a
//! subring, switched to a ring of degree 512 with a small modulus, and rounded to 2 KiB, and
//! the query is embedded in subring coefficients so it is smaller than one large-ring element.
//!
//! The first layer, tested on its own:
//! - [`ring`]: `Z_q[x]/(x^d + 1)` for Respire's two rings (two CRT limbs for `q1`, one for `q2`),
//!   in coefficient and NTT form, with CRT, add/sub/neg, scalar and NTT products, the
//!   automorphisms `x -> x^k` (index map with signs in coefficient form, a permutation in NTT
//!   form), signed gadget decomposition, and the rounding of modulus switching and decryption.
//! - [`rlwe`]: the paper's secret and error distributions (with a constant-time CDT discrete
//!   Gaussian sampler), RLWE encryption with the `a` part expanded from a 32-byte ChaCha20 seed,
//!   decryption to `Z_p`, homomorphic addition and plaintext products, automorphisms of
//!   ciphertexts with gadget key switching, and noise measurement.
//! - [`keyswitch`]: gadget key switching between two secrets of one ring.
//!
//! The response side of the single-query scheme ([`response`] puts it together):
//! - [`project`]: projection of the answer onto the subring of degree `d2 = 512`;
//! - [`vectorise`]: the scalar-to-vector key switch, for one slot (`n_vec = 1`);
//! - [`compress`]: modulus switching (mask to `q2`, body to `q3`), key switching to the small
//!   secret and the switch to `R_{512}`, and the client's phase;
//! - [`record`]: records as plaintexts and their interleaved packing;
//! - [`response`]: the parameters, the client's keys and their sizes, the server's pipeline,
//!   the 2048-byte encoding, and the client's decoding to the record.
//!
//! The query side of the single-query scheme, up to one large-ring RLWE ciphertext of the
//! selected plaintext:
//! - [`gsw`]: GSW ciphertexts (gadget `(127, 8)`), the external product GSW ⊡ RLWE and the
//!   homomorphic select.
//! - [`expand`]: coefficient expansion by the automorphisms `x -> x^(d/2^i + 1)` (bit-reversed
//!   packing, truncated as the reference code does) and the RLWE-to-GSW conversion.
//! - [`database`]: the `2^ν1 × 2^ν2` database of NTT-form plaintexts and the first dimension on
//!   unreduced accumulators; [`fold`]: folding the `2^ν2` columns with the GSW bits;
//!   [`rotate`]: the rotation by `x^(-r)` that brings record `r` of the `2^ν3` in a plaintext
//!   to the coefficients the projection keeps.
//! - [`query`]: keys, the client's packed seeded query, the server's expansion and answer, and
//!   decryption of the large-ring answer mod 16, tested end to end.
//!
//! On the wire: [`wire`] encodes the client's public keys (every row a 32-byte seed of its
//! mask and its body at each CRT limb's bit width, checked against the parameters when
//! parsed) and its queries (two seeds and the packed coefficients at 56 bits), with lengths
//! that are functions of the parameters only.
//!
//! The projection keys are the first two GSW expansion keys (same automorphisms, same
//! gadget; [`ResponseKeys::generate_shared`]), so they are generated and sent once.
//!
//! Still to come: the scheme behind the `IndexPir`
//! trait, selected through PIRCFG's scheme id; a faster first dimension; and
//! batching with probabilistic batch codes (vectors of `n_vec > 1` slots, several records
//! per response).
//!
//! Parameters (Respire Tables 3-5, confirmed against the reference implementation
//! `AMACB/respire`, `src/pir/respire_harness.rs`; summarised in
//! `/work/shared/notes/pir-schemes.md` section 4.1), single-query set:
//! - large ring `d1 = 2048`, `q1 = 268369921 · 249561089 ≈ 2^56`; secret uniform on
//!   `[-7, 7]`; error discrete Gaussian of width `s = 9.9`;
//! - small ring `d2 = d3 = 512`, `q2 = 16760833 ≈ 2^24`; secret and error discrete Gaussian of
//!   width `s = 253.6`; response rounded to `q3 = 2^8`; plaintext modulus `p = 16`;
//! - gadgets `(z, t)`: GSW `(127, 8)`, RLWE coefficient expansion `(16088, 4)`, GSW coefficient
//!   expansion and projection `(7, 20)`, RLWE-to-GSW `(16088, 4)`, vectorisation
//!   `(258794687, 2)`, compression `(2, 24)` over `q2`.
//!
//! The Gaussian "width" is the parameter `s` of `ρ_s(x) = exp(-π x² / s²)`, as in Spiral and the
//! reference code (`src/math/discrete_gaussian.rs`, and `noise.rs`, which adds squared widths
//! as sub-Gaussian parameters); the standard deviation is `s / √(2π)`: 3.95 for `s = 9.9`,
//! 101.2 for `s = 253.6`. See [`rlwe::DiscreteGaussian`].

pub mod compress;
pub mod database;
pub mod expand;
pub mod fold;
pub mod gsw;
pub mod index;
pub mod keyswitch;
pub mod project;
pub mod query;
pub mod record;
pub mod response;
pub mod ring;
pub mod rlwe;
pub mod rotate;
pub mod vectorise;
pub mod wire;

pub use compress::{CompressedResponse, CompressionKey};
pub use database::{Database, FirstDimensionScratch};
pub use expand::{
    packed_position, ExpansionKeys, ExpansionScratch, CONVERSION_GADGET, GSW_EXPANSION_GADGET,
    RLWE_EXPANSION_GADGET,
};
pub use gsw::{GswCiphertext, GswScratch, GSW_GADGET};
pub use index::{Respire, RespireClient, RespireKey, RespireServer, RespireUpdate};
pub use keyswitch::SwitchingKey;
pub use project::ProjectionKeys;
pub use query::{
    ExpandedQuery, PackedCiphertext, PublicKeys, Query, QueryParams, PLAINTEXT_MODULUS,
};
pub use response::{
    decode_record, decode_response, encode_response, KeySizes, Responder, ResponseKeys,
    ResponseParams, ResponseSecrets,
};
pub use ring::{Gadget, NttPoly, Poly, Ring, RingElement};
pub use rlwe::{
    AutomorphismKey, Ciphertext, DiscreteGaussian, KeySwitchScratch, RlweParams,
    SecretDistribution, SecretKey, SeededCiphertext,
};
pub use rotate::RotationScratch;
pub use vectorise::VectoriseKey;
pub use wire::{
    decode_keys, decode_query, encode_keys, encode_query, keys_len, query_len, KEYS_VERSION,
};

/// `2^(ν1+ν2+ν3)` random records of `qp`'s shape and their database, for tests.
#[cfg(test)]
pub(crate) fn random_database<R: rand::RngCore>(
    qp: &QueryParams,
    rp: &ResponseParams,
    rng: &mut R,
) -> (Vec<Vec<u8>>, Database) {
    let n = 1usize << (qp.nu1() + qp.nu2() + qp.nu3());
    let records: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let mut r = vec![0u8; rp.record_bytes()];
            rng.fill_bytes(&mut r);
            r
        })
        .collect();
    let per_plaintext = 1 << qp.nu3();
    let degree = qp.rlwe().ring().degree();
    let db = Database::from_fn(qp.rlwe(), qp.nu1(), qp.nu2(), PLAINTEXT_MODULUS, |i| {
        let refs: Vec<&[u8]> = records[i * per_plaintext..(i + 1) * per_plaintext]
            .iter()
            .map(Vec::as_slice)
            .collect();
        record::pack_records(&refs, PLAINTEXT_MODULUS, degree)
    })
    .expect("db");
    (records, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// The whole single-query scheme at a small database: the client's query, the server's
    /// answer and compressed response, and the client's decoding give back exactly the
    /// record asked for, from each of the four positions in a plaintext.
    #[test]
    fn a_query_answered_and_compressed_decodes_to_the_selected_record() {
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let (nu1, nu2, nu3) = (3, 2, 2);
        let qp = QueryParams::respire_with_rotation(nu1, nu2, nu3).expect("params");
        let rp = ResponseParams::respire().expect("response params");
        let (sk, keys) = qp.keygen(&mut rng).expect("keygen");
        let (secrets, rkeys) = ResponseKeys::generate(&rp, &sk, &mut rng).expect("keys");
        let (records, db) = random_database(&qp, &rp, &mut rng);
        let mut responder = Responder::new(&rp, &rkeys).expect("responder");
        let mut bytes = vec![0u8; rp.response_bytes()];
        assert_eq!(bytes.len(), 2048);
        for index in [0usize, 37, 127, 90] {
            let query = qp.query(&sk, index, &mut rng).expect("query");
            let mut answer = qp.answer(&keys, &db, &query).expect("answer");
            responder.respond(&mut answer, &mut bytes).expect("respond");
            let record = decode_record(&rp, &secrets, &bytes).expect("decode");
            assert_eq!(record, records[index], "index {index}");
        }
    }
}
