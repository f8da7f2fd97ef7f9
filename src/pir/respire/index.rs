//! Respire behind the [`IndexPir`] traits: what a zone's shard uses when PIRCFG names scheme
//! [`Respire::SCHEME_ID`].
//!
//! Elements are records of at most [`RECORD_BYTES`] bytes (shorter ones are padded with
//! zeros), four to a large-ring plaintext (`ν3 = 2`). The database of `n` elements is
//! `2^ν1 × 2^ν2` plaintexts with `ν1 = min(9, ν - 1)` and `ν2 = ν - ν1`, where `2^(ν+2)` is the
//! smallest power of two at least `max(n, 16)`: Respire's `ν1 = ν2 = 9` at 2^20 records. Both
//! sides derive the shape from the [`DbShape`] alone, so nothing about it is sent.
//!
//! Every message starts with `u8 version || u8 scheme || u8 parameter set || u8 kind` (kind 0
//! for the evaluation keys, 1 for a query); the rest is [`super::wire`]'s encoding. Responses
//! are the bare 2048 bytes of [`super::response`].
//!
//! Updates: the database keeps each column in its own allocation
//! ([`Database::with_plaintexts`]); a prepared update holds the re-encoded plaintexts, and the
//! commit stores a new version that shares every untouched column (`pir/versioned.rs`).
//! Queries read one version from start to end.

use rand::rngs::OsRng;

use super::super::scheme::{self, DbShape, IndexPir, PirClient, PirServer, HEADER_LEN};
use super::super::versioned::Versioned;
use super::super::{PirError, Reader};
use super::database::{Database, EncodedPlaintext};
use super::query::{PublicKeys, QueryParams, PLAINTEXT_MODULUS};
use super::record::pack_records;
use super::response::{decode_record, Responder, ResponseKeys, ResponseParams, ResponseSecrets};
use super::rlwe::SecretKey;
use super::wire;

/// The parameter set: Respire's single-query set (Tables 3-5), `ν3 = 2`.
pub const PARAMS_ID: u8 = 1;

/// Bytes of one element: a quarter of a plaintext of 2048 four-bit coefficients.
pub const RECORD_BYTES: usize = 256;

/// Records per plaintext, as a power of two.
const NU3: usize = 2;

const KIND_KEYS: u8 = 0;
const KIND_QUERY: u8 = 1;

/// The Respire scheme (single query).
#[derive(Debug, Clone, Copy)]
pub struct Respire;

impl IndexPir for Respire {
    const SCHEME_ID: u8 = 2;
    const PARAMS_ID: u8 = PARAMS_ID;
    const NAME: &'static str = "respire-single";
    type Client = RespireClient;
    type Server = RespireServer;
}

/// Both sides' parameters for one database shape.
#[derive(Debug, Clone)]
struct Params {
    shape: DbShape,
    query: QueryParams,
    response: ResponseParams,
}

impl Params {
    fn new(shape: &DbShape) -> Result<Params, PirError> {
        if shape.element_size == 0 || shape.element_size > RECORD_BYTES {
            return Err(PirError::Param(format!(
                "Respire holds elements of 1 to {RECORD_BYTES} bytes, not {}",
                shape.element_size
            )));
        }
        if shape.num_elements == 0 || shape.num_elements > 1 << 28 {
            return Err(PirError::Param(format!(
                "Respire database of {} elements",
                shape.num_elements
            )));
        }
        let log_records = shape
            .num_elements
            .max(16)
            .next_power_of_two()
            .trailing_zeros() as usize;
        let log_plaintexts = log_records - NU3;
        let nu1 = 9.min(log_plaintexts - 1);
        let query = QueryParams::respire_with_rotation(nu1, log_plaintexts - nu1, NU3)?;
        let response = ResponseParams::respire()?;
        if response.record_bytes() != RECORD_BYTES {
            return Err(PirError::Internal(format!(
                "checking Respire's record size: {} bytes",
                response.record_bytes()
            )));
        }
        Ok(Params {
            shape: *shape,
            query,
            response,
        })
    }

    fn check_elements(&self, elements: &[u8]) -> Result<(), PirError> {
        let expected = self.shape.num_elements * self.shape.element_size;
        if elements.len() != expected {
            return Err(PirError::Length {
                what: "Respire database",
                expected,
                got: elements.len(),
            });
        }
        Ok(())
    }

    fn check_index(&self, index: usize) -> Result<(), PirError> {
        if index >= self.shape.num_elements {
            return Err(PirError::IndexOutOfRange {
                index,
                count: self.shape.num_elements,
            });
        }
        Ok(())
    }

