//! A zone's DNSSEC signing key: Ed25519 (algorithm 15, RFC 8080), its DNSKEY record, key
//! tag (RFC 4034 appendix B), DS record (SHA-256, RFC 4509) and key file.
//!
//! The key file is TOML, like the app providers' key files (`record::ProviderKey`), written
//! with mode 0600 under a temporary name and linked into place, never over an existing file.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::{ALG_ED25519, DIGEST_SHA256, FLAGS_CSK, FLAGS_ZSK};
use crate::name::Name;
use crate::record::{
    check_stored, invalid_at, line_of, load_key_file, syntax_error, toml_string,
    write_secret_file_new, KeyError,
};

/// DNSKEY protocol field: always 3 (RFC 4034 section 2.1.2).
const PROTOCOL: u8 = 3;

/// One signing key of one zone.
pub struct DnssecKey {
    pub zone: Name,
    /// DNSKEY flags: [`FLAGS_CSK`] (signs everything, the DS points at it) or [`FLAGS_ZSK`].
    pub flags: u16,
    signing: SigningKey,
}

impl std::fmt::Debug for DnssecKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnssecKey")
            .field("zone", &self.zone)
            .field("flags", &self.flags)
            .field("key_tag", &self.key_tag())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileToml {
    zone: Spanned<String>,
    algorithm: Spanned<String>,
    flags: Spanned<u16>,
    secret_key: Spanned<String>,
    public_key: Option<Spanned<String>>,
    key_tag: Option<Spanned<u16>>,
}

