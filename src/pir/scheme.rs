//! Index PIR behind traits, so a faster scheme (Spiral, Respire, ...) can replace MulPIR
//! without touching keyword derivation, slots or the carrier.
//!
//! The database is `num_elements` fixed-size elements (here: cuckoo buckets). A client makes
//! keys once (per zone and epoch), uploads the evaluation-key bytes, then sends one query per
//! element it wants; the server answers each query with the client's parsed key. Every message
//! is a byte string; every length is a function of the shape alone, so it is the same whichever
//! element is asked for and whether or not it holds anything.

use super::batch::BatchPlan;
use super::{PirError, Reader, PIR_VERSION};

/// Every scheme's queries and evaluation keys (and MulPIR's responses) start with
/// `u8 version || u8 scheme || u8 parameter set || u8 kind`; the kind byte is the scheme's
/// (MulPIR: the expansion level; Respire: keys or query).
pub(crate) const HEADER_LEN: usize = 4;

/// The header of a message of scheme `P`.
pub(crate) fn header<P: IndexPir>(kind: u8) -> [u8; HEADER_LEN] {
    [PIR_VERSION, P::SCHEME_ID, P::PARAMS_ID, kind]
}

/// Reads and checks the header of a message of scheme `P`; returns its kind byte.
pub(crate) fn check_header<P: IndexPir>(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<u8, PirError> {
    let version = r.u8("version")?;
    if version != PIR_VERSION {
        return Err(PirError::Version {
            what,
            got: version,
            supported: PIR_VERSION,
        });
    }
    let scheme = r.u8("scheme")?;
    let params = r.u8("parameter set")?;
    if scheme != P::SCHEME_ID || params != P::PARAMS_ID {
        return Err(PirError::malformed(
            what,
            format!(
                "scheme {scheme} parameter set {params}, expected {} {} ({})",
                P::SCHEME_ID,
                P::PARAMS_ID,
                P::NAME
            ),
        ));
    }
    r.u8("kind")
}

/// What a PIR database looks like to both sides (published through PIRCFG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DbShape {
    pub num_elements: usize,
    pub element_size: usize,
    /// Most elements one batch query fetches ([`super::batch`]); 0 when the server takes
    /// single queries only.
    pub batch: usize,
}

/// A PIR scheme: its identifier in PIRCFG and its two halves.
pub trait IndexPir: Send + Sync + 'static {
    /// Scheme number carried in PIRCFG.
    const SCHEME_ID: u8;
    /// Parameter set carried in PIRCFG beside the scheme number.
    const PARAMS_ID: u8;
    /// Human-readable name.
    const NAME: &'static str;
    type Client: PirClient;
    type Server: PirServer;
}

/// The client half: secret keys and query/decode.
pub trait PirClient: Sized + Send + Sync {
    /// Fresh secret keys for `shape`; returns the client and the evaluation-key bytes to upload.
    fn setup(shape: &DbShape) -> Result<(Self, Vec<u8>), PirError>;
    fn shape(&self) -> &DbShape;
    /// An encrypted query for element `index`.
    fn query(&self, index: usize) -> Result<Vec<u8>, PirError>;
    /// The element bytes from the server's response to the query for `index`.
    fn decode(&self, index: usize, response: &[u8]) -> Result<Vec<u8>, PirError>;

    /// Batch queries ([`super::batch`]) for `indexes` (distinct, at most `shape().batch`):
    /// one query per bucket, in bucket order, all sent whatever was placed where.
    fn batch_queries(&self, indexes: &[usize]) -> Result<(BatchPlan, Vec<Vec<u8>>), PirError> {
        let _ = indexes;
        Err(PirError::Param(format!(
            "{} takes no batch queries",
            std::any::type_name::<Self>()
        )))
    }

    /// The requested elements, in the order of the `indexes` the plan was made for, from
    /// the responses to [`PirClient::batch_queries`] (in bucket order).
    fn batch_decode(
        &self,
        plan: &BatchPlan,
        responses: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>, PirError> {
        let _ = (plan, responses);
        Err(PirError::Param(format!(
            "{} takes no batch queries",
            std::any::type_name::<Self>()
        )))
    }
}

/// The server half: a loaded database and the answer function.
pub trait PirServer: Sized + Send + Sync {
    /// A client's evaluation key, parsed and validated once, then reused for its queries (the
    /// carrier keeps these in a bounded cache under a key id).
    type Key: Send + Sync;

    /// Preprocesses `elements` (`shape.num_elements * shape.element_size` bytes, element `i`
    /// at `i * element_size`).
    fn load(shape: &DbShape, elements: &[u8]) -> Result<Self, PirError>;
    fn shape(&self) -> &DbShape;
    /// Parses and validates uploaded evaluation-key bytes.
    fn parse_key(&self, key: &[u8]) -> Result<Self::Key, PirError>;
    /// Answers one query. Runs on the calling thread's rayon pool: call it inside
    /// `pool.install(..)` to bound or pin the threads it uses.
    fn answer(&self, key: &Self::Key, query: &[u8]) -> Result<Vec<u8>, PirError>;

    /// Re-encoded elements waiting to be swapped in.
    type Update: Send;
    /// First half of a change to the database while it serves: re-encodes the elements whose
    /// indexes are in `changed`, taking their new bytes from `elements` (the whole database,
    /// as [`PirServer::load`] takes it). Queries keep seeing the old content.
    fn prepare_update(&self, elements: &[u8], changed: &[usize]) -> Result<Self::Update, PirError>;
    /// Second half: swaps a prepared update in. Every query sees the database of one version:
    /// queries already running finish on the old content, later ones see the new. Returns the
    /// number of encoding units (MulPIR: plaintexts) that were re-encoded. Fails, changing
    /// nothing, when another update was committed after this one was prepared (updates are
    /// for one writer at a time).
    fn commit_update(&self, update: Self::Update) -> Result<usize, PirError>;
    /// Answers several queries (of one or several clients) together. Schemes whose cost is
    /// dominated by reading the database read it once per batch; the results are in order,
    /// and one bad query or key fails only itself.
    fn answer_batch(&self, items: &[(&Self::Key, &[u8])]) -> Vec<Result<Vec<u8>, PirError>> {
        items.iter().map(|(k, q)| self.answer(k, q)).collect()
    }

    /// Bytes of every query for this database.
    fn query_len(&self) -> usize;
    /// Bytes of every response.
    fn response_len(&self) -> usize;
    /// Approximate resident bytes of the preprocessed database.
    fn memory_bytes(&self) -> usize;
    /// Approximate resident bytes of one parsed key (for the key cache's memory bound).
    fn key_memory_bytes(key: &Self::Key) -> usize;

    /// Convenience: parse the key bytes and answer (for one-off use; costs a key parse).
    fn answer_with_key_bytes(&self, key: &[u8], query: &[u8]) -> Result<Vec<u8>, PirError> {
        let key = self.parse_key(key)?;
        self.answer(&key, query)
    }
}
