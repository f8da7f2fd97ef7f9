//! The PIR schemes this build speaks, chosen by PIRCFG's scheme id (DESIGN.md section 11).
//!
//! A zone's database and a client's state are generic over the scheme ([`ZonePirDb`],
//! [`ZonePirClient`]); the DP and the resolver hold them as [`ZoneDb`] and [`ZoneClient`],
//! which pick the scheme from the DP's config or from the zone's PIRCFG. Adding a scheme is
//! one variant in each enum here and nothing in the DP, the resolver or the carrier.
//!
//! MulPIR is compiled only with the `mulpir` cargo feature (its NTT dependency withholds
//! patent rights, docs/ntt.md); without it [`Scheme::MulPir`] still names scheme 1, so that a
//! config or a PIRCFG asking for it gets an error saying so rather than "unknown scheme".

#[cfg(feature = "mulpir")]
use super::mulpir::{MulPir, MulPirKey};
use super::oprf::OprfOutput;
use super::respire::index::{Respire, RespireKey};
use super::scheme::{IndexPir, PirServer};
use super::zone::{
    BuildOptions, BuildReport, ReplicaDelta, UpdateReport, ZonePirClient, ZonePirDb,
};
use super::{Chunk, PirConfig, PirError, Probe, ProbeBatch};
use crate::name::Name;

/// A PIR scheme by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// MulPIR on BFV (Ali et al., USENIX Security 2021).
    MulPir,
    /// Respire, single query (Burton, Menon, Wu, CCS 2024).
    Respire,
}

impl Scheme {
    /// Every scheme PIRCFG defines, built into this binary or not.
    pub const ALL: [Scheme; 2] = [Scheme::MulPir, Scheme::Respire];

    /// The scheme number in PIRCFG.
    pub fn id(self) -> u8 {
        match self {
            Scheme::MulPir => MULPIR_ID,
            Scheme::Respire => Respire::SCHEME_ID,
        }
    }

    /// Whether this binary can build, answer and query the scheme.
    pub fn built(self) -> bool {
        match self {
            Scheme::MulPir => cfg!(feature = "mulpir"),
            Scheme::Respire => true,
        }
    }

    /// The schemes this binary can use.
    pub fn built_schemes() -> impl Iterator<Item = Scheme> {
        Scheme::ALL.into_iter().filter(|s| s.built())
    }

    /// Refuses a scheme this binary was compiled without.
    pub fn require_built(self) -> Result<Scheme, PirError> {
        if self.built() {
            Ok(self)
        } else {
            Err(self.not_built())
        }
    }

    /// The error for a scheme this binary was compiled without, naming the feature that adds
    /// it.
    pub fn not_built(self) -> PirError {
        PirError::SchemeNotBuilt {
            name: self.name(),
            id: self.id(),
        }
    }

    /// The name in configs (`[pir] scheme`).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::MulPir => "mulpir",
            Scheme::Respire => "respire",
        }
    }

    /// The scheme of a PIRCFG, refused unless this binary has it.
    pub fn from_id(id: u8) -> Result<Scheme, PirError> {
        Scheme::ALL
            .into_iter()
            .find(|s| s.id() == id)
            .ok_or_else(|| {
                PirError::Param(format!(
                    "PIR scheme {id} is not one this build speaks ({})",
                    Scheme::names()
                ))
            })?
            .require_built()
    }

    pub fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The names this binary has, for error messages.
    pub fn names() -> String {
        Scheme::built_schemes()
            .map(|s| format!("{} ({})", s.name(), s.id()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The cuckoo table the scheme needs for slots of `slot_size` bytes: slots per bucket
    /// and target load. MulPIR answers with a whole 4-slot bucket (load 0.9 builds). Respire
    /// answers with one 256-byte record, so a bucket is one slot; with two choices per item
    /// and one slot per bucket, cuckoo insertion succeeds below a load of 0.5 (Pagh and
    /// Rodler), so tables are built at 0.45.
    pub fn table(self, options: &mut BuildOptions) {
        match self {
            Scheme::MulPir => {
                options.bucket_slots = 4;
                options.load = 0.9;
            }
            Scheme::Respire => {
                options.bucket_slots = 1;
                options.load = 0.45;
            }
        }
    }
}

/// MulPIR's PIRCFG number, known to builds without it.
const MULPIR_ID: u8 = 1;
#[cfg(feature = "mulpir")]
const _: () = assert!(MulPir::SCHEME_ID == MULPIR_ID);

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A zone's private-lookup database under whichever scheme it was built with.
pub enum ZoneDb {
    #[cfg(feature = "mulpir")]
    MulPir(ZonePirDb<MulPir>),
    Respire(ZonePirDb<Respire>),
}

/// A client's parsed evaluation key, for the scheme of the zone it was uploaded to.
pub enum ZoneKey {
    #[cfg(feature = "mulpir")]
    MulPir(MulPirKey),
    Respire(RespireKey),
}

/// The client side of one zone and epoch, for the scheme its PIRCFG names.
pub enum ZoneClient {
    #[cfg(feature = "mulpir")]
    MulPir(ZonePirClient<MulPir>),
    Respire(ZonePirClient<Respire>),
}

/// `$body` with `$inner` bound to the database or client of whichever scheme `$value` holds.
macro_rules! each {
    ($kind:ident, $value:expr, $inner:ident => $body:expr) => {
        match $value {
            #[cfg(feature = "mulpir")]
            $kind::MulPir($inner) => $body,
            $kind::Respire($inner) => $body,
        }
    };
}

impl std::fmt::Debug for ZoneDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        each!(ZoneDb, self, db => db.fmt(f))
    }
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        each!(ZoneKey, self, key => key.fmt(f))
    }
}

