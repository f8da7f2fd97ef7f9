//! Helpers shared by the integration tests that build discovery trees (resolver.rs,
//! private.rs): names, identifiers, keys, signed mappings, time bounds.
#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use hickory_proto::rr::Name as HName;
use mimi_discovery::name::Name;
use mimi_discovery::record::{self, Context, Method, ProviderKey, Ssi, RECORD_VERSION};
use mimi_discovery::sii::Sii;
use mimi_discovery::zone::{RData, Record, ZoneFile};
use tokio::time::timeout;

/// Bound on a whole test.
pub const TEST_LIMIT: Duration = Duration::from_secs(90);
/// The tree apex of the tests.
pub const ROOT: &str = "mimi.arpa.";

pub fn n(s: &str) -> Name {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn hn(s: &str) -> HName {
    HName::from_ascii(s).unwrap()
}

pub fn apex() -> Name {
    n(ROOT)
}

/// The owner name of an identifier.
pub fn owner(sii: &str) -> Name {
    Sii::parse(sii, None)
        .unwrap_or_else(|e| panic!("{sii}: {e}"))
        .owner_name(&apex())
        .unwrap()
}

pub fn sii(s: &str) -> Sii {
    Sii::parse(s, None).unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs a test body with a time bound.
pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    timeout(TEST_LIMIT, f).await.expect("test timed out");
}

// ---------------------------------------------------------------------------------------
// Keys and mappings

pub struct Keys {
    pub chat: ProviderKey,
    pub talk: ProviderKey,
    pub meet: ProviderKey,
    /// Not in any trust file.
    pub rogue: ProviderKey,
}

impl Keys {
    pub fn new() -> Keys {
        Keys {
            chat: ProviderKey::generate(n("chat.example.")),
            talk: ProviderKey::generate(n("talk.example.")),
            meet: ProviderKey::generate(n("meet.example.")),
            rogue: ProviderKey::generate(n("rogue.example.")),
        }
    }

    /// Trust file text accepting chat, talk and meet (not rogue).
    pub fn trust_toml(&self) -> String {
        [&self.chat, &self.talk, &self.meet]
            .iter()
            .map(|k| record::trust_entry_toml(&k.provider, &[k.verifying_key()]))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn host_of(key: &ProviderKey) -> String {
    key.provider.to_string().trim_end_matches('.').to_string()
}

pub fn uri(key: &ProviderKey, who: &str) -> String {
    format!("mimi://{}/u/{who}", host_of(key))
}

/// A mapping valid from yesterday for a year, signed by `key` for `owner`.
pub fn mapping(key: &ProviderKey, owner: &Name, who: &str, context: Context, priority: u16) -> Ssi {
    let t = now();
    let mut s = Ssi {
        version: RECORD_VERSION,
        context,
        withdrawn: false,
        priority,
        seq: 1,
        not_before: t - 86400,
        not_after: t + 365 * 86400,
        method: Method::SmsOtp,
        verified_at: t - 86400,
        provider: key.provider.clone(),
        uri: uri(key, who),
        key_id: [0; 8],
        signature: [0; 64],
    };
    s.sign(owner, &key.signing);
    s
}

/// Adds an SSI record without replacing others of the same provider (as `put_ssi` does).
pub fn push_ssi(z: &mut ZoneFile, owner: &Name, ttl: u32, ssi: Ssi) {
    z.records.push(Record {
        name: owner.clone(),
        ttl,
        data: RData::Ssi(Box::new(ssi)),
        line: 0,
    });
}
