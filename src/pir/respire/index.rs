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

use super::super::batch::{BatchLayout, BatchPlan};
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
/// A query to one bucket of a batched database: `u16 bucket` before the query.
const KIND_BATCH_QUERY: u8 = 2;

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
    /// A whole table: `ν1 = min(9, ν - 1)`, Respire's 9 × 9 at 2^20 records.
    fn new(shape: &DbShape) -> Result<Params, PirError> {
        Params::with_rows(shape, |log_plaintexts| 9.min(log_plaintexts - 1))
    }

    /// One bucket of a batched table: half the plaintext bits to each dimension, since a
    /// bucket is small and its expansion (`2^ν1` rows) would otherwise cost more than the
    /// pass over its data.
    fn bucket(element_size: usize, capacity: usize) -> Result<Params, PirError> {
        let shape = DbShape {
            num_elements: capacity,
            element_size,
            batch: 0,
        };
        Params::with_rows(&shape, |log_plaintexts| {
            9.min(log_plaintexts.div_ceil(2)).min(log_plaintexts - 1)
        })
    }

    fn with_rows(shape: &DbShape, nu1_of: impl Fn(usize) -> usize) -> Result<Params, PirError> {
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
        let nu1 = nu1_of(log_plaintexts);
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

    /// Plaintext `plaintext`: records `4·plaintext ..` as `record(i)` gives them (`None`:
    /// padding).
    fn plaintext<'a>(
        &self,
        record: impl Fn(usize) -> Option<&'a [u8]>,
        plaintext: usize,
    ) -> Result<Vec<u32>, PirError> {
        let mut records = [[0u8; RECORD_BYTES]; 1 << NU3];
        for (r, out) in records.iter_mut().enumerate() {
            if let Some(bytes) = record((plaintext << NU3) + r) {
                out[..bytes.len()].copy_from_slice(bytes);
            }
        }
        let refs: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
        let degree = self.query.rlwe().ring().degree();
        pack_records(&refs, PLAINTEXT_MODULUS, degree)
    }

    /// Element `index` of a whole table, `None` past its end.
    fn element<'a>(&self, elements: &'a [u8], index: usize) -> Option<&'a [u8]> {
        let size = self.shape.element_size;
        (index < self.shape.num_elements).then(|| &elements[index * size..(index + 1) * size])
    }

    fn database<'a>(
        &self,
        record: impl Fn(usize) -> Option<&'a [u8]> + Copy,
    ) -> Result<Database, PirError> {
        let q = &self.query;
        Database::from_fn(q.rlwe(), q.nu1(), q.nu2(), PLAINTEXT_MODULUS, |i| {
            self.plaintext(record, i)
        })
    }

    fn query_bytes(
        &self,
        secret: &SecretKey,
        index: usize,
        prefix: &[u8],
    ) -> Result<Vec<u8>, PirError> {
        self.check_index(index)?;
        let query = self.query.query(secret, index, &mut OsRng)?;
        let mut bytes = prefix.to_vec();
        bytes.extend(wire::encode_query(&self.query, &query)?);
        Ok(bytes)
    }

    fn decode(&self, secrets: &ResponseSecrets, response: &[u8]) -> Result<Vec<u8>, PirError> {
        let mut record = decode_record(&self.response, secrets, response)?;
        record.truncate(self.shape.element_size);
        Ok(record)
    }

    /// The compressed answer to a query (payload after the header) over `db`.
    fn answer(&self, key: &RespireKey, db: &Database, payload: &[u8]) -> Result<Vec<u8>, PirError> {
        let query = wire::decode_query(&self.query, payload)?;
        let mut answer = self.query.answer(&key.public, db, &query)?;
        let mut responder = Responder::new(&self.response, &key.response)?;
        let mut out = vec![0u8; self.response.response_bytes()];
        responder.respond(&mut answer, &mut out)?;
        Ok(out)
    }
}

/// A message's kind after its checked header, and the rest.
fn kind_and_payload<'a>(bytes: &'a [u8], what: &'static str) -> Result<(u8, &'a [u8]), PirError> {
    let mut r = Reader::new(bytes, what);
    let kind = scheme::check_header::<Respire>(&mut r, what)?;
    Ok((kind, r.rest()))
}

