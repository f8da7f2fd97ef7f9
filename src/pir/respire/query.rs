//! The query side of Respire's single-query scheme (Burton, Menon, Wu, CCS 2024,
//! after Spiral, Menon and Wu, S&P 2022), up to the answer as one RLWE ciphertext of the
//! selected plaintext in the large ring; the response compression (projection to the small
//! ring, vectorisation, modulus switching) works on that ciphertext.
//!
//! - The client draws a secret key and the public keys the server needs: the automorphism
//!   keys of the two coefficient expansions (gadgets `(16088, 4)` and `(7, 20)`) and the
//!   RLWE-to-GSW conversion key (`(16088, 4)`).
//! - A query for record `index = (row·2^ν2 + col)·2^ν3 + r` (plaintext `index >> ν3`, record
//!   `r` of the `2^ν3` interleaved in it; `ν3 = 0` selects whole plaintexts) is two seeded
//!   RLWE ciphertexts in which only the packed coefficients of `b` are sent
//!   ([`PackedCiphertext`], as the reference code's `query_one` sends them): the first
//!   carries `Δ·[i = row]` for the `2^ν1` rows, the second `bit_k·z^j` (`z = 127`, `j < 8`)
//!   for the `ν2 + ν3` bits of `col·2^ν3 + r`, most significant first.
//! - The server expands the first into `2^ν1` RLWE ciphertexts and the second into
//!   `8·(ν2 + ν3)`, converts those to `ν2 + ν3` GSW ciphertexts, multiplies the first
//!   dimension in, folds with the first `ν2` and rotates with the last `ν3`
//!   ([`super::rotate`]).
//!
//! Dropping the other coefficients of `b` changes the phase only at positions the expansion
//! never extracts (see [`super::expand`]).

use rand::{CryptoRng, RngCore};

use super::super::PirError;
use super::database::Database;
use super::expand::{
    packed_position, ExpansionKeys, CONVERSION_GADGET, GSW_EXPANSION_GADGET, RLWE_EXPANSION_GADGET,
};
use super::gsw::{GswCiphertext, GSW_GADGET};
use super::ring::{Gadget, RingElement};
use super::rlwe::{Ciphertext, RlweParams, SecretKey, SeededCiphertext};

/// The plaintext modulus of the database's large-ring plaintexts and of the answer
/// (Respire Tables 3-5: `p = 16`).
pub const PLAINTEXT_MODULUS: u64 = 16;

/// Respire's query-side parameters for a `2^ν1 × 2^ν2` database.
#[derive(Debug, Clone)]
pub struct QueryParams {
    rlwe: RlweParams,
    nu1: usize,
    nu2: usize,
    nu3: usize,
    gsw: Gadget,
    rlwe_expansion: Gadget,
    gsw_expansion: Gadget,
    conversion: Gadget,
}

/// What the client publishes once per key: the keys of both expansions and the conversion key.
#[derive(Debug, Clone)]
pub struct PublicKeys {
    pub rlwe_expansion: ExpansionKeys,
    pub gsw_expansion: ExpansionKeys,
    pub conversion: GswCiphertext,
}

/// A seeded RLWE ciphertext of which only the coefficients of `b` at the packed positions
/// `packed_position(0..len)` are kept, in coefficient form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedCiphertext {
    pub seed: [u8; 32],
    pub coeffs: Vec<u64>,
}

/// One query: the row selector and the column bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub rows: PackedCiphertext,
    pub columns: PackedCiphertext,
}

/// The server's expansion of a query.
#[derive(Debug, Clone)]
pub struct ExpandedQuery {
    /// `2^ν1` RLWE ciphertexts of `Δ·[i = row]`.
    pub rlwes: Vec<Ciphertext>,
    /// `ν2` GSW ciphertexts of the column's bits, most significant first.
    pub gsws: Vec<GswCiphertext>,
    /// `ν3` GSW ciphertexts of the record's bits within the plaintext, most significant first.
    pub rotations: Vec<GswCiphertext>,
}

/// `1` if `a == b`, else `0`, without a branch on either.
fn equal_mask(a: usize, b: usize) -> u64 {
    let diff = (a ^ b) as u64;
    1 ^ ((diff | diff.wrapping_neg()) >> 63)
}