fn wrong_key() -> PirError {
    PirError::Param("an evaluation key of another PIR scheme".into())
}

impl ZoneDb {
    /// Builds the database of `zone` for `epoch` under `scheme`, with the cuckoo table the
    /// scheme needs ([`Scheme::table`] overrides `options`' bucket size and load).
    pub fn build<I>(
        scheme: Scheme,
        zone: &Name,
        zone_secret: &[u8],
        epoch: u64,
        options: &BuildOptions,
        entries: I,
    ) -> Result<(ZoneDb, BuildReport), PirError>
    where
        I: IntoIterator<Item = (String, Vec<Vec<u8>>)>,
    {
        let mut options = options.clone();
        scheme.table(&mut options);
        Ok(match scheme {
            #[cfg(feature = "mulpir")]
            Scheme::MulPir => {
                let (db, report) = ZonePirDb::build(zone, zone_secret, epoch, &options, entries)?;
                (ZoneDb::MulPir(db), report)
            }
            Scheme::Respire => {
                let (db, report) = ZonePirDb::build(zone, zone_secret, epoch, &options, entries)?;
                (ZoneDb::Respire(db), report)
            }
            #[cfg(not(feature = "mulpir"))]
            Scheme::MulPir => return Err(scheme.not_built()),
        })
    }

    pub fn scheme(&self) -> Scheme {
        match self {
            #[cfg(feature = "mulpir")]
            ZoneDb::MulPir(_) => Scheme::MulPir,
            ZoneDb::Respire(_) => Scheme::Respire,
        }
    }

    pub fn config(&self) -> &PirConfig {
        each!(ZoneDb, self, db => db.config())
    }

    pub fn probes(&self) -> usize {
        each!(ZoneDb, self, db => db.probes())
    }

    pub fn oprf_evaluate(&self, request: &[u8]) -> Result<Vec<u8>, PirError> {
        each!(ZoneDb, self, db => db.oprf_evaluate(request))
    }

    pub fn parse_key(&self, key: &[u8]) -> Result<ZoneKey, PirError> {
        Ok(match self {
            #[cfg(feature = "mulpir")]
            ZoneDb::MulPir(db) => ZoneKey::MulPir(db.parse_key(key)?),
            ZoneDb::Respire(db) => ZoneKey::Respire(db.parse_key(key)?),
        })
    }

    /// Approximate resident bytes of a parsed key (the key cache's bound).
    pub fn key_memory_bytes(key: &ZoneKey) -> usize {
        match key {
            #[cfg(feature = "mulpir")]
            ZoneKey::MulPir(k) => <MulPir as IndexPir>::Server::key_memory_bytes(k),
            ZoneKey::Respire(k) => <Respire as IndexPir>::Server::key_memory_bytes(k),
        }
    }

    pub fn answer(&self, shard: u32, key: &ZoneKey, query: &[u8]) -> Result<Vec<u8>, PirError> {
        match (self, key) {
            #[cfg(feature = "mulpir")]
            (ZoneDb::MulPir(db), ZoneKey::MulPir(k)) => db.answer(shard, k, query),
            (ZoneDb::Respire(db), ZoneKey::Respire(k)) => db.answer(shard, k, query),
            // Keys of another scheme exist only when there is another scheme.
            #[cfg(feature = "mulpir")]
            _ => Err(wrong_key()),
        }
    }