    /// Plaintext `plaintext` of `elements` (the whole database), padded records included.
    fn plaintext(&self, elements: &[u8], plaintext: usize) -> Result<Vec<u32>, PirError> {
        let size = self.shape.element_size;
        let mut records = [[0u8; RECORD_BYTES]; 1 << NU3];
        for (r, record) in records.iter_mut().enumerate() {
            let index = (plaintext << NU3) + r;
            if index < self.shape.num_elements {
                record[..size].copy_from_slice(&elements[index * size..(index + 1) * size]);
            }
        }
        let refs: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
        let degree = self.query.rlwe().ring().degree();
        pack_records(&refs, PLAINTEXT_MODULUS, degree)
    }

    /// The payload after a checked header of `kind`.
    fn payload<'a>(bytes: &'a [u8], kind: u8, what: &'static str) -> Result<&'a [u8], PirError> {
        let mut r = Reader::new(bytes, what);
        let got = scheme::check_header::<Respire>(&mut r, what)?;
        if got != kind {
            return Err(PirError::malformed(
                what,
                format!("message kind {got}, expected {kind}"),
            ));
        }
        Ok(r.rest())
    }
}

/// The client: secret keys for one database shape.
pub struct RespireClient {
    /// Boxed: the gadgets and rings are large beside the other schemes' clients.
    params: Box<Params>,
    secret: SecretKey,
    response: ResponseSecrets,
}

impl std::fmt::Debug for RespireClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespireClient")
            .field("shape", &self.params.shape)
            .finish_non_exhaustive()
    }
}

impl PirClient for RespireClient {
    fn setup(shape: &DbShape) -> Result<(Self, Vec<u8>), PirError> {
        let params = Params::new(shape)?;
        let mut rng = OsRng;
        let (secret, public) = params.query.keygen(&mut rng)?;
        let (response, response_keys) =
            ResponseKeys::generate_shared(&params.response, &secret, &public, &mut rng)?;
        let mut bytes = scheme::header::<Respire>(KIND_KEYS).to_vec();
        bytes.extend(wire::encode_keys(
            &params.query,
            &params.response,
            &public,
            &response_keys,
        )?);
        Ok((
            RespireClient {
                params: Box::new(params),
                secret,
                response,
            },
            bytes,
        ))
    }

    fn shape(&self) -> &DbShape {
        &self.params.shape
    }

    fn query(&self, index: usize) -> Result<Vec<u8>, PirError> {
        self.params.check_index(index)?;
        let query = self.params.query.query(&self.secret, index, &mut OsRng)?;
        let mut bytes = scheme::header::<Respire>(KIND_QUERY).to_vec();
        bytes.extend(wire::encode_query(&self.params.query, &query)?);
        Ok(bytes)
    }

    fn decode(&self, index: usize, response: &[u8]) -> Result<Vec<u8>, PirError> {
        self.params.check_index(index)?;
        let mut record = decode_record(&self.params.response, &self.response, response)?;
        record.truncate(self.params.shape.element_size);
        Ok(record)
    }
}

/// A client's parsed evaluation keys.
pub struct RespireKey {
    public: PublicKeys,
    response: ResponseKeys,
    /// Resident bytes of the parsed keys (both parts of every row, NTT form).
    memory: usize,
}

impl std::fmt::Debug for RespireKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespireKey")
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

/// The server: the database in NTT form, replaced a version at a time by updates.
pub struct RespireServer {
    params: Params,
    db: Versioned<Database>,
}

impl std::fmt::Debug for RespireServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespireServer")
            .field("shape", &self.params.shape)
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

/// Re-encoded plaintexts waiting to be swapped in.
pub struct RespireUpdate {
    generation: u64,
    plaintexts: Vec<(usize, EncodedPlaintext)>,
}

impl std::fmt::Debug for RespireUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespireUpdate")
            .field("generation", &self.generation)
            .field("plaintexts", &self.plaintexts.len())
            .finish()
    }
}

impl RespireServer {
    /// The `2^ν1 × 2^ν2` shape of the database (benchmarks, logs).
    pub fn dimensions(&self) -> (usize, usize, usize) {
        let q = &self.params.query;
        (q.nu1(), q.nu2(), q.nu3())
    }
}

impl PirServer for RespireServer {
    type Key = RespireKey;
    type Update = RespireUpdate;

    fn load(shape: &DbShape, elements: &[u8]) -> Result<Self, PirError> {
        let params = Params::new(shape)?;
        params.check_elements(elements)?;
        let q = &params.query;
        let db = Database::from_fn(q.rlwe(), q.nu1(), q.nu2(), PLAINTEXT_MODULUS, |i| {
            params.plaintext(elements, i)
        })?;
        Ok(RespireServer {
            db: Versioned::new(db),
            params,
        })
    }