impl QueryParams {
    /// Respire's large ring and gadgets (Tables 3-5) for `2^ν1 × 2^ν2` plaintexts, answering
    /// with the whole selected plaintext (no rotation).
    pub fn respire(nu1: usize, nu2: usize) -> Result<QueryParams, PirError> {
        QueryParams::respire_with_rotation(nu1, nu2, 0)
    }

    /// The same with `2^ν3` records per plaintext, the selected one rotated to the multiples
    /// of `2^ν3` (Respire's single-query set: `ν1 = ν2 = 9`, `ν3 = 2`). Needs `2^ν1 <= d`
    /// rows and `8·(ν2 + ν3) <= d` GSW rows to expand, `ν1, ν2 >= 1`, `ν1 + ν2 + ν3 <= 30`.
    pub fn respire_with_rotation(
        nu1: usize,
        nu2: usize,
        nu3: usize,
    ) -> Result<QueryParams, PirError> {
        let rlwe = RlweParams::respire_large()?;
        let ring = rlwe.ring();
        let d = ring.degree();
        let gsw = ring.gadget(GSW_GADGET.0, GSW_GADGET.1)?;
        // 2^(ν1+ν2) plaintexts must be indexable (as in Database); both dimensions non-empty.
        let fits = nu1 >= 1
            && nu2 >= 1
            && nu1 <= 30
            && nu2 <= 30 - nu1
            && nu3 <= 30 - nu1 - nu2
            && (1usize << nu1) <= d
            && (nu2 + nu3) * gsw.digits() <= d;
        if !fits {
            return Err(PirError::Param(format!(
                "database shape 2^{nu1} x 2^{nu2} x 2^{nu3} for a ring of degree {d}"
            )));
        }
        Ok(QueryParams {
            rlwe_expansion: ring.gadget(RLWE_EXPANSION_GADGET.0, RLWE_EXPANSION_GADGET.1)?,
            gsw_expansion: ring.gadget(GSW_EXPANSION_GADGET.0, GSW_EXPANSION_GADGET.1)?,
            conversion: ring.gadget(CONVERSION_GADGET.0, CONVERSION_GADGET.1)?,
            gsw,
            rlwe,
            nu1,
            nu2,
            nu3,
        })
    }

    pub fn rlwe(&self) -> &RlweParams {
        &self.rlwe
    }

    pub fn nu1(&self) -> usize {
        self.nu1
    }

    pub fn nu2(&self) -> usize {
        self.nu2
    }

    /// `ν3`: `2^ν3` records per plaintext (0: the answer is the whole plaintext).
    pub fn nu3(&self) -> usize {
        self.nu3
    }

    /// The GSW gadget of the folding ciphertexts.
    pub fn gsw_gadget(&self) -> &Gadget {
        &self.gsw
    }

    /// The key-switching gadget of the first expansion (the row selector's).
    pub fn rlwe_expansion_gadget(&self) -> &Gadget {
        &self.rlwe_expansion
    }

    /// The key-switching gadget of the second expansion (the column bits').
    pub fn gsw_expansion_gadget(&self) -> &Gadget {
        &self.gsw_expansion
    }

    /// The gadget of the RLWE-to-GSW conversion key.
    pub fn conversion_gadget(&self) -> &Gadget {
        &self.conversion
    }

    /// `2^ν1`: the packed values of a query's row selector.
    pub(crate) fn rows(&self) -> usize {
        1 << self.nu1
    }

    /// `(ν2 + ν3)·t_gsw`: the packed values of a query's column bits.
    pub(crate) fn gsw_rows(&self) -> usize {
        (self.nu2 + self.nu3) * self.gsw.digits()
    }