fn expect_kind(got: u8, kind: u8, what: &'static str) -> Result<(), PirError> {
    if got != kind {
        return Err(PirError::malformed(
            what,
            format!("message kind {got}, expected {kind}"),
        ));
    }
    Ok(())
}

/// The client's side of batch queries: the layout and one bucket's parameters. The keys are
/// the whole table's: Respire's evaluation keys depend on the ring and gadgets only, not on
/// the database shape, so one upload serves single and batch queries.
struct ClientBatch {
    layout: BatchLayout,
    params: Params,
}

/// The client: secret keys for one database shape.
pub struct RespireClient {
    /// Boxed: the gadgets and rings are large beside the other schemes' clients.
    params: Box<Params>,
    batch: Option<Box<ClientBatch>>,
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

impl RespireClient {
    /// The batch layout, when the database takes batch queries.
    pub fn batch_layout(&self) -> Option<&BatchLayout> {
        self.batch.as_ref().map(|b| &b.layout)
    }

    /// Bytes of one bucket's query (benchmarks).
    pub fn batch_query_len(&self) -> Option<usize> {
        self.batch
            .as_ref()
            .map(|b| HEADER_LEN + 2 + wire::query_len(&b.params.query))
    }
}

impl PirClient for RespireClient {
    fn setup(shape: &DbShape) -> Result<(Self, Vec<u8>), PirError> {
        let params = Params::new(shape)?;
        let batch = match shape.batch {
            0 => None,
            n => {
                let layout = BatchLayout::new(shape.num_elements, n)?;
                let params = Params::bucket(shape.element_size, layout.capacity())?;
                Some(Box::new(ClientBatch { layout, params }))
            }
        };
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
                batch,
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
        self.params
            .query_bytes(&self.secret, index, &scheme::header::<Respire>(KIND_QUERY))
    }

    fn decode(&self, index: usize, response: &[u8]) -> Result<Vec<u8>, PirError> {
        self.params.check_index(index)?;
        self.params.decode(&self.response, response)
    }

    fn batch_queries(&self, indexes: &[usize]) -> Result<(BatchPlan, Vec<Vec<u8>>), PirError> {
        let batch = self.batch.as_ref().ok_or_else(no_batches)?;
        let plan = batch.layout.plan(indexes)?;
        let header = scheme::header::<Respire>(KIND_BATCH_QUERY);
        let queries = plan
            .placed
            .iter()
            .enumerate()
            .map(|(bucket, placed)| {
                let mut prefix = header.to_vec();
                prefix.extend_from_slice(&(bucket as u16).to_be_bytes());
                let position = placed.map_or(0, |p| p.position);
                batch.params.query_bytes(&self.secret, position, &prefix)
            })
            .collect::<Result<Vec<_>, PirError>>()?;
        Ok((plan, queries))
    }