impl DnssecKey {
    /// A new key for `zone` with DNSKEY `flags`.
    pub fn generate(zone: Name, flags: u16) -> DnssecKey {
        DnssecKey {
            zone,
            flags,
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A key from its 32-byte secret (tests and reproducible set-ups).
    pub fn from_secret(zone: Name, flags: u16, secret: [u8; 32]) -> DnssecKey {
        DnssecKey {
            zone,
            flags,
            signing: SigningKey::from_bytes(&secret),
        }
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Ed25519 signature over `data`.
    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        self.signing.sign(data).to_bytes()
    }

    /// The DNSKEY RDATA: flags, protocol 3, algorithm 15, the 32-byte public key.
    pub fn dnskey_rdata(&self) -> Vec<u8> {
        dnskey_rdata(self.flags, self.public_key().as_bytes())
    }

    /// RFC 4034 appendix B over the DNSKEY RDATA.
    pub fn key_tag(&self) -> u16 {
        key_tag(&self.dnskey_rdata())
    }

    /// The DS RDATA the parent publishes for this key (SHA-256 digest).
    pub fn ds_rdata(&self) -> Vec<u8> {
        ds_rdata(&self.zone, &self.dnskey_rdata())
    }

    /// The key file's text.
    /// The key's DNSKEY and DS as zone-file lines (presentation format of RFC 4034
    /// sections 2.2 and 5.3): what `mimi key dnssec ds` prints, for the parent's zone file
    /// and a resolver's `trust_anchor`.
    pub fn records_text(&self) -> String {
        use base64::Engine as _;
        let dnskey = self.dnskey_rdata();
        format!(
            "{zone} IN DNSKEY {flags} 3 15 {public}\n{ds}\n",
            zone = self.zone,
            flags = self.flags,
            public = base64::engine::general_purpose::STANDARD.encode(&dnskey[4..]),
            ds = self.ds_line(),
        )
    }

    /// The DS line alone: what the parent publishes (`mimi zone ds --add`) and a resolver's
    /// `trust_anchor` takes.
    pub fn ds_line(&self) -> String {
        let ds = self.ds_rdata();
        format!(
            "{} IN DS {} 15 2 {}",
            self.zone,
            self.key_tag(),
            hex::encode_upper(&ds[4..])
        )
    }

    pub fn to_toml(&self) -> String {
        format!(
            "# SECRET: DNSSEC signing key of a MIMI discovery zone (Ed25519, algorithm 15).\n\
             # Keep private (mode 0600); publish only the DS (`mimi key dnssec ds`).\n\
             zone = {}\n\
             algorithm = \"ed25519\"\n\
             flags = {}\n\
             secret_key = \"{}\"\n\
             public_key = \"{}\"\n\
             key_tag = {}\n",
            toml_string(&self.zone.to_string()),
            self.flags,
            B64.encode(self.signing.to_bytes()),
            B64.encode(self.public_key().as_bytes()),
            self.key_tag(),
        )
    }

    /// Writes a new key file (mode 0600); never overwrites.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        write_secret_file_new(path, self.to_toml().as_bytes())
    }

    pub fn load(path: &Path) -> Result<DnssecKey, KeyError> {
        load_key_file(path, DnssecKey::from_toml_str)
    }

    /// Parses key-file text; `source` names it in errors (with the line).
    pub fn from_toml_str(text: &str, source: &str) -> Result<DnssecKey, KeyError> {
        let file: KeyFileToml = toml::from_str(text).map_err(|e| syntax_error(text, source, e))?;
        let invalid = |span: std::ops::Range<usize>, message: String| {
            invalid_at(text, source, span.start, message)
        };
        let zone: Name = file.zone.get_ref().parse().map_err(|e| {
            invalid(
                file.zone.span(),
                format!("zone {:?}: {e}", file.zone.get_ref()),
            )
        })?;
        if !file.algorithm.get_ref().eq_ignore_ascii_case("ed25519") {
            return Err(invalid(
                file.algorithm.span(),
                format!(
                    "algorithm {:?}: only \"ed25519\" (15) is supported",
                    file.algorithm.get_ref()
                ),
            ));
        }
        let flags = *file.flags.get_ref();
        if flags != FLAGS_CSK && flags != FLAGS_ZSK {
            return Err(invalid(
                file.flags.span(),
                format!("flags {flags}: must be {FLAGS_CSK} (KSK/CSK) or {FLAGS_ZSK} (ZSK)"),
            ));
        }
        let secret: [u8; 32] = B64
            .decode(file.secret_key.get_ref().trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                invalid(
                    file.secret_key.span(),
                    "secret_key: not 32 bytes of base64".into(),
                )
            })?;
        let key = DnssecKey::from_secret(zone, flags, secret);
        if let Some(public) = &file.public_key {
            let derived = B64.encode(key.public_key().as_bytes());
            check_stored(text, source, "public_key", public, derived)?;
        }
        if let Some(tag) = &file.key_tag {
            if *tag.get_ref() != key.key_tag() {
                return Err(KeyError::Mismatch {
                    file: source.to_string(),
                    line: Some(line_of(text, tag.span().start)),
                    field: "key_tag",
                    stored: tag.get_ref().to_string(),
                    derived: key.key_tag().to_string(),
                });
            }
        }
        Ok(key)
    }
}

/// DNSKEY RDATA for an Ed25519 public key.
pub fn dnskey_rdata(flags: u16, public: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(36);
    out.extend_from_slice(&flags.to_be_bytes());
    out.push(PROTOCOL);
    out.push(ALG_ED25519);
    out.extend_from_slice(public);
    out
}

/// RFC 4034 appendix B: the one's-complement-style sum of the RDATA as 16-bit words.
pub fn key_tag(dnskey_rdata: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for (i, &b) in dnskey_rdata.iter().enumerate() {
        acc += if i & 1 == 0 {
            u32::from(b) << 8
        } else {
            u32::from(b)
        };
    }
    acc += (acc >> 16) & 0xffff;
    (acc & 0xffff) as u16
}

/// DS RDATA (RFC 4034 section 5.1.4): key tag, algorithm, digest type 2, and SHA-256 of the
/// owner's canonical wire form followed by the DNSKEY RDATA.
pub fn ds_rdata(owner: &Name, dnskey_rdata: &[u8]) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(owner.as_wire());
    hash.update(dnskey_rdata);
    let algorithm = dnskey_rdata.get(3).copied().unwrap_or(0);
    let mut out = Vec::with_capacity(36);
    out.extend_from_slice(&key_tag(dnskey_rdata).to_be_bytes());
    out.push(algorithm);
    out.push(DIGEST_SHA256);
    out.extend_from_slice(&hash.finalize());
    out
}