    /// A secret key and the public keys that go with it.
    pub fn keygen<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
    ) -> Result<(SecretKey, PublicKeys), PirError> {
        let sk = self.rlwe.keygen(rng)?;
        let keys = PublicKeys {
            rlwe_expansion: self.rlwe.expansion_keys(&sk, &self.rlwe_expansion, rng)?,
            gsw_expansion: self.rlwe.expansion_keys(&sk, &self.gsw_expansion, rng)?,
            conversion: self.rlwe.conversion_key(&sk, &self.conversion, rng)?,
        };
        Ok((sk, keys))
    }

    /// Encrypts the packed values (`values[j]` at `packed_position(j)`) and keeps `b` at
    /// those positions only.
    fn pack<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        values: &[u64],
        rng: &mut R,
    ) -> Result<PackedCiphertext, PirError> {
        let ring = self.rlwe.ring();
        let d = ring.degree();
        let mut coeffs = vec![0u64; d];
        for (j, &v) in values.iter().enumerate() {
            coeffs[packed_position(j, d)] = v;
        }
        let mut mu = ring.poly_from_u64(&coeffs)?;
        let ct = self.rlwe.encrypt_poly_seeded(sk, &mu, rng)?;
        mu.words_mut().fill(0);
        let mut b = ring.zero();
        ring.inverse(&ct.b, &mut b)?;
        ring.to_u64(&b, &mut coeffs)?;
        let kept = (0..values.len())
            .map(|j| coeffs[packed_position(j, d)])
            .collect();
        Ok(PackedCiphertext {
            seed: ct.seed,
            coeffs: kept,
        })
    }

    /// The query for record `index` (`< 2^(ν1+ν2+ν3)`): row `index >> (ν2 + ν3)`, then the
    /// `ν2` column bits and the `ν3` record bits. The values depend on the index through masks
    /// only.
    pub fn query<R: RngCore + CryptoRng>(
        &self,
        sk: &SecretKey,
        index: usize,
        rng: &mut R,
    ) -> Result<Query, PirError> {
        let low_bits = self.nu2 + self.nu3;
        if index >> (self.nu1 + low_bits) != 0 {
            return Err(PirError::Param(format!(
                "index {index} outside a database of 2^{} records",
                self.nu1 + low_bits
            )));
        }
        let ring = self.rlwe.ring();
        let q = ring.modulus();
        let delta = q / PLAINTEXT_MODULUS;
        let (row, low) = (index >> low_bits, index & ((1 << low_bits) - 1));
        let mut row_values: Vec<u64> = (0..self.rows())
            .map(|i| delta * equal_mask(i, row))
            .collect();
        let t = self.gsw.digits();
        let mut column_values = vec![0u64; self.gsw_rows()];
        for (k, chunk) in column_values.chunks_exact_mut(t).enumerate() {
            let bit = ((low >> (low_bits - 1 - k)) & 1) as u64;
            for (j, v) in chunk.iter_mut().enumerate() {
                *v = bit * self.gsw.power(j);
            }
        }
        let query = Query {
            rows: self.pack(sk, &row_values, rng)?,
            columns: self.pack(sk, &column_values, rng)?,
        };
        row_values.fill(0);
        column_values.fill(0);
        Ok(query)
    }

    /// The full ciphertext of a packed one: `b` rebuilt with zeros off the packing, `a` from
    /// the seed.
    fn unpack(&self, packed: &PackedCiphertext, len: usize) -> Result<Ciphertext, PirError> {
        let ring = self.rlwe.ring();
        let d = ring.degree();
        if packed.coeffs.len() != len {
            return Err(PirError::Length {
                what: "packed query coefficients",
                expected: len,
                got: packed.coeffs.len(),
            });
        }
        if packed.coeffs.iter().any(|&c| c >= ring.modulus()) {
            return Err(PirError::Malformed {
                what: "packed query",
                reason: "coefficient not below the modulus".into(),
            });
        }
        let mut coeffs = vec![0u64; d];
        for (j, &c) in packed.coeffs.iter().enumerate() {
            coeffs[packed_position(j, d)] = c;
        }
        let b = ring.into_ntt(ring.poly_from_u64(&coeffs)?)?;
        self.rlwe.expand(&SeededCiphertext {
            seed: packed.seed,
            b,
        })
    }

    /// Server: the expanded query (coefficient expansions, then RLWE-to-GSW conversion).
    pub fn expand_query(
        &self,
        keys: &PublicKeys,
        query: &Query,
    ) -> Result<ExpandedQuery, PirError> {
        let rlwe = &self.rlwe;
        let rows = self.unpack(&query.rows, self.rows())?;
        let columns = self.unpack(&query.columns, self.gsw_rows())?;
        let mut scratch = rlwe.expansion_scratch(&self.rlwe_expansion)?;
        let rlwes =
            rlwe.expand_coefficients(&rows, self.rows(), &keys.rlwe_expansion, &mut scratch)?;
        let mut scratch = rlwe.expansion_scratch(&self.gsw_expansion)?;
        let gsw_rows =
            rlwe.expand_coefficients(&columns, self.gsw_rows(), &keys.gsw_expansion, &mut scratch)?;
        let mut conversion_scratch = rlwe.gsw_scratch(&self.conversion);
        let mut gsws = gsw_rows
            .chunks_exact(self.gsw.digits())
            .map(|chunk| {
                rlwe.rlwe_to_gsw(&keys.conversion, chunk, &self.gsw, &mut conversion_scratch)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rotations = gsws.split_off(self.nu2);
        Ok(ExpandedQuery {
            rlwes,
            gsws,
            rotations,
        })
    }

    /// Server: the first dimension, the folding and the rotation over an expanded query: one
    /// RLWE ciphertext of the selected plaintext (scaled by `Δ = floor(q/16)`), multiplied by
    /// `x^(-r)` for record `r` when `ν3 > 0`.
    pub fn answer_expanded(
        &self,
        db: &Database,
        expanded: &ExpandedQuery,
    ) -> Result<Ciphertext, PirError> {
        if db.nu1() != self.nu1 || db.nu2() != self.nu2 {
            return Err(PirError::Param(format!(
                "database of 2^{} x 2^{} for queries of 2^{} x 2^{}",
                db.nu1(),
                db.nu2(),
                self.nu1,
                self.nu2
            )));
        }
        let rlwe = &self.rlwe;
        let ring = rlwe.ring();
        let zero = Ciphertext {
            a: ring.zero_ntt(),
            b: ring.zero_ntt(),
        };
        let mut columns = vec![zero; db.columns()];
        let mut scratch = rlwe.first_dimension_scratch();
        rlwe.first_dimension(db, &expanded.rlwes, &mut scratch, &mut columns)?;
        let mut gsw_scratch = rlwe.gsw_scratch(&self.gsw);
        rlwe.fold(&mut columns, &expanded.gsws, &mut gsw_scratch)?;
        columns.truncate(1);
        let mut answer = columns
            .pop()
            .ok_or_else(|| PirError::Param("empty fold".into()))?;
        let mut scratch = rlwe.rotation_scratch(self.nu3)?;
        rlwe.rotate(
            &mut answer,
            &expanded.rotations,
            &mut scratch,
            &mut gsw_scratch,
        )?;
        Ok(answer)
    }

    /// Server: the whole query side, from the query to the large-ring answer.
    pub fn answer(
        &self,
        keys: &PublicKeys,
        db: &Database,
        query: &Query,
    ) -> Result<Ciphertext, PirError> {
        let expanded = self.expand_query(keys, query)?;
        self.answer_expanded(db, &expanded)
    }

    /// Client: the plaintext (`d` residues mod 16) in a large-ring answer (with `ν3 > 0`, the
    /// selected record is at the coefficients `2^ν3·c`).
    pub fn decrypt(&self, sk: &SecretKey, answer: &Ciphertext) -> Result<Vec<u32>, PirError> {
        let mut out = vec![0u32; self.rlwe.ring().degree()];
        self.rlwe.decrypt(sk, answer, PLAINTEXT_MODULUS, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::time::Instant;

    fn random_db(params: &QueryParams, rng: &mut ChaCha20Rng) -> (Vec<Vec<u32>>, Database) {
        let d = params.rlwe().ring().degree();
        let plaintexts: Vec<Vec<u32>> = (0..1usize << (params.nu1() + params.nu2()))
            .map(|_| {
                (0..d)
                    .map(|_| (rng.next_u64() % PLAINTEXT_MODULUS) as u32)
                    .collect()
            })
            .collect();
        let db = Database::from_plaintexts(
            params.rlwe(),
            params.nu1(),
            params.nu2(),
            PLAINTEXT_MODULUS,
            &plaintexts,
        )
        .expect("database");
        (plaintexts, db)
    }

    /// Client keys and a query for a random index, server expansion and answer over a random
    /// database, client decryption: exactly the selected plaintext, with the margin measured
    /// against `Δ·plaintext`. The last shape has the real first dimension (`ν1 = 9`).
    #[test]
    fn end_to_end_answers_the_selected_plaintext() {
        let mut rng = ChaCha20Rng::seed_from_u64(80);
        for (nu1, nu2) in [(2, 2), (3, 3), (4, 2), (9, 2)] {
            let params = QueryParams::respire(nu1, nu2).expect("params");
            let rlwe = params.rlwe();
            let ring = rlwe.ring();
            let (plaintexts, db) = random_db(&params, &mut rng);
            let (sk, keys) = params.keygen(&mut rng).expect("keygen");
            for _ in 0..2 {
                let index = (rng.next_u64() % plaintexts.len() as u64) as usize;
                let query = params.query(&sk, index, &mut rng).expect("query");
                let start = Instant::now();
                let expanded = params.expand_query(&keys, &query).expect("expand");
                let expand_time = start.elapsed();
                let start = Instant::now();
                let answer = params.answer_expanded(&db, &expanded).expect("answer");
                let answer_time = start.elapsed();
                let plain = params.decrypt(&sk, &answer).expect("decrypt");
                assert_eq!(
                    plain, plaintexts[index],
                    "nu1={nu1} nu2={nu2} index={index}"
                );

                let mut mu = ring.zero();
                ring.scale_plaintext(&plaintexts[index], PLAINTEXT_MODULUS, &mut mu)
                    .expect("scale");
                let noise = rlwe.noise(&sk, &answer, &mu).expect("noise");
                let margin = rlwe.margin_bits(noise, PLAINTEXT_MODULUS);
                println!(
                    "Respire query side 2^{nu1} x 2^{nu2}, index {index}: expansion {expand_time:?}, \
                     first dimension + folding {answer_time:?}; answer max |e| = 2^{:.1}, \
                     margin {margin:.1} bits",
                    (noise as f64).log2()
                );
                assert!(margin > 8.0, "margin {margin}");
            }
        }
    }

    /// With `ν3 = 2` (four records per plaintext, as Respire's single-query set): the
    /// selected record lands on the multiples of 4.
    #[test]
    fn end_to_end_with_rotation_selects_the_record() {
        let mut rng = ChaCha20Rng::seed_from_u64(83);
        let (nu1, nu2, nu3) = (3, 2, 2);
        let params = QueryParams::respire_with_rotation(nu1, nu2, nu3).expect("params");
        let rlwe = params.rlwe();
        let d = rlwe.ring().degree();
        let (plaintexts, db) = random_db(&params, &mut rng);
        let (sk, keys) = params.keygen(&mut rng).expect("keygen");
        for _ in 0..3 {
            let index = (rng.next_u64() % (plaintexts.len() << nu3) as u64) as usize;
            let query = params.query(&sk, index, &mut rng).expect("query");
            let answer = params.answer(&keys, &db, &query).expect("answer");
            let plain = params.decrypt(&sk, &answer).expect("decrypt");
            let (plaintext, r) = (&plaintexts[index >> nu3], index & ((1 << nu3) - 1));
            for c in 0..d >> nu3 {
                assert_eq!(plain[c << nu3], plaintext[(c << nu3) + r], "index {index}");
            }
            // The rotated plaintext's noise: against Δ·x^(-r)·plaintext exactly.
            let mut rotated = vec![0i64; d];
            let delta = (rlwe.ring().modulus() / PLAINTEXT_MODULUS) as i64;
            for (i, &m) in plaintext.iter().enumerate() {
                if i >= r {
                    rotated[i - r] = delta * i64::from(m);
                } else {
                    rotated[d + i - r] = -delta * i64::from(m);
                }
            }
            let mu = rlwe.ring().poly_from_i64(&rotated).expect("poly");
            let noise = rlwe.noise(&sk, &answer, &mu).expect("noise");
            let margin = rlwe.margin_bits(noise, PLAINTEXT_MODULUS);
            println!(
                "Respire query side 2^{nu1} x 2^{nu2} x 2^{nu3}, record {index}: answer max |e| \
                 = 2^{:.1}, margin {margin:.1} bits",
                (noise as f64).log2()
            );
            assert!(margin > 8.0, "margin {margin}");
        }
    }

    /// The real shape's query expansion (`ν1 = ν2 = 9`, `ν3 = 2`: 512 RLWE and 11 GSW
    /// ciphertexts), timed, and each expanded ciphertext checked.
    #[test]
    fn full_size_query_expands() {
        let mut rng = ChaCha20Rng::seed_from_u64(81);
        let params = QueryParams::respire_with_rotation(9, 9, 2).expect("params");
        let rlwe = params.rlwe();
        let ring = rlwe.ring();
        let d = ring.degree();
        let (sk, keys) = params.keygen(&mut rng).expect("keygen");
        let index = 0b1011_0011_1010_0110_0110;
        let query = params.query(&sk, index, &mut rng).expect("query");
        // Query size: two seeds and the packed coefficients (below 2^56: 7 bytes each).
        println!(
            "query: {} + {} packed coefficients and two 32-byte seeds ({} bytes at 7 bytes a \
             coefficient)",
            query.rows.coeffs.len(),
            query.columns.coeffs.len(),
            64 + 7 * (query.rows.coeffs.len() + query.columns.coeffs.len())
        );
        let start = Instant::now();
        let expanded = params.expand_query(&keys, &query).expect("expand");
        println!("full-size query expansion: {:?}", start.elapsed());
        assert_eq!(expanded.rlwes.len(), 512);
        assert_eq!(expanded.gsws.len(), 9);
        assert_eq!(expanded.rotations.len(), 2);
        let row = index >> 11;
        let mut plain = vec![0u32; d];
        for (i, ct) in expanded.rlwes.iter().enumerate() {
            rlwe.decrypt(&sk, ct, PLAINTEXT_MODULUS, &mut plain)
                .expect("decrypt");
            assert_eq!(plain[0], u32::from(i == row), "row {i}");
            assert!(plain[1..].iter().all(|&c| c == 0));
        }
        // Each GSW selects by its bit.
        let m0 = vec![3u32; d];
        let m1 = vec![12u32; d];
        let c0 = rlwe
            .encrypt(&sk, &m0, PLAINTEXT_MODULUS, &mut rng)
            .expect("encrypt");
        let c1 = rlwe
            .encrypt(&sk, &m1, PLAINTEXT_MODULUS, &mut rng)
            .expect("encrypt");
        let mut scratch = rlwe.gsw_scratch(params.gsw_gadget());
        for (k, gsw) in expanded.gsws.iter().chain(&expanded.rotations).enumerate() {
            let bit = (index >> (10 - k)) & 1;
            let mut selected = c0.clone();
            rlwe.select(gsw, &mut selected, &c1, &mut scratch)
                .expect("select");
            rlwe.decrypt(&sk, &selected, PLAINTEXT_MODULUS, &mut plain)
                .expect("decrypt");
            assert_eq!(
                plain,
                if bit == 1 { m1.clone() } else { m0.clone() },
                "bit {k}"
            );
        }
    }

    #[test]
    fn bad_queries_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(82);
        assert!(QueryParams::respire(0, 2).is_err());
        assert!(QueryParams::respire(12, 2).is_err());
        assert!(QueryParams::respire(2, 257).is_err());
        assert!(QueryParams::respire(9, 22).is_err());
        assert!(QueryParams::respire(2, usize::MAX).is_err());
        assert!(QueryParams::respire_with_rotation(2, 2, 29).is_err());
        assert!(QueryParams::respire_with_rotation(2, 2, usize::MAX).is_err());
        let params = QueryParams::respire(2, 2).expect("params");
        let (sk, keys) = params.keygen(&mut rng).expect("keygen");
        assert!(params.query(&sk, 16, &mut rng).is_err());
        let query = params.query(&sk, 5, &mut rng).expect("query");
        let mut short = query.clone();
        short.rows.coeffs.pop();
        assert!(matches!(
            params.expand_query(&keys, &short),
            Err(PirError::Length { .. })
        ));
        let mut big = query.clone();
        big.columns.coeffs[0] = u64::MAX;
        assert!(matches!(
            params.expand_query(&keys, &big),
            Err(PirError::Malformed { .. })
        ));
        let other = QueryParams::respire(3, 2).expect("params");
        let (_, db) = random_db(&other, &mut rng);
        let expanded = params.expand_query(&keys, &query).expect("expand");
        assert!(params.answer_expanded(&db, &expanded).is_err());
    }
}