    fn shape(&self) -> &DbShape {
        &self.params.shape
    }

    fn parse_key(&self, key: &[u8]) -> Result<RespireKey, PirError> {
        let payload = Params::payload(key, KIND_KEYS, "Respire evaluation keys")?;
        let (public, response) =
            wire::decode_keys(&self.params.query, &self.params.response, payload)?;
        let memory = public.rlwe_expansion.memory_bytes()
            + public.gsw_expansion.memory_bytes()
            + public.conversion.memory_bytes()
            + response.projection.memory_bytes()
            + response.vectorise.memory_bytes()
            + response.compression.memory_bytes();
        Ok(RespireKey {
            public,
            response,
            memory,
        })
    }

    fn answer(&self, key: &RespireKey, query: &[u8]) -> Result<Vec<u8>, PirError> {
        let payload = Params::payload(query, KIND_QUERY, "Respire query")?;
        let query = wire::decode_query(&self.params.query, payload)?;
        let db = self.db.load();
        let mut answer = self.params.query.answer(&key.public, &db.value, &query)?;
        drop(db);
        let mut responder = Responder::new(&self.params.response, &key.response)?;
        let mut out = vec![0u8; self.params.response.response_bytes()];
        responder.respond(&mut answer, &mut out)?;
        Ok(out)
    }

    fn prepare_update(
        &self,
        elements: &[u8],
        changed: &[usize],
    ) -> Result<RespireUpdate, PirError> {
        self.params.check_elements(elements)?;
        let snapshot = self.db.load();
        let mut plaintexts: Vec<usize> = Vec::with_capacity(changed.len());
        for &index in changed {
            self.params.check_index(index)?;
            plaintexts.push(index >> NU3);
        }
        plaintexts.sort_unstable();
        plaintexts.dedup();
        let encoded = plaintexts
            .into_iter()
            .map(|i| {
                let plaintext = self.params.plaintext(elements, i)?;
                let encoded = snapshot.value.encode_plaintext(
                    self.params.query.rlwe(),
                    &plaintext,
                    PLAINTEXT_MODULUS,
                )?;
                Ok((i, encoded))
            })
            .collect::<Result<Vec<_>, PirError>>()?;
        Ok(RespireUpdate {
            generation: snapshot.generation,
            plaintexts: encoded,
        })
    }

    fn commit_update(&self, update: RespireUpdate) -> Result<usize, PirError> {
        self.db.commit(update.generation, |db| {
            db.with_plaintexts(&update.plaintexts)
        })?;
        Ok(update.plaintexts.len())
    }

    fn query_len(&self) -> usize {
        HEADER_LEN + wire::query_len(&self.params.query)
    }

    fn response_len(&self) -> usize {
        self.params.response.response_bytes()
    }

    fn memory_bytes(&self) -> usize {
        self.db.load().value.memory_bytes()
    }