    fn batch_decode(
        &self,
        plan: &BatchPlan,
        responses: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>, PirError> {
        let batch = self.batch.as_ref().ok_or_else(no_batches)?;
        if responses.len() != plan.placed.len() {
            return Err(PirError::Length {
                what: "batch responses",
                expected: plan.placed.len(),
                got: responses.len(),
            });
        }
        let placed: Vec<_> = plan
            .placed
            .iter()
            .enumerate()
            .filter_map(|(b, p)| p.map(|p| (b, p)))
            .collect();
        let mut out = vec![Vec::new(); placed.len()];
        for (bucket, p) in placed {
            let slot = out.get_mut(p.input).ok_or_else(|| {
                PirError::Internal(format!("batch plan input {} out of range", p.input))
            })?;
            *slot = batch.params.decode(&self.response, responses[bucket])?;
        }
        Ok(out)
    }
}

fn no_batches() -> PirError {
    PirError::Param("this Respire database takes no batch queries".into())
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

/// One version of the server's data: the whole table and, for batch queries, every bucket's
/// copy. Cloning shares every column.
#[derive(Debug, Clone)]
struct Databases {
    whole: Database,
    buckets: Vec<Database>,
}

/// The server's side of batch queries.
#[derive(Debug)]
struct ServerBatch {
    layout: BatchLayout,
    /// Every bucket's elements, increasing: an element's position is its rank.
    members: Vec<Vec<u32>>,
    params: Params,
}

impl ServerBatch {
    /// Element `position` of `bucket` from the whole table's `elements`.
    fn record<'a>(
        &self,
        whole: &Params,
        elements: &'a [u8],
        bucket: usize,
        position: usize,
    ) -> Option<&'a [u8]> {
        let index = *self.members[bucket].get(position)? as usize;
        whole.element(elements, index)
    }
}

/// The server: the database in NTT form, replaced a version at a time by updates.
pub struct RespireServer {
    params: Params,
    batch: Option<ServerBatch>,
    db: Versioned<Databases>,
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
    /// The buckets' copies: each changed bucket with its re-encoded plaintexts.
    buckets: Vec<(usize, Vec<(usize, EncodedPlaintext)>)>,
}

impl std::fmt::Debug for RespireUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespireUpdate")
            .field("generation", &self.generation)
            .field("plaintexts", &self.plaintexts.len())
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

impl RespireServer {
    /// Answers one query (single or batch kind) over one version of the databases.
    fn answer_in(
        &self,
        db: &Databases,
        key: &RespireKey,
        query: &[u8],
    ) -> Result<Vec<u8>, PirError> {
        const WHAT: &str = "Respire query";
        let (kind, payload) = kind_and_payload(query, WHAT)?;
        match kind {
            KIND_QUERY => self.params.answer(key, &db.whole, payload),
            KIND_BATCH_QUERY => {
                let batch = self.batch.as_ref().ok_or_else(|| {
                    PirError::malformed(WHAT, "a batch query; this database takes single queries")
                })?;
                let mut r = Reader::new(payload, WHAT);
                let bucket = usize::from(r.u16("bucket")?);
                let bucket_db = db.buckets.get(bucket).ok_or_else(|| {
                    PirError::malformed(
                        WHAT,
                        format!("bucket {bucket} of {}", batch.layout.buckets()),
                    )
                })?;
                batch.params.answer(key, bucket_db, r.rest())
            }
            other => Err(PirError::malformed(
                WHAT,
                format!("message kind {other}, expected {KIND_QUERY} or {KIND_BATCH_QUERY}"),
            )),
        }
    }

    /// The `2^ν1 × 2^ν2` shape of the database (benchmarks, logs).
    pub fn dimensions(&self) -> (usize, usize, usize) {
        let q = &self.params.query;
        (q.nu1(), q.nu2(), q.nu3())
    }

    /// The batch layout and one bucket's `(ν1, ν2, ν3)`, when batch queries are taken.
    pub fn batch_dimensions(&self) -> Option<(BatchLayout, (usize, usize, usize))> {
        self.batch.as_ref().map(|b| {
            let q = &b.params.query;
            (b.layout, (q.nu1(), q.nu2(), q.nu3()))
        })
    }
}

impl PirServer for RespireServer {
    type Key = RespireKey;
    type Update = RespireUpdate;

    fn load(shape: &DbShape, elements: &[u8]) -> Result<Self, PirError> {
        use rayon::prelude::*;
        let params = Params::new(shape)?;
        params.check_elements(elements)?;
        let whole = params.database(|i| params.element(elements, i))?;
        let (batch, buckets) = match shape.batch {
            0 => (None, Vec::new()),
            n => {
                let layout = BatchLayout::new(shape.num_elements, n)?;
                let members = layout.members();
                let capacity = members.iter().map(Vec::len).max().unwrap_or(0);
                let batch = ServerBatch {
                    layout,
                    params: Params::bucket(shape.element_size, capacity)?,
                    members,
                };
                let buckets = (0..layout.buckets())
                    .into_par_iter()
                    .map(|b| {
                        batch
                            .params
                            .database(|pos| batch.record(&params, elements, b, pos))
                    })
                    .collect::<Result<Vec<_>, PirError>>()?;
                (Some(batch), buckets)
            }
        };
        Ok(RespireServer {
            db: Versioned::new(Databases { whole, buckets }),
            batch,
            params,
        })
    }

    fn shape(&self) -> &DbShape {
        &self.params.shape
    }

    fn parse_key(&self, key: &[u8]) -> Result<RespireKey, PirError> {
        let (kind, payload) = kind_and_payload(key, "Respire evaluation keys")?;
        expect_kind(kind, KIND_KEYS, "Respire evaluation keys")?;
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
        self.answer_in(&self.db.load().value, key, query)
    }

