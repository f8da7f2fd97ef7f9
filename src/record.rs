//! Discovery records: SSI mappings and APKEY provider keys (wire, presentation, signing),
//! app-provider signing-key files and trust files. Formats are documented in docs/records.md.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use rayon::prelude::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use toml::Spanned;

use crate::name::{Name, NameError};

/// SSI: one signed mapping SII -> SSI (private-use range, RFC 6895).
pub const TYPE_SSI: u16 = 65280;
/// APKEY: an app provider's public key.
pub const TYPE_APKEY: u16 = 65281;
/// PIRCFG: a zone's private-lookup parameters.
pub const TYPE_PIRCFG: u16 = 65282;
/// PIR: private-lookup request/response carrier.
pub const TYPE_PIR: u16 = 65283;
/// Encrypted replica of a zone's slot tables, at `_pir.<zone>` (DESIGN section 11).
pub const TYPE_SLOTS: u16 = 65285;

/// Version of the SSI and APKEY RDATA layouts.
pub const RECORD_VERSION: u8 = 1;
/// DNSSEC algorithm number of Ed25519 (RFC 8080), used in APKEY.
pub const ALG_ED25519: u8 = 15;
/// Domain separation prefix of the SSI signed message.
pub const SSI_SIGNING_PREFIX: &[u8] = b"MIMI-SSI-v1\0";

pub const FLAG_PERSONAL: u8 = 0x01;
pub const FLAG_BUSINESS: u8 = 0x02;
pub const FLAG_WITHDRAWN: u8 = 0x80;
const FLAGS_KNOWN: u8 = FLAG_PERSONAL | FLAG_BUSINESS | FLAG_WITHDRAWN;

/// Longest SSI URI: its length prefix is one octet.
pub const MAX_URI_LEN: usize = 255;
/// Length of the APKEY RDATA.
pub const APKEY_RDATA_LEN: usize = 1 + 1 + 8 + 8 + 32;

const SSI_FIELDS: usize = 12;
const APKEY_FIELDS: usize = 5;
/// Records per `ed25519_dalek::verify_batch` call in `verify_batch`.
const BATCH_CHUNK: usize = 128;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("{record} RDATA truncated in field `{field}`: needs {need} bytes, {have} left")]
    Truncated {
        record: &'static str,
        field: &'static str,
        need: usize,
        have: usize,
    },
    #[error("{record} RDATA has {count} trailing bytes after the signature/last field")]
    TrailingBytes { record: &'static str, count: usize },
    #[error("{record} field `version`: unsupported version {version} (expected 1)")]
    BadVersion { record: &'static str, version: u8 },
    #[error("SSI field `flags`: unknown flag bits {bits:#04x} set in {flags:#04x}")]
    UnknownFlags { flags: u8, bits: u8 },
    #[error("SSI field `flags`: {flags:#04x} sets neither personal nor business")]
    NoContext { flags: u8 },
    #[error(
        "SSI field `flags`: bad flags word {word:?} (expected personal, business or any, \
         optionally with ,withdrawn)"
    )]
    BadFlagsWord { word: String },
    #[error("unknown context {0:?} (expected personal, business or any)")]
    UnknownContext(String),
    #[error("SSI field `method`: unknown verification method code {0}")]
    UnknownMethodCode(u8),
    #[error(
        "SSI field `method`: unknown verification method {0:?} (expected sms-otp, voice-otp, \
         email-link, number-provider, enterprise-directory or other)"
    )]
    UnknownMethod(String),
    #[error("SSI field `provider`: bad provider name {value}: {reason}")]
    BadProvider { value: String, reason: String },
    #[error("SSI field `ssi`: URI is not valid UTF-8 (bytes {hex})")]
    SsiNotUtf8 { hex: String },
    #[error("SSI field `ssi`: URI {uri:?} {reason}")]
    BadUriText { uri: String, reason: String },
    #[error("SSI field `ssi`: {uri:?} is not a mimi://host/path URI: {reason}")]
    BadUri { uri: String, reason: String },
    #[error("SSI URI host {host} is not the provider {provider}")]
    HostNotProvider { host: String, provider: String },
    #[error(
        "field `{field}`: bad time {token:?} (expected RFC 3339 UTC such as \
         2026-01-01T00:00:00Z, or unix seconds): {reason}"
    )]
    BadTime {
        field: &'static str,
        token: String,
        reason: String,
    },
    #[error("field `{field}`: bad number {token:?}")]
    BadNumber { field: &'static str, token: String },
    #[error("field `{field}`: bad base64 {value:?}: {reason}")]
    BadBase64 {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("field `{field}`: bad hex {value:?}: {reason}")]
    BadHex {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("field `{field}`: {value:?} is {got} bytes long, expected {expected}")]
    BadLength {
        field: &'static str,
        value: String,
        expected: usize,
        got: usize,
    },
    #[error("{record} presentation: wrong number of fields: expected {expected}, got {got}")]
    FieldCount {
        record: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("APKEY field `algorithm`: unsupported algorithm {0} (only 15 = Ed25519)")]
    UnknownAlgorithmCode(u8),
    #[error("APKEY field `algorithm`: unknown algorithm {0:?} (expected ed25519 or 15)")]
    UnknownAlgorithm(String),
    #[error("public key {key}: not a valid Ed25519 public key")]
    BadPublicKey { key: String },
    #[error("public key {key}: weak (small-order) Ed25519 key")]
    WeakKey { key: String },
    #[error("key id {record} does not match the verifying key's id {key} (SSI at {owner})")]
    KeyIdMismatch {
        owner: String,
        record: String,
        key: String,
    },
    #[error("signature does not verify under key {key_id} (SSI at {owner}, provider {provider})")]
    BadSignature {
        owner: String,
        provider: String,
        key_id: String,
    },
    #[error("untrusted provider {provider}: not in the trust store")]
    UntrustedProvider { provider: String },
    #[error("provider {provider}: key id {key_id} is not a trusted key of this provider")]
    UnknownKeyId { provider: String, key_id: String },
    #[error("validity window inverted: not_before {not_before} is after not_after {not_after}")]
    BadWindow {
        not_before: String,
        not_after: String,
    },
    #[error("expired: not_after {not_after} is before now ({now})")]
    Expired { not_after: String, now: String },
    #[error("not yet valid: not_before {not_before} is after now ({now})")]
    NotYetValid { not_before: String, now: String },
}

/// Errors of key files and trust files; every message names the file.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{}: {}", .path.display(), .source)]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: already exists; refusing to overwrite it", .path.display())]
    Exists { path: PathBuf },
    #[error("{}: {}", at(.file, *.line), .message)]
    Syntax {
        file: String,
        line: Option<usize>,
        message: String,
    },
    #[error("{}: {}", at(.file, *.line), .message)]
    Invalid {
        file: String,
        line: Option<usize>,
        message: String,
    },
    #[error(
        "{}: {} {} does not match the secret key (which gives {})",
        at(.file, *.line), .field, .stored, .derived
    )]
    Mismatch {
        file: String,
        line: Option<usize>,
        field: &'static str,
        stored: String,
        derived: String,
    },
}

fn at(file: &str, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    }
}

/// Who a mapping is for: the sender's policy filters on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    Personal,
    Business,
    Any,
}

impl Context {
    fn flag_bits(self) -> u8 {
        match self {
            Context::Personal => FLAG_PERSONAL,
            Context::Business => FLAG_BUSINESS,
            Context::Any => FLAG_PERSONAL | FLAG_BUSINESS,
        }
    }

    /// True when a record with this context is acceptable to a policy asking for `wanted`.
    pub fn matches(self, wanted: Context) -> bool {
        self == Context::Any || wanted == Context::Any || self == wanted
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Context::Personal => "personal",
            Context::Business => "business",
            Context::Any => "any",
        })
    }
}

impl FromStr for Context {
    type Err = RecordError;
    fn from_str(s: &str) -> Result<Context, RecordError> {
        [Context::Personal, Context::Business, Context::Any]
            .into_iter()
            .find(|c| s.eq_ignore_ascii_case(&c.to_string()))
            .ok_or_else(|| RecordError::UnknownContext(s.to_string()))
    }
}