/// The public key of an Ed25519 DNSKEY RDATA, with its flags.
pub fn parse_dnskey(rdata: &[u8]) -> Result<(u16, VerifyingKey), super::DnssecError> {
    if rdata.len() < 4 {
        return Err(super::DnssecError::malformed(
            "DNSKEY",
            format!("{} octets", rdata.len()),
        ));
    }
    if rdata[3] != ALG_ED25519 {
        return Err(super::DnssecError::Algorithm(rdata[3]));
    }
    let public: [u8; 32] = rdata[4..].try_into().map_err(|_| {
        super::DnssecError::malformed(
            "DNSKEY",
            format!("an Ed25519 key is 32 octets, not {}", rdata.len() - 4),
        )
    })?;
    let key = VerifyingKey::from_bytes(&public)
        .map_err(|_| super::DnssecError::malformed("DNSKEY", "not an Ed25519 point"))?;
    Ok((u16::from_be_bytes([rdata[0], rdata[1]]), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Name {
        Name::parse("example.com.", None).unwrap()
    }

    /// RFC 8080 section 6.1's first example: the private key, its DNSKEY, and DS.
    #[test]
    fn rfc_8080_example_key_and_ds() {
        let secret: [u8; 32] = B64
            .decode("ODIyNjAzODQ2MjgwODAxMjI2NDUxOTAyMDQxNDIyNjI=")
            .unwrap()
            .try_into()
            .unwrap();
        let key = DnssecKey::from_secret(zone(), FLAGS_CSK, secret);
        assert_eq!(
            B64.encode(key.public_key().as_bytes()),
            "l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4="
        );
        assert_eq!(key.key_tag(), 3613);
        assert_eq!(
            hex::encode(&key.ds_rdata()[4..]),
            "3aa5ab37efce57f737fc1627013fee07bdf241bd10f3b1964ab55c78e79a304b"
        );
        assert_eq!(key.ds_rdata()[2..4], [15, 2]);
    }

    #[test]
    fn key_files_round_trip_and_refuse_bad_fields_with_their_line() {
        let key = DnssecKey::generate(zone(), FLAGS_CSK);
        let text = key.to_toml();
        let back = DnssecKey::from_toml_str(&text, "k.toml").unwrap();
        assert_eq!(back.dnskey_rdata(), key.dnskey_rdata());
        for (from, to, line, what) in [
            ("flags = 257", "flags = 1", 5, "flags 1"),
            (
                "algorithm = \"ed25519\"",
                "algorithm = \"rsa\"",
                4,
                "only \"ed25519\"",
            ),
            ("secret_key = \"", "secret_key = \"AA", 6, "not 32 bytes"),
        ] {
            let bad = text.replace(from, to);
            let e = DnssecKey::from_toml_str(&bad, "k.toml")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("k.toml:{line}:")) && e.contains(what),
                "{e}"
            );
        }
        let tag = format!("key_tag = {}", key.key_tag());
        let bad = text.replace(&tag, &format!("key_tag = {}", key.key_tag() ^ 1));
        let e = DnssecKey::from_toml_str(&bad, "k.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_tag") && e.starts_with("k.toml:8:"), "{e}");
    }

    #[test]
    fn a_key_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zone.key");
        DnssecKey::generate(zone(), FLAGS_CSK)
            .save_new(&path)
            .unwrap();
        let first = std::fs::read(&path).unwrap();
        let e = DnssecKey::generate(zone(), FLAGS_CSK).save_new(&path);
        assert!(matches!(e, Err(KeyError::Exists { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(DnssecKey::load(&path).unwrap().flags, FLAGS_CSK);
    }
}