    /// Every query of the batch reads the same version of the database, so the answers to
    /// one lookup's queries never mix the records before and after an update.
    fn answer_batch(&self, items: &[(&RespireKey, &[u8])]) -> Vec<Result<Vec<u8>, PirError>> {
        let db = self.db.load();
        items
            .iter()
            .map(|(key, query)| self.answer_in(&db.value, key, query))
            .collect()
    }

    fn prepare_update(
        &self,
        elements: &[u8],
        changed: &[usize],
    ) -> Result<RespireUpdate, PirError> {
        self.params.check_elements(elements)?;
        let snapshot = self.db.load();
        let rlwe = self.params.query.rlwe();
        let mut plaintexts: Vec<usize> = Vec::with_capacity(changed.len());
        let mut bucket_plaintexts: Vec<(usize, usize)> = Vec::new();
        for &index in changed {
            self.params.check_index(index)?;
            plaintexts.push(index >> NU3);
            if let Some(batch) = &self.batch {
                for b in batch.layout.candidates(index) {
                    let position =
                        batch.members[b]
                            .binary_search(&(index as u32))
                            .map_err(|_| {
                                PirError::Internal(format!(
                                    "element {index} missing from bucket {b}"
                                ))
                            })?;
                    bucket_plaintexts.push((b, position >> NU3));
                }
            }
        }
        plaintexts.sort_unstable();
        plaintexts.dedup();
        bucket_plaintexts.sort_unstable();
        bucket_plaintexts.dedup();
        let encoded = plaintexts
            .into_iter()
            .map(|i| {
                let plaintext = self
                    .params
                    .plaintext(|r| self.params.element(elements, r), i)?;
                let encoded =
                    snapshot
                        .value
                        .whole
                        .encode_plaintext(rlwe, &plaintext, PLAINTEXT_MODULUS)?;
                Ok((i, encoded))
            })
            .collect::<Result<Vec<_>, PirError>>()?;
        let mut buckets: Vec<(usize, Vec<(usize, EncodedPlaintext)>)> = Vec::new();
        if let Some(batch) = &self.batch {
            for (b, i) in bucket_plaintexts {
                let plaintext = batch
                    .params
                    .plaintext(|pos| batch.record(&self.params, elements, b, pos), i)?;
                let encoded = snapshot.value.buckets[b].encode_plaintext(
                    batch.params.query.rlwe(),
                    &plaintext,
                    PLAINTEXT_MODULUS,
                )?;
                // Sorted by bucket: a bucket's plaintexts are consecutive.
                match buckets.last_mut() {
                    Some((last, changes)) if *last == b => changes.push((i, encoded)),
                    _ => buckets.push((b, vec![(i, encoded)])),
                }
            }
        }
        Ok(RespireUpdate {
            generation: snapshot.generation,
            plaintexts: encoded,
            buckets,
        })
    }