/// How the provider verified that the user owns the SII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Method {
    SmsOtp = 1,
    VoiceOtp = 2,
    EmailLink = 3,
    NumberProvider = 4,
    EnterpriseDirectory = 5,
    Other = 255,
}

impl Method {
    const ALL: [Method; 6] = [
        Method::SmsOtp,
        Method::VoiceOtp,
        Method::EmailLink,
        Method::NumberProvider,
        Method::EnterpriseDirectory,
        Method::Other,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.code() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::SmsOtp => "sms-otp",
            Method::VoiceOtp => "voice-otp",
            Method::EmailLink => "email-link",
            Method::NumberProvider => "number-provider",
            Method::EnterpriseDirectory => "enterprise-directory",
            Method::Other => "other",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = RecordError;
    fn from_str(s: &str) -> Result<Method, RecordError> {
        Method::ALL
            .into_iter()
            .find(|m| s.eq_ignore_ascii_case(m.as_str()))
            .ok_or_else(|| RecordError::UnknownMethod(s.to_string()))
    }
}

/// First 8 bytes of SHA-256 over the 32-byte public key.
pub fn key_id(key: &VerifyingKey) -> [u8; 8] {
    key_id_of_bytes(key.as_bytes())
}

fn key_id_of_bytes(bytes: &[u8; 32]) -> [u8; 8] {
    let digest = Sha256::digest(bytes);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// Owner name of a provider's APKEY record: `<provider>.ap.<apex>`.
pub fn apkey_owner(provider: &Name, apex: &Name) -> Result<Name, NameError> {
    let ap: &[u8] = b"ap";
    Name::from_labels(provider.labels().chain(std::iter::once(ap)), apex)
}

/// One signed SII -> SSI mapping (RDATA of type SSI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssi {
    pub version: u8,
    pub context: Context,
    /// Tombstone: the mapping is withdrawn; a signed, higher-`seq` replacement for replay safety.
    pub withdrawn: bool,
    pub priority: u16,
    pub seq: u64,
    pub not_before: u64,
    pub not_after: u64,
    pub method: Method,
    pub verified_at: u64,
    pub provider: Name,
    pub uri: String,
    pub key_id: [u8; 8],
    pub signature: [u8; 64],
}

impl Ssi {
    pub fn flags(&self) -> u8 {
        self.context.flag_bits() | if self.withdrawn { FLAG_WITHDRAWN } else { 0 }
    }

    /// Appends the wire RDATA. A URI longer than 255 bytes (which no decoder produces) is
    /// cut at a character boundary so the output stays well-formed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(self.flags());
        out.extend_from_slice(&self.priority.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        out.push(self.method.code());
        out.extend_from_slice(&self.verified_at.to_be_bytes());
        out.extend_from_slice(self.provider.as_wire());
        let uri = truncate_utf8(&self.uri, MAX_URI_LEN);
        out.push(uri.len() as u8);
        out.extend_from_slice(uri.as_bytes());
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.signature);
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(37 + self.provider.as_wire().len() + self.uri.len() + 73);
        self.encode(&mut out);
        out
    }

    /// Decodes wire RDATA. Only the canonical encoding is accepted, so a decoded record
    /// re-encodes to exactly `rdata` (which is what the signature covers).
    pub fn from_wire(rdata: &[u8]) -> Result<Ssi, RecordError> {
        let mut r = Reader::new(rdata, "SSI");
        let version = r.u8("version")?;
        if version != RECORD_VERSION {
            return Err(RecordError::BadVersion {
                record: "SSI",
                version,
            });
        }
        let flags = r.u8("flags")?;
        let (context, withdrawn) = decode_flags(flags)?;
        let priority = r.u16("priority")?;
        let seq = r.u64("seq")?;
        let not_before = r.u64("not_before")?;
        let not_after = r.u64("not_after")?;
        let code = r.u8("method")?;
        let method = Method::from_code(code).ok_or(RecordError::UnknownMethodCode(code))?;
        let verified_at = r.u64("verified_at")?;
        let provider = r.name()?;
        let uri_len = r.u8("ssi length")? as usize;
        let uri_bytes = r.take(uri_len, "ssi")?;
        let uri = std::str::from_utf8(uri_bytes)
            .map_err(|_| RecordError::SsiNotUtf8 {
                hex: hex::encode(uri_bytes),
            })?
            .to_string();
        check_uri_text(&uri)?;
        let key_id = r.array::<8>("key id")?;
        let signature = r.array::<64>("signature")?;
        r.finish()?;
        Ok(Ssi {
            version,
            context,
            withdrawn,
            priority,
            seq,
            not_before,
            not_after,
            method,
            verified_at,
            provider,
            uri,
            key_id,
            signature,
        })
    }

    /// The flags word of the presentation form, e.g. `any` or `personal,withdrawn`.
    pub fn flags_word(&self) -> String {
        if self.withdrawn {
            format!("{},withdrawn", self.context)
        } else {
            self.context.to_string()
        }
    }

