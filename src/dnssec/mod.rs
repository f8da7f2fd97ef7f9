//! DNSSEC for the discovery tree (DESIGN.md section 12; the formats in docs/dnssec.md).
//!
//! The leaf pieces, free of I/O but for key files:
//! - [`key`]: a zone's Ed25519 signing key (algorithm 15, RFC 8080), its DNSKEY and DS
//!   records and its key file.
//! - [`sign`]: RRSIGs over RRsets in canonical form (RFC 4034 sections 3.1.8.1 and 6), and
//!   their verification.
//! - [`denial`]: compact denial of existence (RFC 9824): one NSEC per answer, made for the
//!   name asked, so no chain of NSEC records lets anyone walk the zone.
//! - [`signer`]: a served zone's key and signature lifetime.
//! - [`validate`]: a chain of trust from an anchor DS down to an answer or a denial.
//! - [`presign`]: a zone signed whole with a classic NSEC chain, for other servers.

pub mod denial;
pub mod key;
pub mod presign;
pub mod sign;
pub mod signer;
pub mod validate;

use thiserror::Error;

pub use key::DnssecKey;
pub use sign::{RrsigFields, SignatureWindow};
pub use signer::ZoneSigner;

/// Ed25519 (RFC 8080), the only algorithm this tree signs with.
pub const ALG_ED25519: u8 = 15;
/// SHA-256 DS digests (RFC 4509).
pub const DIGEST_SHA256: u8 = 2;
pub const TYPE_DS: u16 = 43;
pub const TYPE_RRSIG: u16 = 46;
pub const TYPE_NSEC: u16 = 47;
pub const TYPE_DNSKEY: u16 = 48;
/// RFC 9824's meta-type in an NSEC bitmap: the owner does not exist.
pub const TYPE_NXNAME: u16 = 128;
/// DNSKEY flags: a zone key (bit 7) with the secure-entry-point bit (bit 15), as a combined
/// signing key has (RFC 4034 section 2.1.1).
pub const FLAGS_CSK: u16 = 257;
/// DNSKEY flags: a zone key without the secure-entry-point bit.
pub const FLAGS_ZSK: u16 = 256;

/// Why a DNSSEC operation failed; names the record or step, never key material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DnssecError {
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("RRSIG by {signer} key {key_tag} over {owner} type {rtype} does not verify")]
    BadSignature {
        owner: String,
        rtype: u16,
        signer: String,
        key_tag: u16,
    },
    #[error("RRSIG over {owner} type {rtype} is valid {inception}..{expiration}, not at {now}")]
    OutsideWindow {
        owner: String,
        rtype: u16,
        inception: u32,
        expiration: u32,
        now: u32,
    },
    #[error("algorithm {0} is not supported (only Ed25519, 15)")]
    Algorithm(u8),
}

impl DnssecError {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> DnssecError {
        DnssecError::Malformed {
            what,
            reason: reason.into(),
        }
    }
}