    fn key_memory_bytes(key: &RespireKey) -> usize {
        key.memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    fn elements(rng: &mut ChaCha20Rng, shape: &DbShape) -> Vec<u8> {
        let mut bytes = vec![0u8; shape.num_elements * shape.element_size];
        rng.fill_bytes(&mut bytes);
        bytes
    }

    fn element(bytes: &[u8], shape: &DbShape, index: usize) -> Vec<u8> {
        bytes[index * shape.element_size..(index + 1) * shape.element_size].to_vec()
    }

    /// Through the traits, as a zone's shard uses the scheme: random indexes of a database
    /// whose size is not a power of two, with elements shorter than a record.
    #[test]
    fn random_indexes_decode_to_their_elements() {
        let mut rng = ChaCha20Rng::seed_from_u64(131);
        let shape = DbShape {
            num_elements: 200,
            element_size: 200,
        };
        let bytes = elements(&mut rng, &shape);
        let server = RespireServer::load(&shape, &bytes).expect("load");
        assert_eq!(server.dimensions(), (5, 1, 2));
        let (client, key) = RespireClient::setup(&shape).expect("setup");
        let key = server.parse_key(&key).expect("key");
        for _ in 0..4 {
            let index = rng.gen_range(0..shape.num_elements);
            let query = client.query(index).expect("query");
            assert_eq!(query.len(), server.query_len());
            let response = server.answer(&key, &query).expect("answer");
            assert_eq!(response.len(), server.response_len());
            let element_bytes = client.decode(index, &response).expect("decode");
            assert_eq!(
                element_bytes,
                element(&bytes, &shape, index),
                "index {index}"
            );
        }
    }

    /// The shapes of real zones: 2^16 and 2^18 records of 256 bytes (2^14 and 2^16
    /// plaintexts), random indexes, every decoded record exact. 2^20 runs in
    /// `tools/bench/pir.sh` and `tools/bench/respire.sh`, which check every record too.
    #[test]
    fn random_indexes_at_2_16_and_2_18_records() {
        let mut rng = ChaCha20Rng::seed_from_u64(134);
        for (log, fetches) in [(16usize, 3), (18, 2)] {
            let shape = DbShape {
                num_elements: 1 << log,
                element_size: RECORD_BYTES,
            };
            let bytes = elements(&mut rng, &shape);
            let server = RespireServer::load(&shape, &bytes).expect("load");
            let (client, key) = RespireClient::setup(&shape).expect("setup");
            let key = server.parse_key(&key).expect("key");
            for _ in 0..fetches {
                let index = rng.gen_range(0..shape.num_elements);
                let response = server
                    .answer(&key, &client.query(index).expect("query"))
                    .expect("answer");
                let record = client.decode(index, &response).expect("decode");
                assert_eq!(
                    record,
                    element(&bytes, &shape, index),
                    "2^{log}: index {index}"
                );
            }
        }
    }

    #[test]
    fn indexes_outside_the_table_are_refused() {
        let shape = DbShape {
            num_elements: 100,
            element_size: 256,
        };
        let (client, _) = RespireClient::setup(&shape).expect("setup");
        assert!(matches!(
            client.query(100),
            Err(PirError::IndexOutOfRange {
                index: 100,
                count: 100
            })
        ));
        for bad in [0usize, 257] {
            let shape = DbShape {
                num_elements: 100,
                element_size: bad,
            };
            assert!(RespireClient::setup(&shape).is_err());
            assert!(RespireServer::load(&shape, &vec![0; 100 * bad]).is_err());
        }
    }

    /// Hostile queries and keys: wrong headers, truncated, extended or random bytes are
    /// errors, never panics.
    #[test]
    fn hostile_bytes_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(132);
        let shape = DbShape {
            num_elements: 64,
            element_size: 256,
        };
        let bytes = elements(&mut rng, &shape);
        let server = RespireServer::load(&shape, &bytes).expect("load");
        let (client, key_bytes) = RespireClient::setup(&shape).expect("setup");
        let key = server.parse_key(&key_bytes).expect("key");
        let query = client.query(3).expect("query");
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            query[..3].to_vec(),
            query[..query.len() - 1].to_vec(),
            [&query[..], &[0u8][..]].concat(),
        ];
        for at in [0usize, 1, 2, 3] {
            let mut bad = query.clone();
            bad[at] ^= 0x40;
            cases.push(bad);
        }
        for case in &cases {
            assert!(server.answer(&key, case).is_err());
        }
        // Random bytes after a good header: an error or a (meaningless) answer.
        for _ in 0..8 {
            let mut bad = query.clone();
            rng.fill_bytes(&mut bad[HEADER_LEN..]);
            let _ = server.answer(&key, &bad);
        }
        assert!(server.parse_key(&key_bytes[..key_bytes.len() - 1]).is_err());
        assert!(server.parse_key(&query).is_err());
        let response = server.answer(&key, &query).expect("answer");
        assert!(client.decode(3, &response[..100]).is_err());
    }

    /// An update changes the records it names and nothing else; an update prepared before
    /// another was committed is refused.
    #[test]
    fn updates_swap_in_changed_plaintexts() {
        let mut rng = ChaCha20Rng::seed_from_u64(133);
        let shape = DbShape {
            num_elements: 64,
            element_size: 256,
        };
        let mut bytes = elements(&mut rng, &shape);
        let server = RespireServer::load(&shape, &bytes).expect("load");
        let (client, key) = RespireClient::setup(&shape).expect("setup");
        let key = server.parse_key(&key).expect("key");
        let fetch = |index: usize| {
            let response = server
                .answer(&key, &client.query(index).expect("query"))
                .expect("answer");
            client.decode(index, &response).expect("decode")
        };
        let changed = [5usize, 6, 40];
        for &i in &changed {
            rng.fill_bytes(&mut bytes[i * 256..(i + 1) * 256]);
        }
        let stale = server.prepare_update(&bytes, &[1]).expect("prepare");
        let update = server.prepare_update(&bytes, &changed).expect("prepare");
        // Records 5 and 6 share a plaintext.
        assert_eq!(server.commit_update(update).expect("commit"), 2);
        assert!(server.commit_update(stale).is_err());
        for index in [5usize, 6, 7, 40, 41] {
            assert_eq!(
                fetch(index),
                element(&bytes, &shape, index),
                "index {index}"
            );
        }
    }
}