    /// Answers several queries against `shard` together (one pass over the database where
    /// the scheme batches); every key must be of this database's scheme.
    pub fn answer_batch(
        &self,
        shard: u32,
        items: &[(&ZoneKey, &[u8])],
    ) -> Vec<Result<Vec<u8>, PirError>> {
        macro_rules! batch {
            ($db:expr, $variant:ident) => {{
                let keys: Option<Vec<_>> = items
                    .iter()
                    .map(|(k, q)| match k {
                        ZoneKey::$variant(k) => Some((k, *q)),
                        #[cfg(feature = "mulpir")]
                        _ => None,
                    })
                    .collect();
                match keys {
                    Some(keys) => $db.answer_batch(shard, &keys),
                    None => items.iter().map(|_| Err(wrong_key())).collect(),
                }
            }};
        }
        match self {
            #[cfg(feature = "mulpir")]
            ZoneDb::MulPir(db) => batch!(db, MulPir),
            ZoneDb::Respire(db) => batch!(db, Respire),
        }
    }

    pub fn update<I>(&self, changes: I) -> Result<UpdateReport, PirError>
    where
        I: IntoIterator<Item = (String, Vec<Vec<u8>>)>,
    {
        each!(ZoneDb, self, db => db.update(changes))
    }

    pub fn replica_buckets(
        &self,
        shard: u32,
        first: u32,
        count: u32,
    ) -> Result<(u32, Vec<u8>), PirError> {
        each!(ZoneDb, self, db => db.replica_buckets(shard, first, count))
    }

    pub fn replica_delta(
        &self,
        shard: u32,
        from: u32,
        max: usize,
    ) -> Result<Option<ReplicaDelta>, PirError> {
        each!(ZoneDb, self, db => db.replica_delta(shard, from, max))
    }

    pub fn query_len(&self) -> usize {
        each!(ZoneDb, self, db => db.query_len())
    }

    pub fn response_len(&self) -> usize {
        each!(ZoneDb, self, db => db.response_len())
    }

    pub fn memory_bytes(&self) -> usize {
        each!(ZoneDb, self, db => db.memory_bytes())
    }
}

impl ZoneClient {
    /// Fresh keys for the zone's published config, under the scheme it names. Returns the
    /// client and the evaluation-key bytes to upload.
    pub fn new(config: PirConfig) -> Result<(ZoneClient, Vec<u8>), PirError> {
        Ok(match Scheme::from_id(config.scheme)? {
            #[cfg(feature = "mulpir")]
            Scheme::MulPir => {
                let (client, key) = ZonePirClient::new(config)?;
                (ZoneClient::MulPir(client), key)
            }
            Scheme::Respire => {
                let (client, key) = ZonePirClient::new(config)?;
                (ZoneClient::Respire(client), key)
            }
            #[cfg(not(feature = "mulpir"))]
            Scheme::MulPir => return Err(Scheme::MulPir.not_built()),
        })
    }

    pub fn scheme(&self) -> Scheme {
        match self {
            #[cfg(feature = "mulpir")]
            ZoneClient::MulPir(_) => Scheme::MulPir,
            ZoneClient::Respire(_) => Scheme::Respire,
        }
    }

    pub fn config(&self) -> &PirConfig {
        each!(ZoneClient, self, c => c.config())
    }

    pub fn probe(&self, y: &OprfOutput, index: u32) -> Probe {
        each!(ZoneClient, self, c => c.probe(y, index))
    }

    pub fn queries(&self, probe: &Probe) -> Result<[Vec<u8>; 2], PirError> {
        each!(ZoneClient, self, c => c.queries(probe))
    }

    pub fn open(&self, probe: &Probe, responses: [&[u8]; 2]) -> Result<Option<Chunk>, PirError> {
        each!(ZoneClient, self, c => c.open(probe, responses))
    }

    pub fn open_buckets(
        &self,
        probe: &Probe,
        buckets: [&[u8]; 2],
    ) -> Result<Option<Chunk>, PirError> {
        each!(ZoneClient, self, c => c.open_buckets(probe, buckets))
    }

    pub fn decode_failures(&self) -> u64 {
        each!(ZoneClient, self, c => c.decode_failures())
    }

    pub fn batch_size(&self) -> usize {
        each!(ZoneClient, self, c => c.batch_size())
    }

    pub fn batch_probes(&self, probes: &[Probe]) -> Result<Vec<ProbeBatch>, PirError> {
        each!(ZoneClient, self, c => c.batch_probes(probes))
    }

    pub fn open_batch(
        &self,
        probes: &[Probe],
        batch: &ProbeBatch,
        responses: &[&[u8]],
    ) -> Result<Vec<Result<Option<Chunk>, PirError>>, PirError> {
        each!(ZoneClient, self, c => c.open_batch(probes, batch, responses))
    }

    pub fn lookup_with<F>(
        &self,
        y: &OprfOutput,
        pad_to: u32,
        fetch: F,
    ) -> Result<Vec<Vec<u8>>, PirError>
    where
        F: FnMut(u32, &[u8]) -> Result<Vec<u8>, PirError>,
    {
        each!(ZoneClient, self, c => c.lookup_with(y, pad_to, fetch))
    }
}