    /// Presentation form of the RDATA (no owner, class, type or TTL).
    pub fn to_presentation(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {} {} \"{}\" {} {}",
            self.version,
            self.flags_word(),
            self.priority,
            self.seq,
            format_time(self.not_before),
            format_time(self.not_after),
            self.method,
            format_time(self.verified_at),
            self.provider,
            self.uri,
            hex::encode(self.key_id),
            B64.encode(self.signature),
        )
    }

    /// Parses presentation fields (already tokenized, quotes removed). Base64 signatures
    /// split over several tokens, as zone files allow for DNSKEY, are joined.
    pub fn parse_presentation(fields: &[&str]) -> Result<Ssi, RecordError> {
        if fields.len() < SSI_FIELDS {
            return Err(RecordError::FieldCount {
                record: "SSI",
                expected: SSI_FIELDS,
                got: fields.len(),
            });
        }
        let version = parse_num::<u8>("version", fields[0])?;
        if version != RECORD_VERSION {
            return Err(RecordError::BadVersion {
                record: "SSI",
                version,
            });
        }
        let (context, withdrawn) = parse_flags_word(fields[1])?;
        let priority = parse_num::<u16>("priority", fields[2])?;
        let seq = parse_num::<u64>("seq", fields[3])?;
        let not_before = parse_time("not_before", fields[4])?;
        let not_after = parse_time("not_after", fields[5])?;
        let method: Method = fields[6].parse()?;
        let verified_at = parse_time("verified_at", fields[7])?;
        let provider = parse_provider(fields[8])?;
        let uri = fields[9].to_string();
        check_uri_text(&uri)?;
        let key_id = parse_hex_array::<8>("key id", fields[10])?;
        let signature = parse_b64_array::<64>("signature", &fields[11..].concat())?;
        Ok(Ssi {
            version,
            context,
            withdrawn,
            priority,
            seq,
            not_before,
            not_after,
            method,
            verified_at,
            provider,
            uri,
            key_id,
            signature,
        })
    }

    /// `"MIMI-SSI-v1\0" || owner (wire) || RDATA without the signature`.
    pub fn signed_message(&self, owner: &Name) -> Vec<u8> {
        let mut msg = Vec::with_capacity(SSI_SIGNING_PREFIX.len() + 300);
        msg.extend_from_slice(SSI_SIGNING_PREFIX);
        msg.extend_from_slice(owner.as_wire());
        self.encode(&mut msg);
        msg.truncate(msg.len() - 64);
        msg
    }

    /// Sets `key_id` and `signature` for this record at `owner`.
    pub fn sign(&mut self, owner: &Name, key: &SigningKey) {
        self.key_id = key_id(&key.verifying_key());
        let msg = self.signed_message(owner);
        self.signature = key.sign(&msg).to_bytes();
    }

    /// Checks the key id and the signature (strict Ed25519: no weak keys, canonical R).
    pub fn verify(&self, owner: &Name, key: &VerifyingKey) -> Result<(), RecordError> {
        let id = key_id(key);
        if id != self.key_id {
            return Err(RecordError::KeyIdMismatch {
                owner: owner.to_string(),
                record: hex::encode(self.key_id),
                key: hex::encode(id),
            });
        }
        let msg = self.signed_message(owner);
        key.verify_strict(&msg, &Signature::from_bytes(&self.signature))
            .map_err(|_| self.bad_signature(owner))
    }

    fn bad_signature(&self, owner: &Name) -> RecordError {
        RecordError::BadSignature {
            owner: owner.to_string(),
            provider: self.provider.to_string(),
            key_id: hex::encode(self.key_id),
        }
    }

    /// Host of the `mimi://host/path` URI, as a name.
    pub fn uri_host(&self) -> Result<Name, RecordError> {
        let bad = |reason: &str| RecordError::BadUri {
            uri: self.uri.clone(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = self
            .uri
            .split_once("://")
            .ok_or_else(|| bad("no mimi:// scheme"))?;
        if !scheme.eq_ignore_ascii_case("mimi") {
            return Err(bad("scheme is not mimi"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host, path) = rest.split_at(end);
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if host.contains('@') {
            return Err(bad("userinfo is not allowed"));
        }
        if host.contains(':') {
            return Err(bad("a port (or IP literal) is not allowed"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(bad("host is not an ASCII (A-label) domain name"));
        }
        if !path.starts_with('/') || path.len() < 2 {
            return Err(bad("no path after the host"));
        }
        let name =
            Name::parse(host, Some(&Name::root())).map_err(|e| bad(&format!("bad host: {e}")))?;
        if name.is_root() {
            return Err(bad("empty host"));
        }
        Ok(name)
    }

    /// The URI's host must be the provider that signed the mapping.
    pub fn check_provider(&self) -> Result<(), RecordError> {
        let host = self.uri_host()?;
        if host != self.provider {
            return Err(RecordError::HostNotProvider {
                host: host.to_string(),
                provider: self.provider.to_string(),
            });
        }
        Ok(())
    }

    pub fn is_valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Longest time a cache may keep this record at `now`: never past `not_after`.
    pub fn ttl_cap(&self, now: u64) -> u32 {
        u32::try_from(self.not_after.saturating_sub(now)).unwrap_or(u32::MAX)
    }
}

fn decode_flags(flags: u8) -> Result<(Context, bool), RecordError> {
    let unknown = flags & !FLAGS_KNOWN;
    if unknown != 0 {
        return Err(RecordError::UnknownFlags {
            flags,
            bits: unknown,
        });
    }
    let context = match flags & (FLAG_PERSONAL | FLAG_BUSINESS) {
        FLAG_PERSONAL => Context::Personal,
        FLAG_BUSINESS => Context::Business,
        0 => return Err(RecordError::NoContext { flags }),
        _ => Context::Any,
    };
    Ok((context, flags & FLAG_WITHDRAWN != 0))
}

fn parse_flags_word(word: &str) -> Result<(Context, bool), RecordError> {
    let bad = || RecordError::BadFlagsWord {
        word: word.to_string(),
    };
    let mut context = None;
    let mut withdrawn = false;
    for part in word.split(',') {
        if part.eq_ignore_ascii_case("withdrawn") {
            if withdrawn {
                return Err(bad());
            }
            withdrawn = true;
        } else {
            let c: Context = part.parse().map_err(|_| bad())?;
            if context.replace(c).is_some() {
                return Err(bad());
            }
        }
    }
    Ok((context.ok_or_else(bad)?, withdrawn))
}

fn parse_provider(text: &str) -> Result<Name, RecordError> {
    let name: Name = text
        .parse()
        .map_err(|e: NameError| RecordError::BadProvider {
            value: text.to_string(),
            reason: e.to_string(),
        })?;
    check_provider_name(&name)?;
    Ok(name)
}

fn check_provider_name(name: &Name) -> Result<(), RecordError> {
    if name.is_root() {
        return Err(RecordError::BadProvider {
            value: ".".into(),
            reason: "the root is not a provider".into(),
        });
    }
    Ok(())
}

/// URIs must survive a zone-file round trip as one quoted token.
fn check_uri_text(uri: &str) -> Result<(), RecordError> {
    let bad = |reason: &str| RecordError::BadUriText {
        uri: uri.to_string(),
        reason: reason.to_string(),
    };
    if uri.len() > MAX_URI_LEN {
        return Err(bad(&format!(
            "is {} bytes long, at most {MAX_URI_LEN} allowed",
            uri.len()
        )));
    }
    if uri.is_empty() {
        return Err(bad("is empty"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    if uri.contains(['"', '\\']) {
        return Err(bad("contains '\"' or '\\'"));
    }
    Ok(())
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// An app provider's public key (RDATA of type APKEY), at `<provider>.ap.<apex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApKey {
    pub version: u8,
    /// DNSSEC algorithm number; 15 = Ed25519.
    pub algorithm: u8,
    pub not_before: u64,
    pub not_after: u64,
    pub public_key: [u8; 32],
}

impl ApKey {
    pub fn new(key: &VerifyingKey, not_before: u64, not_after: u64) -> ApKey {
        ApKey {
            version: RECORD_VERSION,
            algorithm: ALG_ED25519,
            not_before,
            not_after,
            public_key: key.to_bytes(),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(self.algorithm);
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        out.extend_from_slice(&self.public_key);
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(APKEY_RDATA_LEN);
        self.encode(&mut out);
        out
    }

    /// Decodes wire RDATA; the key must be a usable (valid, not weak) Ed25519 key.
    pub fn from_wire(rdata: &[u8]) -> Result<ApKey, RecordError> {
        let mut r = Reader::new(rdata, "APKEY");
        let version = r.u8("version")?;
        if version != RECORD_VERSION {
            return Err(RecordError::BadVersion {
                record: "APKEY",
                version,
            });
        }
        let algorithm = r.u8("algorithm")?;
        if algorithm != ALG_ED25519 {
            return Err(RecordError::UnknownAlgorithmCode(algorithm));
        }
        let not_before = r.u64("not_before")?;
        let not_after = r.u64("not_after")?;
        let public_key = r.array::<32>("public key")?;
        r.finish()?;
        let key = ApKey {
            version,
            algorithm,
            not_before,
            not_after,
            public_key,
        };
        key.verifying_key()?;
        Ok(key)
    }

    pub fn to_presentation(&self) -> String {
        let alg = if self.algorithm == ALG_ED25519 {
            "ed25519".to_string()
        } else {
            self.algorithm.to_string()
        };
        format!(
            "{} {} {} {} {}",
            self.version,
            alg,
            format_time(self.not_before),
            format_time(self.not_after),
            B64.encode(self.public_key)
        )
    }

    /// `1 ed25519 <not_before> <not_after> <base64 key>`; the key may be split over tokens.
    pub fn parse_presentation(fields: &[&str]) -> Result<ApKey, RecordError> {
        if fields.len() < APKEY_FIELDS {
            return Err(RecordError::FieldCount {
                record: "APKEY",
                expected: APKEY_FIELDS,
                got: fields.len(),
            });
        }
        let version = parse_num::<u8>("version", fields[0])?;
        if version != RECORD_VERSION {
            return Err(RecordError::BadVersion {
                record: "APKEY",
                version,
            });
        }
        let algorithm = if fields[1].eq_ignore_ascii_case("ed25519") {
            ALG_ED25519
        } else {
            match fields[1].parse::<u8>() {
                Ok(ALG_ED25519) => ALG_ED25519,
                _ => return Err(RecordError::UnknownAlgorithm(fields[1].to_string())),
            }
        };
        let not_before = parse_time("not_before", fields[2])?;
        let not_after = parse_time("not_after", fields[3])?;
        let public_key = parse_b64_array::<32>("public key", &fields[4..].concat())?;
        let key = ApKey {
            version,
            algorithm,
            not_before,
            not_after,
            public_key,
        };
        key.verifying_key()?;
        Ok(key)
    }

    pub fn verifying_key(&self) -> Result<VerifyingKey, RecordError> {
        if self.algorithm != ALG_ED25519 {
            return Err(RecordError::UnknownAlgorithmCode(self.algorithm));
        }
        parse_verifying_key(&self.public_key)
    }

    pub fn key_id(&self) -> [u8; 8] {
        key_id_of_bytes(&self.public_key)
    }

    pub fn is_valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

fn parse_verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, RecordError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| RecordError::BadPublicKey {
        key: B64.encode(bytes),
    })?;
    if key.is_weak() {
        return Err(RecordError::WeakKey {
            key: B64.encode(bytes),
        });
    }
    Ok(key)
}

/// Bounds-checked cursor over RDATA; never panics.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    record: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], record: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            record,
        }
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        let rest = self.rest();
        let got = rest.get(..n).ok_or(RecordError::Truncated {
            record: self.record,
            field,
            need: n,
            have: rest.len(),
        })?;
        self.pos += n;
        Ok(got)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Provider name; must be already lowercase, since the signature covers the raw bytes.
    fn name(&mut self) -> Result<Name, RecordError> {
        let rest = self.rest();
        let (name, used) = Name::from_wire(rest).map_err(|e| RecordError::BadProvider {
            value: format!("(wire {})", hex::encode(&rest[..rest.len().min(64)])),
            reason: e.to_string(),
        })?;
        if name.as_wire() != &rest[..used] {
            return Err(RecordError::BadProvider {
                value: name.to_string(),
                reason: "not lowercase on the wire".into(),
            });
        }
        check_provider_name(&name)?;
        self.pos += used;
        Ok(name)
    }

    fn finish(&self) -> Result<(), RecordError> {
        match self.rest().len() {
            0 => Ok(()),
            count => Err(RecordError::TrailingBytes {
                record: self.record,
                count,
            }),
        }
    }
}

/// RFC 3339 UTC with second precision; values beyond year 9999 stay unix seconds, which
/// `parse_time` accepts too.
pub fn format_time(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .filter(|dt| dt.year() <= 9999)
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

/// RFC 3339 (any offset, whole seconds) or unix seconds.
pub fn parse_time(field: &'static str, token: &str) -> Result<u64, RecordError> {
    let bad = |reason: &str| RecordError::BadTime {
        field,
        token: token.to_string(),
        reason: reason.to_string(),
    };
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        return token
            .parse::<u64>()
            .map_err(|_| bad("larger than 2^64-1 seconds"));
    }
    let dt = OffsetDateTime::parse(token, &Rfc3339).map_err(|e| bad(&e.to_string()))?;
    if dt.nanosecond() != 0 {
        return Err(bad("fractional seconds are not allowed"));
    }
    u64::try_from(dt.unix_timestamp()).map_err(|_| bad("before 1970"))
}

fn parse_num<T: FromStr>(field: &'static str, token: &str) -> Result<T, RecordError> {
    token.parse().map_err(|_| RecordError::BadNumber {
        field,
        token: token.to_string(),
    })
}

fn parse_hex_array<const N: usize>(
    field: &'static str,
    text: &str,
) -> Result<[u8; N], RecordError> {
    let bytes = hex::decode(text).map_err(|e| RecordError::BadHex {
        field,
        value: text.to_string(),
        reason: e.to_string(),
    })?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| RecordError::BadLength {
        field,
        value: text.to_string(),
        expected: N,
        got: bytes.len(),
    })
}

fn parse_b64_array<const N: usize>(
    field: &'static str,
    text: &str,
) -> Result<[u8; N], RecordError> {
    let bytes = B64.decode(text).map_err(|e| RecordError::BadBase64 {
        field,
        value: text.to_string(),
        reason: e.to_string(),
    })?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| RecordError::BadLength {
        field,
        value: text.to_string(),
        expected: N,
        got: bytes.len(),
    })
}

/// An app provider's Ed25519 signing key, as kept in its key file.
pub struct ProviderKey {
    pub provider: Name,
    pub signing: SigningKey,
}

impl fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderKey")
            .field("provider", &self.provider)
            .field("key_id", &hex::encode(self.key_id()))
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileToml {
    provider: Spanned<String>,
    algorithm: Option<Spanned<String>>,
    secret_key: Spanned<String>,
    public_key: Option<Spanned<String>>,
    key_id: Option<Spanned<String>>,
}

impl ProviderKey {
    pub fn generate(provider: Name) -> ProviderKey {
        ProviderKey {
            provider,
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn key_id(&self) -> [u8; 8] {
        key_id(&self.verifying_key())
    }

    /// The key file text (contains the secret key).
    pub fn to_toml(&self) -> String {
        format!(
            "# SECRET: MIMI app provider signing key (Ed25519). Keep private (mode 0600);\n\
             # publish only public_key, in trust files and APKEY records.\n\
             provider = {}\n\
             algorithm = \"ed25519\"\n\
             secret_key = \"{}\"\n\
             public_key = \"{}\"\n\
             key_id = \"{}\"\n",
            toml_string(&domain_text(&self.provider)),
            B64.encode(self.signing.to_bytes()),
            B64.encode(self.verifying_key().as_bytes()),
            hex::encode(self.key_id()),
        )
    }

    /// Writes a new key file with mode 0600. Never overwrites: the file is written under a
    /// temporary name and hard-linked into place, which fails if `path` exists.
    pub fn save_new(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
        write_secret_file_new(path.as_ref(), self.to_toml().as_bytes())
    }

    pub fn load(path: impl AsRef<Path>) -> Result<ProviderKey, KeyError> {
        load_key_file(path.as_ref(), ProviderKey::from_toml_str)
    }

    /// Parses key-file text; `source` names it in errors.
    pub fn from_toml_str(text: &str, source: &str) -> Result<ProviderKey, KeyError> {
        let file: KeyFileToml = toml::from_str(text).map_err(|e| syntax_error(text, source, e))?;
        let invalid = |span: std::ops::Range<usize>, message: String| {
            invalid_at(text, source, span.start, message)
        };
        let provider: Name = file.provider.get_ref().parse().map_err(|e| {
            invalid(
                file.provider.span(),
                format!("provider {:?}: {e}", file.provider.get_ref()),
            )
        })?;
        if provider.is_root() {
            return Err(invalid(
                file.provider.span(),
                "provider: the root is not a provider".into(),
            ));
        }
        if let Some(alg) = &file.algorithm {
            if !alg.get_ref().eq_ignore_ascii_case("ed25519") {
                return Err(invalid(
                    alg.span(),
                    format!(
                        "algorithm {:?} is not supported (expected ed25519)",
                        alg.get_ref()
                    ),
                ));
            }
        }
        let secret = parse_b64_array::<32>("secret_key", file.secret_key.get_ref().trim())
            .map_err(|_| {
                // Never echo the secret into logs.
                invalid(
                    file.secret_key.span(),
                    "secret_key is not base64 of 32 bytes".into(),
                )
            })?;
        let key = ProviderKey {
            provider,
            signing: SigningKey::from_bytes(&secret),
        };
        if let Some(public) = &file.public_key {
            let derived = B64.encode(key.verifying_key().as_bytes());
            check_stored(text, source, "public_key", public, derived)?;
        }
        if let Some(id) = &file.key_id {
            let derived = hex::encode(key.key_id());
            if !id.get_ref().trim().eq_ignore_ascii_case(&derived) {
                return Err(KeyError::Mismatch {
                    file: source.to_string(),
                    line: Some(line_of(text, id.span().start)),
                    field: "key_id",
                    stored: id.get_ref().clone(),
                    derived,
                });
            }
        }
        Ok(key)
    }
}

pub(crate) fn syntax_error(text: &str, source: &str, e: toml::de::Error) -> KeyError {
    KeyError::Syntax {
        file: source.to_string(),
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().trim().to_string(),
    }
}

/// Reads a key or trust file and parses its text with `parse` (text, and the path to name
/// in errors).
pub(crate) fn load_key_file<T>(
    path: &Path,
    parse: impl FnOnce(&str, &str) -> Result<T, KeyError>,
) -> Result<T, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Refuses a stored field (a public key, say) that differs from what the secret gives.
pub(crate) fn check_stored(
    text: &str,
    source: &str,
    field: &'static str,
    stored: &Spanned<String>,
    derived: String,
) -> Result<(), KeyError> {
    if stored.get_ref().trim() == derived {
        return Ok(());
    }
    Err(KeyError::Mismatch {
        file: source.to_string(),
        line: Some(line_of(text, stored.span().start)),
        field,
        stored: stored.get_ref().clone(),
        derived,
    })
}

/// A field of a key or trust file that is wrong, at the line of byte `offset` of `text`.
pub(crate) fn invalid_at(text: &str, source: &str, offset: usize, message: String) -> KeyError {
    KeyError::Invalid {
        file: source.to_string(),
        line: Some(line_of(text, offset)),
        message,
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A name as written in key and trust files: no trailing dot.
fn domain_text(name: &Name) -> String {
    let s = name.to_string();
    s.strip_suffix('.').unwrap_or(&s).to_string()
}

/// A TOML basic string.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The providers and keys a DP or resolver trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    providers: BTreeMap<Name, Vec<([u8; 8], VerifyingKey)>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFileToml {
    #[serde(default)]
    provider: Vec<TrustEntryToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustEntryToml {
    domain: Spanned<String>,
    keys: Spanned<Vec<Spanned<String>>>,
}

impl TrustStore {
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    pub fn load(path: impl AsRef<Path>) -> Result<TrustStore, KeyError> {
        load_key_file(path.as_ref(), TrustStore::from_toml_str)
    }

    /// Parses trust-file text; `source` names it in errors. Repeated domains merge.
    pub fn from_toml_str(text: &str, source: &str) -> Result<TrustStore, KeyError> {
        let file: TrustFileToml =
            toml::from_str(text).map_err(|e| syntax_error(text, source, e))?;
        let invalid = |span: std::ops::Range<usize>, message: String| {
            invalid_at(text, source, span.start, message)
        };
        let mut store = TrustStore::new();
        for entry in file.provider {
            let domain = entry.domain.get_ref();
            let provider: Name = domain
                .parse()
                .map_err(|e| invalid(entry.domain.span(), format!("domain {domain:?}: {e}")))?;
            if provider.is_root() {
                return Err(invalid(
                    entry.domain.span(),
                    "domain: the root is not a provider".into(),
                ));
            }
            if entry.keys.get_ref().is_empty() {
                return Err(invalid(
                    entry.keys.span(),
                    format!("provider {domain:?} lists no keys"),
                ));
            }
            for key in entry.keys.get_ref() {
                let bytes = parse_b64_array::<32>("keys", key.get_ref().trim())
                    .and_then(|b| parse_verifying_key(&b))
                    .map_err(|e| invalid(key.span(), format!("provider {domain:?}: {e}")))?;
                store.add(provider.clone(), bytes);
            }
        }
        Ok(store)
    }

    /// Adds a trusted key; adding one twice is a no-op.
    pub fn add(&mut self, provider: Name, key: VerifyingKey) {
        let keys = self.providers.entry(provider).or_default();
        if !keys.iter().any(|(_, k)| *k == key) {
            keys.push((key_id(&key), key));
        }
    }

    pub fn key_for(&self, provider: &Name, key_id: &[u8; 8]) -> Option<&VerifyingKey> {
        self.providers
            .get(provider)?
            .iter()
            .find(|(id, _)| id == key_id)
            .map(|(_, k)| k)
    }

    pub fn is_trusted(&self, provider: &Name) -> bool {
        self.providers.contains_key(provider)
    }

    pub fn providers(&self) -> impl Iterator<Item = &Name> + '_ {
        self.providers.keys()
    }

    pub fn keys(&self, provider: &Name) -> impl Iterator<Item = &VerifyingKey> + '_ {
        self.providers
            .get(provider)
            .into_iter()
            .flat_map(|v| v.iter().map(|(_, k)| k))
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The whole store as trust-file text.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (provider, keys) in &self.providers {
            if !out.is_empty() {
                out.push('\n');
            }
            let keys: Vec<VerifyingKey> = keys.iter().map(|(_, k)| *k).collect();
            out.push_str(&trust_entry_toml(provider, &keys));
        }
        out
    }
}

/// One `[[provider]]` block of a trust file, ready to append.
pub fn trust_entry_toml(provider: &Name, keys: &[VerifyingKey]) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("\"{}\"", B64.encode(k.as_bytes())))
        .collect();
    format!(
        "[[provider]]\ndomain = {}\nkeys = [{}]\n",
        toml_string(&domain_text(provider)),
        keys.join(", ")
    )
}

/// Full acceptance check of one mapping at `owner`, in order: trusted provider, known key
/// id, URI host is the provider, signature (strict), validity window at `now`.
pub fn verify_against(
    ssi: &Ssi,
    owner: &Name,
    trust: &TrustStore,
    now: u64,
) -> Result<(), RecordError> {
    let key = lookup_key(ssi, trust)?;
    ssi.check_provider()?;
    ssi.verify(owner, key)?;
    if ssi.not_before > ssi.not_after {
        return Err(RecordError::BadWindow {
            not_before: format_time(ssi.not_before),
            not_after: format_time(ssi.not_after),
        });
    }
    if now < ssi.not_before {
        return Err(RecordError::NotYetValid {
            not_before: format_time(ssi.not_before),
            now: format_time(now),
        });
    }
    if now > ssi.not_after {
        return Err(RecordError::Expired {
            not_after: format_time(ssi.not_after),
            now: format_time(now),
        });
    }
    Ok(())
}

fn lookup_key<'t>(ssi: &Ssi, trust: &'t TrustStore) -> Result<&'t VerifyingKey, RecordError> {
    if !trust.is_trusted(&ssi.provider) {
        return Err(RecordError::UntrustedProvider {
            provider: ssi.provider.to_string(),
        });
    }
    trust
        .key_for(&ssi.provider, &ssi.key_id)
        .ok_or_else(|| RecordError::UnknownKeyId {
            provider: ssi.provider.to_string(),
            key_id: hex::encode(ssi.key_id),
        })
}

/// Signature check of many records (trusted provider, known key id, signature), for
/// whole-zone checks. Chunks run in parallel with Ed25519 batch verification; a failing
/// chunk is re-checked record by record so each bad one is reported.
///
/// Batch verification uses the cofactored equation and the per-record fallback uses the
/// plain (non-strict) check, so this is slightly more permissive than `Ssi::verify`
/// (`verify_strict`) for deliberately malformed signatures; `verify_against` stays strict.
pub fn verify_batch(items: &[(&Name, &Ssi)], trust: &TrustStore) -> Vec<Result<(), RecordError>> {
    items
        .par_chunks(BATCH_CHUNK)
        .map(|chunk| verify_chunk(chunk, trust))
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect()
}

fn verify_chunk(chunk: &[(&Name, &Ssi)], trust: &TrustStore) -> Vec<Result<(), RecordError>> {
    let mut results: Vec<Result<(), RecordError>> = Vec::with_capacity(chunk.len());
    let mut pending = Vec::with_capacity(chunk.len());
    let mut messages = Vec::with_capacity(chunk.len());
    let mut signatures = Vec::with_capacity(chunk.len());
    let mut keys = Vec::with_capacity(chunk.len());
    for (i, (owner, ssi)) in chunk.iter().enumerate() {
        match lookup_key(ssi, trust) {
            Ok(key) => {
                pending.push(i);
                messages.push(ssi.signed_message(owner));
                signatures.push(Signature::from_bytes(&ssi.signature));
                keys.push(*key);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if pending.is_empty() {
        return results;
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    if ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_err() {
        for (j, &i) in pending.iter().enumerate() {
            if keys[j].verify(refs[j], &signatures[j]).is_err() {
                let (owner, ssi) = chunk[i];
                results[i] = Err(ssi.bad_signature(owner));
            }
        }
    }
    results
}

/// Writes a new secret file with mode 0600. Never overwrites: the file is written under a
/// temporary name and hard-linked into place, which fails if `path` exists.
pub fn write_secret_file_new(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| KeyError::Io { path: p, source }
    };
    let file_name = path.file_name().ok_or_else(|| KeyError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let tmp = dir.join(tmp_name);

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    // Report failures against the target: the temporary name means nothing to the user.
    let written = options.open(&tmp).map_err(io(path)).and_then(|mut f| {
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(io(path))
    });
    let linked = written.and_then(|()| {
        std::fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                KeyError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })
    });
    // The temporary copy holds the secret too: always remove it.
    let removed = std::fs::remove_file(&tmp);
    linked?;
    removed.map_err(io(&tmp))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T2026: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const T2027: u64 = 1_798_761_600; // 2027-01-01T00:00:00Z

    fn n(s: &str) -> Name {
        s.parse().unwrap()
    }

    fn owner() -> Name {
        n("2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.")
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn unsigned(provider: &str, user: &str) -> Ssi {
        Ssi {
            version: 1,
            context: Context::Personal,
            withdrawn: false,
            priority: 10,
            seq: 3,
            not_before: T2026,
            not_after: T2027,
            method: Method::SmsOtp,
            verified_at: T2026,
            provider: n(provider),
            uri: format!("mimi://{}/u/{user}", provider.trim_end_matches('.')),
            key_id: [0; 8],
            signature: [0; 64],
        }
    }

    fn signed(owner: &Name, k: &SigningKey) -> Ssi {
        let mut s = unsigned("signal.example.", "bob");
        s.sign(owner, k);
        s
    }

    /// Zone-file style tokenizing for tests: whitespace separated, quotes removed.
    fn tokens(line: &str) -> Vec<String> {
        line.split_whitespace()
            .map(|t| t.trim_matches('"').to_string())
            .collect()
    }

    fn parse_ssi(line: &str) -> Result<Ssi, RecordError> {
        let t = tokens(line);
        let refs: Vec<&str> = t.iter().map(String::as_str).collect();
        Ssi::parse_presentation(&refs)
    }

    fn trust_with(provider: &str, k: &SigningKey) -> TrustStore {
        let mut t = TrustStore::new();
        t.add(n(provider), k.verifying_key());
        t
    }

    #[test]
    fn wire_round_trip() {
        let s = signed(&owner(), &key(1));
        let wire = s.to_wire();
        assert_eq!(wire[0], 1);
        assert_eq!(wire[1], FLAG_PERSONAL);
        assert_eq!(&wire[2..4], &10u16.to_be_bytes());
        assert_eq!(Ssi::from_wire(&wire).unwrap(), s);
        assert_eq!(
            wire.len(),
            37 + s.provider.as_wire().len() + 1 + s.uri.len() + 8 + 64
        );
        let mut long = wire.clone();
        long.push(0);
        assert_eq!(
            Ssi::from_wire(&long),
            Err(RecordError::TrailingBytes {
                record: "SSI",
                count: 1
            })
        );
        assert!(matches!(
            Ssi::from_wire(&wire[..wire.len() - 1]),
            Err(RecordError::Truncated {
                field: "signature",
                ..
            })
        ));
        let mut v2 = wire.clone();
        v2[0] = 2;
        assert!(matches!(
            Ssi::from_wire(&v2),
            Err(RecordError::BadVersion { version: 2, .. })
        ));
        let mut fl = wire.clone();
        fl[1] = 0x41;
        assert!(matches!(
            Ssi::from_wire(&fl),
            Err(RecordError::UnknownFlags { bits: 0x40, .. })
        ));
        fl[1] = FLAG_WITHDRAWN;
        assert!(matches!(
            Ssi::from_wire(&fl),
            Err(RecordError::NoContext { .. })
        ));
        let mut m = wire.clone();
        m[28] = 9;
        assert_eq!(Ssi::from_wire(&m), Err(RecordError::UnknownMethodCode(9)));
        let mut upper = wire.clone();
        upper[37 + 1] = b'S';
        let e = Ssi::from_wire(&upper).unwrap_err();
        assert!(e.to_string().contains("lowercase"), "{e}");

        let ak = ApKey::new(&key(1).verifying_key(), T2026, T2027);
        let w = ak.to_wire();
        assert_eq!(w.len(), APKEY_RDATA_LEN);
        assert_eq!(ApKey::from_wire(&w).unwrap(), ak);
        assert_eq!(ak.key_id(), key_id(&key(1).verifying_key()));
        let mut bad_alg = w.clone();
        bad_alg[1] = 13;
        assert_eq!(
            ApKey::from_wire(&bad_alg),
            Err(RecordError::UnknownAlgorithmCode(13))
        );
    }

    #[test]
    fn presentation_round_trip() {
        let mut s = signed(&owner(), &key(1));
        let text = s.to_presentation();
        let sig = B64.encode(s.signature);
        assert_eq!(
            text,
            format!(
                "1 personal 10 3 2026-01-01T00:00:00Z 2027-01-01T00:00:00Z sms-otp \
                 2026-01-01T00:00:00Z signal.example. \"mimi://signal.example/u/bob\" {} {sig}",
                hex::encode(s.key_id)
            )
        );
        assert_eq!(parse_ssi(&text).unwrap(), s);

        // Unix seconds, other offsets, a signature split in two tokens.
        let alt = format!(
            "1 PERSONAL 10 3 {T2026} 2027-01-01T01:00:00+01:00 SMS-OTP {T2026} signal.example \
             mimi://signal.example/u/bob {} {} {}",
            hex::encode(s.key_id),
            &sig[..40],
            &sig[40..]
        );
        assert_eq!(parse_ssi(&alt).unwrap(), s);

        s.context = Context::Any;
        s.withdrawn = true;
        s.not_after = u64::MAX;
        let text = s.to_presentation();
        assert!(text.starts_with("1 any,withdrawn "), "{text}");
        assert!(text.contains(&u64::MAX.to_string()));
        assert_eq!(parse_ssi(&text).unwrap(), s);

        let ak = ApKey::new(&key(2).verifying_key(), T2026, T2027);
        let text = ak.to_presentation();
        assert_eq!(
            text,
            format!(
                "1 ed25519 2026-01-01T00:00:00Z 2027-01-01T00:00:00Z {}",
                B64.encode(ak.public_key)
            )
        );
        let t = tokens(&text);
        let refs: Vec<&str> = t.iter().map(String::as_str).collect();
        assert_eq!(ApKey::parse_presentation(&refs).unwrap(), ak);
    }

    #[test]
    fn presentation_errors() {
        let s = signed(&owner(), &key(1));
        let text = s.to_presentation();
        let err = |from: &str, to: &str| parse_ssi(&text.replacen(from, to, 1)).unwrap_err();
        assert_eq!(
            parse_ssi("1 personal 10"),
            Err(RecordError::FieldCount {
                record: "SSI",
                expected: 12,
                got: 3
            })
        );
        assert!(matches!(
            err("1 personal", "2 personal"),
            RecordError::BadVersion { version: 2, .. }
        ));
        assert!(matches!(
            err("personal", "private"),
            RecordError::BadFlagsWord { .. }
        ));
        assert!(matches!(
            err("personal", "personal,business"),
            RecordError::BadFlagsWord { .. }
        ));
        assert!(matches!(
            err("sms-otp", "carrier-pigeon"),
            RecordError::UnknownMethod(_)
        ));
        let e = err("2027-01-01T00:00:00Z", "2027-13-01T00:00:00Z");
        assert!(e.to_string().contains("2027-13-01T00:00:00Z"), "{e}");
        assert!(e.to_string().contains("not_after"), "{e}");
        assert!(matches!(
            err("2027-01-01T00:00:00Z", "2027-01-01T00:00:00.5Z"),
            RecordError::BadTime { .. }
        ));
        assert!(matches!(
            err("2027-01-01T00:00:00Z", "1969-01-01T00:00:00Z"),
            RecordError::BadTime { .. }
        ));
        assert!(matches!(
            err(&hex::encode(s.key_id), "zz"),
            RecordError::BadHex {
                field: "key id",
                ..
            }
        ));
        assert!(matches!(
            err(&hex::encode(s.key_id), "0011"),
            RecordError::BadLength {
                field: "key id",
                got: 2,
                ..
            }
        ));
        assert!(matches!(
            err(&B64.encode(s.signature), "!!!"),
            RecordError::BadBase64 {
                field: "signature",
                ..
            }
        ));
        assert!(matches!(
            err("signal.example.", "a..b."),
            RecordError::BadProvider { .. }
        ));
        assert!(matches!(
            err("10 3", "x 3"),
            RecordError::BadNumber {
                field: "priority",
                ..
            }
        ));
        let bad_uri = |uri: &str| {
            let mut t = tokens(&text);
            t[9] = uri.to_string();
            let refs: Vec<&str> = t.iter().map(String::as_str).collect();
            Ssi::parse_presentation(&refs).unwrap_err()
        };
        assert!(matches!(bad_uri("a b"), RecordError::BadUriText { .. }));
        assert!(matches!(bad_uri("a\"b"), RecordError::BadUriText { .. }));
        assert!(matches!(
            bad_uri(&"x".repeat(256)),
            RecordError::BadUriText { .. }
        ));
        assert!(matches!(
            ApKey::parse_presentation(&["1", "rsa", "0", "1", "AAAA"]),
            Err(RecordError::UnknownAlgorithm(_))
        ));
    }

    #[test]
    fn tombstone_flag_round_trip() {
        for context in [Context::Personal, Context::Business, Context::Any] {
            for withdrawn in [false, true] {
                let mut s = unsigned("signal.example.", "bob");
                s.context = context;
                s.withdrawn = withdrawn;
                s.sign(&owner(), &key(1));
                let back = Ssi::from_wire(&s.to_wire()).unwrap();
                assert_eq!((back.context, back.withdrawn), (context, withdrawn));
                assert_eq!(parse_ssi(&s.to_presentation()).unwrap(), s);
                back.verify(&owner(), &key(1).verifying_key()).unwrap();
            }
        }
        // The tombstone bit is signed.
        let mut s = signed(&owner(), &key(1));
        s.withdrawn = true;
        assert!(s.verify(&owner(), &key(1).verifying_key()).is_err());
    }

    #[test]
    fn enums_text() {
        for m in Method::ALL {
            assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
            assert_eq!(Method::from_code(m.code()), Some(m));
        }
        assert_eq!(
            Method::EnterpriseDirectory.to_string(),
            "enterprise-directory"
        );
        for c in [Context::Personal, Context::Business, Context::Any] {
            assert_eq!(c.to_string().parse::<Context>().unwrap(), c);
        }
        assert!("both".parse::<Context>().is_err());
        assert!(Context::Any.matches(Context::Business));
        assert!(Context::Personal.matches(Context::Any));
        assert!(!Context::Personal.matches(Context::Business));
    }

    #[test]
    fn every_flipped_bit_fails() {
        let k = key(7);
        let vk = k.verifying_key();
        let s = signed(&owner(), &k);
        let wire = s.to_wire();
        let mut decoded = 0;
        for bit in 0..wire.len() * 8 {
            let mut w = wire.clone();
            w[bit / 8] ^= 1 << (bit % 8);
            if let Ok(t) = Ssi::from_wire(&w) {
                decoded += 1;
                assert!(t.verify(&owner(), &vk).is_err(), "bit {bit} not detected");
            }
        }
        assert!(decoded > wire.len() * 4, "only {decoded} flips decoded");
    }

    #[test]
    fn moved_record_fails() {
        let k = key(1);
        let s = signed(&owner(), &k);
        s.verify(&owner(), &k.verifying_key()).unwrap();
        let other = n("3.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.");
        assert!(matches!(
            s.verify(&other, &k.verifying_key()),
            Err(RecordError::BadSignature { .. })
        ));
        assert!(matches!(
            s.verify(&owner(), &key(2).verifying_key()),
            Err(RecordError::KeyIdMismatch { .. })
        ));
        let msg = s.signed_message(&owner());
        assert!(msg.starts_with(SSI_SIGNING_PREFIX));
        assert_eq!(
            msg.len(),
            12 + owner().as_wire().len() + s.to_wire().len() - 64
        );
    }

    #[test]
    fn uri_host_rules() {
        let mut s = unsigned("signal.example.", "bob");
        assert_eq!(s.uri_host().unwrap(), n("signal.example."));
        s.check_provider().unwrap();
        for (uri, ok) in [
            ("MIMI://Signal.Example/u/bob", true),
            ("mimi://signal.example./u/bob", true),
            ("mimi://signal.example", false),
            ("mimi://signal.example/", false),
            ("https://signal.example/u/bob", false),
            ("mimi:signal.example/u/bob", false),
            ("mimi:///u/bob", false),
            ("mimi://bob@signal.example/u/bob", false),
            ("mimi://signal.example:443/u/bob", false),
            ("mimi://[::1]/u/bob", false),
            ("mimi://sig\\nal.example/u/bob", false),
            ("mimi://a..b/u/bob", false),
        ] {
            s.uri = uri.to_string();
            assert_eq!(s.uri_host().is_ok(), ok, "{uri}");
        }
        s.uri = "mimi://whatsapp.example/u/bob".into();
        assert_eq!(
            s.check_provider(),
            Err(RecordError::HostNotProvider {
                host: "whatsapp.example.".into(),
                provider: "signal.example.".into()
            })
        );
        assert!(s.is_valid_at(T2026) && s.is_valid_at(T2027));
        assert!(!s.is_valid_at(T2026 - 1) && !s.is_valid_at(T2027 + 1));
        assert_eq!(s.ttl_cap(T2027 - 60), 60);
        assert_eq!(s.ttl_cap(T2027 + 60), 0);
    }

    #[test]
    fn apkey_owner_name() {
        let o = apkey_owner(&n("signal.example."), &n("mimi.arpa.")).unwrap();
        assert_eq!(o, n("signal.example.ap.mimi.arpa."));
        let long = n(&format!(
            "{}.{}.{}.{}.",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(50)
        ));
        assert!(apkey_owner(&long, &n("mimi.arpa.")).is_err());
    }

    #[test]
    fn key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signal.key");
        let pk = ProviderKey::generate(n("signal.example."));
        pk.save_new(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# SECRET"), "{text}");
        assert!(text.contains("provider = \"signal.example\"\n"), "{text}");
        let back = ProviderKey::load(&path).unwrap();
        assert_eq!(back.provider, pk.provider);
        assert_eq!(back.signing.to_bytes(), pk.signing.to_bytes());
        assert_eq!(back.key_id(), key_id(&pk.verifying_key()));
        assert!(!format!("{back:?}").contains(&B64.encode(pk.signing.to_bytes())));

        // Refuses to overwrite, and leaves no temporary files behind.
        let other = ProviderKey::generate(n("other.example."));
        let e = other.save_new(&path).unwrap_err();
        assert!(matches!(e, KeyError::Exists { .. }), "{e}");
        assert!(e.to_string().contains("signal.key"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // A tampered public key is detected, naming the file and line.
        let forged = B64.encode(other.verifying_key().as_bytes());
        let tampered = text.replace(&B64.encode(pk.verifying_key().as_bytes()), &forged);
        let tpath = dir.path().join("tampered.key");
        std::fs::write(&tpath, &tampered).unwrap();
        let e = ProviderKey::load(&tpath).unwrap_err();
        assert!(
            matches!(
                e,
                KeyError::Mismatch {
                    field: "public_key",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("tampered.key:6"), "{e}");
        let e = ProviderKey::from_toml_str(
            &text.replace(&hex::encode(pk.key_id()), "0000000000000000"),
            "k",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                KeyError::Mismatch {
                    field: "key_id",
                    ..
                }
            ),
            "{e}"
        );
        let e =
            ProviderKey::from_toml_str("provider = \"x\"\nsecret_key = \"AA\"\n", "k").unwrap_err();
        assert!(e.to_string().starts_with("k:2: secret_key"), "{e}");
        let e = ProviderKey::load(dir.path().join("missing.key")).unwrap_err();
        assert!(e.to_string().contains("missing.key"), "{e}");
    }

    #[test]
    fn trust_file() {
        let k1 = key(1).verifying_key();
        let k2 = key(2).verifying_key();
        let text = format!(
            "# trusted app providers\n{}\n{}",
            trust_entry_toml(&n("signal.example."), &[k1, k2]),
            trust_entry_toml(&n("whatsapp.example."), &[k2])
        );
        assert!(text.contains("[[provider]]\ndomain = \"signal.example\"\nkeys = [\""));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.toml");
        std::fs::write(&path, &text).unwrap();
        let t = TrustStore::load(&path).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.key_for(&n("signal.example."), &key_id(&k2)), Some(&k2));
        assert_eq!(t.key_for(&n("whatsapp.example."), &key_id(&k1)), None);
        assert_eq!(t.keys(&n("signal.example.")).count(), 2);
        let names: Vec<String> = t.providers().map(|p| p.to_string()).collect();
        assert_eq!(names, ["signal.example.", "whatsapp.example."]);
        let again = TrustStore::from_toml_str(&t.to_toml(), "x").unwrap();
        assert_eq!(again.to_toml(), t.to_toml());

        let e = TrustStore::from_toml_str("[[provider]]\ndomain = \"a\"\nkeys = [\n", "t.toml")
            .unwrap_err();
        assert!(matches!(e, KeyError::Syntax { .. }), "{e}");
        assert!(e.to_string().starts_with("t.toml:"), "{e}");
        let e = TrustStore::from_toml_str(
            "[[provider]]\ndomain = \"a.example\"\nkeys = [\"AAAA\"]\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("t.toml:3: "), "{e}");
        assert!(e.to_string().contains("a.example"), "{e}");
        let e = TrustStore::from_toml_str("[[provider]]\ndomian = \"a\"\nkeys = []\n", "t.toml")
            .unwrap_err();
        assert!(e.to_string().contains("domian"), "{e}");
        let e = TrustStore::load(dir.path().join("nope.toml")).unwrap_err();
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }

    #[test]
    fn verify_against_each_reason() {
        let k = key(1);
        let o = owner();
        let trust = trust_with("signal.example.", &k);
        let s = signed(&o, &k);
        verify_against(&s, &o, &trust, T2026 + 10).unwrap();

        let mut other = unsigned("whatsapp.example.", "bob");
        other.sign(&o, &k);
        assert!(matches!(
            verify_against(&other, &o, &trust, T2026),
            Err(RecordError::UntrustedProvider { .. })
        ));
        let by_other_key = signed(&o, &key(2));
        assert!(matches!(
            verify_against(&by_other_key, &o, &trust, T2026),
            Err(RecordError::UnknownKeyId { .. })
        ));
        let mut host = unsigned("signal.example.", "bob");
        host.uri = "mimi://whatsapp.example/u/bob".into();
        host.sign(&o, &k);
        assert!(matches!(
            verify_against(&host, &o, &trust, T2026),
            Err(RecordError::HostNotProvider { .. })
        ));
        let mut forged = s.clone();
        forged.seq += 1;
        assert!(matches!(
            verify_against(&forged, &o, &trust, T2026),
            Err(RecordError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_against(&s, &n("other.e164.mimi.arpa."), &trust, T2026),
            Err(RecordError::BadSignature { .. })
        ));
        let e = verify_against(&s, &o, &trust, T2027 + 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expired: not_after 2027-01-01T00:00:00Z is before now (2027-01-01T00:00:01Z)"
        );
        let e = verify_against(&s, &o, &trust, T2026 - 1).unwrap_err();
        assert!(matches!(e, RecordError::NotYetValid { .. }), "{e}");
        let mut inverted = unsigned("signal.example.", "bob");
        inverted.not_before = T2027 + 5;
        inverted.sign(&o, &k);
        assert!(matches!(
            verify_against(&inverted, &o, &trust, T2027),
            Err(RecordError::BadWindow { .. })
        ));
    }

    #[test]
    fn verify_batch_finds_bad_ones() {
        let k1 = key(1);
        let k2 = key(2);
        let mut trust = trust_with("signal.example.", &k1);
        trust.add(n("whatsapp.example."), k2.verifying_key());
        let owners: Vec<Name> = (0..1000)
            .map(|i| n(&format!("{i}.e164.mimi.arpa.")))
            .collect();
        let mut records: Vec<Ssi> = owners
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let (p, k) = if i % 3 == 0 {
                    ("whatsapp.example.", &k2)
                } else {
                    ("signal.example.", &k1)
                };
                let mut s = unsigned(p, &format!("u{i}"));
                s.sign(o, k);
                s
            })
            .collect();
        let bad = [5usize, 6, 300, 301, 302, 999];
        records[5].signature[3] ^= 1;
        records[6].priority = 1;
        records[300].seq = 99;
        records[301].key_id = [9; 8];
        records[302].provider = n("untrusted.example.");
        records[999].signature[63] ^= 0x10;
        let items: Vec<(&Name, &Ssi)> = owners.iter().zip(records.iter()).collect();
        let results = verify_batch(&items, &trust);
        assert_eq!(results.len(), items.len());
        let failed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(failed, bad);
        assert!(matches!(
            results[301],
            Err(RecordError::UnknownKeyId { .. })
        ));
        assert!(matches!(
            results[302],
            Err(RecordError::UntrustedProvider { .. })
        ));
        assert!(matches!(results[5], Err(RecordError::BadSignature { .. })));
        assert!(verify_batch(&[], &trust).is_empty());
    }

    fn arb_ssi() -> impl Strategy<Value = Ssi> {
        (
            any::<u8>(),
            any::<bool>(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
            "[a-z0-9/_.-]{1,60}",
            any::<[u8; 8]>(),
        )
            .prop_map(|(c, withdrawn, priority, seq, t, path, key_id)| {
                let mut s = unsigned("signal.example.", "x");
                s.context = [Context::Personal, Context::Business, Context::Any][c as usize % 3];
                s.method = Method::ALL[c as usize % 6];
                s.withdrawn = withdrawn;
                s.priority = priority;
                s.seq = seq;
                s.not_before = t;
                s.uri = format!("mimi://signal.example/{path}");
                s.key_id = key_id;
                s.signature = [c; 64];
                s
            })
    }

    proptest! {
        #[test]
        fn from_wire_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(s) = Ssi::from_wire(&bytes) {
                prop_assert_eq!(s.to_wire(), bytes.clone());
                let _ = s.to_presentation();
            }
            if let Ok(a) = ApKey::from_wire(&bytes) {
                prop_assert_eq!(a.to_wire(), bytes);
            }
        }

        #[test]
        fn mutated_wire_never_panics(
            s in arb_ssi(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let mut w = s.to_wire();
            prop_assert_eq!(Ssi::from_wire(&w), Ok(s.clone()));
            prop_assert_eq!(parse_ssi(&s.to_presentation()), Ok(s.clone()));
            for (pos, b) in edits {
                let i = pos % w.len();
                w[i] = b;
            }
            if cut % 4 == 0 {
                w.truncate(cut % (w.len() + 1));
            }
            if let Ok(d) = Ssi::from_wire(&w) {
                prop_assert_eq!(d.to_wire(), w);
                let t = d.to_presentation();
                prop_assert_eq!(parse_ssi(&t), Ok(d));
            }
        }

        #[test]
        fn apkey_wire_never_panics(bytes in proptest::collection::vec(any::<u8>(), 50..51)) {
            let mut b = bytes;
            b[0] = 1;
            b[1] = ALG_ED25519;
            if let Ok(a) = ApKey::from_wire(&b) {
                prop_assert_eq!(a.to_wire(), b);
            }
        }
    }
}