    fn commit_update(&self, update: RespireUpdate) -> Result<usize, PirError> {
        self.db.commit(update.generation, |db| {
            let mut next = Databases {
                whole: db.whole.with_plaintexts(&update.plaintexts)?,
                buckets: db.buckets.clone(),
            };
            for (b, changes) in &update.buckets {
                let bucket = next
                    .buckets
                    .get_mut(*b)
                    .ok_or_else(|| PirError::Internal(format!("update names bucket {b}")))?;
                *bucket = bucket.with_plaintexts(changes)?;
            }
            Ok(next)
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
        let db = self.db.load();
        db.value.whole.memory_bytes()
            + db.value
                .buckets
                .iter()
                .map(Database::memory_bytes)
                .sum::<usize>()
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

    /// A database of random elements of `shape`: the bytes, its server, a client and the
    /// client's parsed key.
    fn serve(
        rng: &mut ChaCha20Rng,
        shape: &DbShape,
    ) -> (Vec<u8>, RespireServer, RespireClient, RespireKey) {
        let bytes = elements(rng, shape);
        let server = RespireServer::load(shape, &bytes).expect("load");
        let (client, key) = RespireClient::setup(shape).expect("setup");
        let key = server.parse_key(&key).expect("key");
        (bytes, server, client, key)
    }

    /// One batch for `indexes`: its plan, every bucket query, and the server's answers.
    fn batch_round(
        server: &RespireServer,
        client: &RespireClient,
        key: &RespireKey,
        indexes: &[usize],
    ) -> (BatchPlan, Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (plan, queries) = client.batch_queries(indexes).expect("queries");
        let responses = queries
            .iter()
            .map(|q| {
                assert_eq!(Some(q.len()), client.batch_query_len());
                server.answer(key, q).expect("answer")
            })
            .collect();
        (plan, queries, responses)
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
            batch: 0,
        };
        let (bytes, server, client, key) = serve(&mut rng, &shape);
        assert_eq!(server.dimensions(), (5, 1, 2));
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
                batch: 0,
            };
            let (bytes, server, client, key) = serve(&mut rng, &shape);
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

    /// Batch queries through the traits at 2^16 and 2^18 records: random distinct
    /// indexes, every one decoded exactly, one query to every bucket.
    #[test]
    fn batches_of_random_indexes_at_2_16_and_2_18_records() {
        let mut rng = ChaCha20Rng::seed_from_u64(135);
        for (log, batch) in [(16usize, 32usize), (18, 16)] {
            let shape = DbShape {
                num_elements: 1 << log,
                element_size: RECORD_BYTES,
                batch,
            };
            let (bytes, server, client, key) = serve(&mut rng, &shape);
            let (layout, dims) = server.batch_dimensions().expect("batched");
            println!(
                "2^{log} records, batch {batch}: {} buckets of {:?}",
                layout.buckets(),
                dims
            );
            let indexes = rand::seq::index::sample(&mut rng, shape.num_elements, batch).into_vec();
            let (plan, queries, responses) = batch_round(&server, &client, &key, &indexes);
            assert_eq!(queries.len(), layout.buckets());
            let refs: Vec<&[u8]> = responses.iter().map(Vec::as_slice).collect();
            let got = client.batch_decode(&plan, &refs).expect("decode");
            for (index, record) in indexes.iter().zip(got) {
                assert_eq!(
                    record,
                    element(&bytes, &shape, *index),
                    "2^{log}: index {index}"
                );
            }
            // Single queries still work beside the buckets.
            let response = server
                .answer(&key, &client.query(indexes[0]).expect("query"))
                .expect("answer");
            assert_eq!(
                client.decode(indexes[0], &response).expect("decode"),
                element(&bytes, &shape, indexes[0])
            );
        }
    }

    /// An update reaches the buckets' copies of the changed records; a batch query for a
    /// bucket that does not exist, or to a database without buckets, is an error.
    #[test]
    fn updates_reach_batch_queries_and_bad_buckets_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(136);
        let shape = DbShape {
            num_elements: 512,
            element_size: 200,
            batch: 8,
        };
        let (mut bytes, server, client, key) = serve(&mut rng, &shape);
        let changed = [3usize, 100, 511];
        for &i in &changed {
            rng.fill_bytes(&mut bytes[i * 200..(i + 1) * 200]);
        }
        let update = server.prepare_update(&bytes, &changed).expect("prepare");
        server.commit_update(update).expect("commit");
        let indexes = [3usize, 100, 511, 4, 7];
        let (plan, queries, responses) = batch_round(&server, &client, &key, &indexes);
        let refs: Vec<&[u8]> = responses.iter().map(Vec::as_slice).collect();
        for (index, record) in indexes
            .iter()
            .zip(client.batch_decode(&plan, &refs).expect("decode"))
        {
            assert_eq!(record, element(&bytes, &shape, *index), "index {index}");
        }
        let buckets = queries.len() as u16;
        let mut bad = queries[0].clone();
        bad[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&buckets.to_be_bytes());
        assert!(server.answer(&key, &bad).is_err());
        assert!(server.answer(&key, &queries[0][..HEADER_LEN + 1]).is_err());
        assert!(client.batch_decode(&plan, &refs[1..]).is_err());
        let single = DbShape { batch: 0, ..shape };
        let plain = RespireServer::load(&single, &bytes).expect("load");
        assert!(plain.answer(&key, &queries[0]).is_err());
        let (plain_client, _) = RespireClient::setup(&single).expect("setup");
        assert!(plain_client.batch_queries(&[1]).is_err());
    }

    #[test]
    fn indexes_outside_the_table_are_refused() {
        let shape = DbShape {
            num_elements: 100,
            element_size: 256,
            batch: 0,
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
                batch: 0,
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
            batch: 0,
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
            batch: 0,
        };
        let (mut bytes, server, client, key) = serve(&mut rng, &shape);
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
