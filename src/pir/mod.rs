//! Private lookups: OPRF + keyword PIR (DESIGN.md section 7; the protocol and the parameter
//! choices are documented in docs/private-lookup.md).
//!
//! Everything here is in memory and transport-free: every message that crosses the network is
//! a byte string produced and parsed by this module, so a carrier (DNS, tests, benchmarks) only
//! moves bytes. Decoding never panics on hostile input; errors are [`PirError`].
//!
//! The pieces, in the order a lookup uses them:
//! - [`oprf`]: RFC 9497 VOPRF (ristretto255-SHA512). The client blinds the normalised SII, the
//!   DP evaluates with its per-zone, per-epoch key and proves it used the published key.
//! - [`keyword`]: HKDF-SHA256 from the OPRF output `y` to the shard, the two cuckoo buckets,
//!   the 16-byte slot tag and the slot's AEAD key (one set per spill index).
//! - [`db`]: slot sealing and opening (`tag || nonce || XChaCha20-Poly1305(payload)`, a fresh
//!   random nonce per sealing), the cuckoo table of one shard, and reassembly of spilled
//!   records.
//! - [`scheme`]: the index-PIR traits; `mulpir`: the first implementation (MulPIR on BFV,
//!   crate `fhe`), compiled only with the `mulpir` cargo feature.
//! - [`ntt`]: the project's own negacyclic NTT mod one prime below 2^30 (Harvey's lazy
//!   butterflies, AVX2 and portable), which Respire runs on.
//! - [`respire`]: Respire (Burton, Menon, Wu, CCS 2024) on that NTT, the DP's default
//!   scheme: single queries, and batch queries over the bucket copies [`batch`] lays out.
//! - [`batch`]: a probabilistic batch code (three buckets per element, cuckoo placement by
//!   the client), so one batch of lookups costs about three passes over the table.
//! - [`registry`]: the schemes by PIRCFG id, and the zone database, key and client of either.
//! - [`zone`]: a whole zone (shards, OPRF key, published [`PirConfig`]) for the DP, with
//!   incremental updates within an epoch ([`ZonePirDb::update`]), and the client-side helpers
//!   that turn a config plus `y` into PIR indexes and opened records.

pub mod batch;
pub mod carrier;
pub mod db;
pub mod keyword;
#[cfg(feature = "mulpir")]
pub mod mulpir;
pub mod ntt;
pub mod oprf;
pub mod registry;
pub mod replica;
pub mod respire;
pub mod scheme;
mod versioned;
pub mod zone;

pub use db::{Chunk, TableLayout};
pub use keyword::{KeywordSource, SlotKeys};
#[cfg(feature = "mulpir")]
pub use mulpir::{MulPir, MulPirClient, MulPirKey, MulPirServer, MulPirUpdate};
pub use oprf::{OprfClientState, OprfKey};
pub use registry::{Scheme, ZoneClient, ZoneDb, ZoneKey};
pub use scheme::{DbShape, IndexPir, PirClient, PirServer};
pub use zone::{
    BuildOptions, BuildReport, PirConfig, Probe, ProbeBatch, UpdateReport, ZonePirClient, ZonePirDb,
};

use thiserror::Error;

/// Version of every PIR byte format and of the HKDF labels defined in this module.
///
/// 2: slots carry a random XChaCha20-Poly1305 nonce and a stream id, so that a slot can be
/// sealed again within an epoch (incremental updates); version 1 derived a ChaCha20-Poly1305
/// nonce from the OPRF output. PIRCFG, queries and slots all carry it, so a client of one
/// version and a DP of the other fail with [`PirError::Version`] instead of mixing formats.
pub const PIR_VERSION: u8 = 2;

/// Why an incremental update cannot be applied within the current epoch. The database is
/// left as it was (still serving the old content); the caller builds a new epoch instead.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RebuildReason {
    #[error("shard {shard} would hold {needed} slots; it has {slots}")]
    ShardFull {
        shard: u32,
        needed: usize,
        slots: usize,
    },
    #[error("cuckoo insertion in shard {shard} found no free slot within {evictions} evictions")]
    CuckooFailed { shard: u32, evictions: usize },
    #[error("an identifier needs {needed} slots; lookups of this epoch probe {probes}")]
    TooManySlots { needed: usize, probes: usize },
    #[error("the PIR scheme cannot change its database in place")]
    Unsupported,
}

/// Why a private-lookup operation failed. Messages name the offending input, never secrets.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PirError {
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} is {got} bytes, expected {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("unsupported {what} version {got} (this build speaks version {supported})")]
    Version {
        what: &'static str,
        got: u8,
        supported: u8,
    },
    #[error("OPRF proof failed to verify: the evaluation was not made with the published key")]
    OprfProof,
    #[error("OPRF input rejected: {0}")]
    OprfInput(String),
    #[error("slot failed authentication: the tag matched but the ciphertext was altered")]
    SlotAuth,
    #[error("records of {sii:?} need {needed} slots, more than the limit of {max}")]
    TooManyRecords {
        sii: String,
        needed: usize,
        max: usize,
    },
    #[error("cuckoo table could not be built in {attempts} attempts (last seed {seed}); lower the load or raise the bucket size")]
    CuckooFailed { attempts: u32, seed: u64 },
    #[error("invalid parameter: {0}")]
    Param(String),
    #[error("PIR scheme {name} ({id}) is not in this build (cargo build --features {name})")]
    SchemeNotBuilt { name: &'static str, id: u8 },
    #[error("{elements} elements found no placement in {buckets} batch buckets; split the batch")]
    BatchPlacement { elements: usize, buckets: usize },
    #[error("shard {shard} does not exist (the zone has {count} shards)")]
    NoSuchShard { shard: u32, count: u32 },
    #[error("index {index} out of range (the database has {count} elements)")]
    IndexOutOfRange { index: usize, count: usize },
    #[error("homomorphic encryption error: {0}")]
    Fhe(String),
    #[error("the private-lookup database needs a full rebuild in a new epoch: {0}")]
    NeedsRebuild(RebuildReason),
    #[error("NTT parameters rejected: {0}")]
    Ntt(#[from] ntt::NttParamError),
    #[error("internal error while {0}")]
    Internal(String),
}

impl PirError {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> PirError {
        PirError::Malformed {
            what,
            reason: reason.into(),
        }
    }

    #[cfg(feature = "mulpir")]
    pub(crate) fn fhe(err: impl std::fmt::Display) -> PirError {
        PirError::Fhe(err.to_string())
    }
}

/// Reads a big-endian length-prefixed field sequence without panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], PirError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let out = &self.buf[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(PirError::malformed(
                self.what,
                format!(
                    "truncated at {field}: needs {n} bytes at offset {}, {} left",
                    self.pos,
                    self.buf.len() - self.pos
                ),
            )),
        }
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, PirError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, PirError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, PirError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, PirError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], PirError> {
        let b = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn finish(&self) -> Result<(), PirError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(PirError::malformed(
                self.what,
                format!("{} trailing bytes", self.buf.len() - self.pos),
            ))
        }
    }
}
