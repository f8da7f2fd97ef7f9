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
//! Still to come: projection to the small ring, vectorisation, modulus switching and
//! compression of the response, record encoding and decoding, byte encodings of keys and
//! queries, and batching with probabilistic batch codes.
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

pub mod database;
pub mod expand;
pub mod fold;
pub mod gsw;
pub mod query;
pub mod ring;
pub mod rlwe;
pub mod rotate;

pub use database::{Database, FirstDimensionScratch};
pub use expand::{
    packed_position, ExpansionKeys, ExpansionScratch, CONVERSION_GADGET, GSW_EXPANSION_GADGET,
    RLWE_EXPANSION_GADGET,
};
pub use gsw::{GswCiphertext, GswScratch, GSW_GADGET};
pub use query::{
    ExpandedQuery, PackedCiphertext, PublicKeys, Query, QueryParams, PLAINTEXT_MODULUS,
};
pub use ring::{Gadget, NttPoly, Poly, Ring, RingElement};
pub use rlwe::{
    AutomorphismKey, Ciphertext, DiscreteGaussian, KeySwitchScratch, RlweParams,
    SecretDistribution, SecretKey, SeededCiphertext,
};
pub use rotate::RotationScratch;
