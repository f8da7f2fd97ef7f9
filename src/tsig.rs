//! TSIG (RFC 8945) with HMAC-SHA256: message authentication for UPDATE, NOTIFY and zone
//! transfers, on raw message bytes so a server can check exactly what it received.
//!
//! Keys live in the BIND key-file format that nsupdate, knsupdate and kdig read:
//!
//! ```text
//! key "signal-example" {
//!     algorithm hmac-sha256;
//!     secret "base64...";
//! };
//! ```

use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::name::Name;

/// TSIG's RR type.
pub const TYPE_TSIG: u16 = 250;
const CLASS_ANY: u16 = 255;
/// Seconds of clock difference accepted (RFC 8945 section 10 recommends 300).
pub const FUDGE: u16 = 300;
/// RFC 8945 TSIG error codes.
pub const BADSIG: u16 = 16;
pub const BADKEY: u16 = 17;
pub const BADTIME: u16 = 18;

const ALGORITHM: &str = "hmac-sha256.";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Error)]
pub enum TsigError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Write(#[from] crate::record::KeyError),
    #[error("the message is too short or malformed for TSIG: {0}")]
    Malformed(&'static str),
    #[error("the answer is not signed, but the request was")]
    Unsigned,
    #[error("the answer's TSIG does not verify (key {key})")]
    BadResponse { key: String },
    #[error("the server says TSIG error {code} ({})", error_name(*.code))]
    ServerError { code: u16 },
}

fn error_name(code: u16) -> &'static str {
    match code {
        BADSIG => "BADSIG: the MAC did not verify",
        BADKEY => "BADKEY: the server does not know this key",
        BADTIME => "BADTIME: the clocks differ by more than the fudge",
        _ => "unknown",
    }
}

/// Why a signed request was not accepted; tells the server what to answer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TsigFailure {
    #[error("the request carries no TSIG record")]
    Missing,
    #[error("malformed TSIG: {0}")]
    Malformed(&'static str),
    #[error("TSIG key {0} is not known here (BADKEY)")]
    BadKey(Name),
    #[error("TSIG algorithm {0} is not supported (only hmac-sha256)")]
    BadAlgorithm(Name),
    #[error("the TSIG MAC does not verify under key {0} (BADSIG)")]
    BadSig(Name),
    #[error("the TSIG time {signed} is more than {fudge} s from the server's {now} (BADTIME)")]
    BadTime {
        key_index: usize,
        signed: u64,
        fudge: u16,
        now: u64,
        mac: Vec<u8>,
    },
}

/// A shared HMAC-SHA256 key and its name.
#[derive(Clone)]
pub struct TsigKey {
    pub name: Name,
    secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey").field("name", &self.name).finish_non_exhaustive()
    }
}

impl TsigKey {
    pub fn new(name: Name, secret: Vec<u8>) -> TsigKey {
        TsigKey {
            name,
            secret: Zeroizing::new(secret),
        }
    }

    /// A new key with 32 random bytes.
    pub fn generate(name: Name) -> TsigKey {
        TsigKey::new(name, rand::random::<[u8; 32]>().to_vec())
    }

    pub fn secret_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&*self.secret)
    }

    /// The key in the BIND key-file format.
    pub fn to_bind_text(&self) -> String {
        let name = self.name.to_string();
        format!(
            "key \"{}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
            name.trim_end_matches('.'),
            self.secret_base64()
        )
    }

    /// Writes the key to a new file (mode 0600); never overwrites.
    pub fn save_new(&self, path: &Path) -> Result<(), TsigError> {
        Ok(crate::record::write_secret_file_new(
            path,
            self.to_bind_text().as_bytes(),
        )?)
    }

    pub fn load(path: &Path) -> Result<TsigKey, TsigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TsigError::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_bind_text(&text, &file)
    }

    /// Parses the first `key` clause of a BIND key file (`#`, `//` and `/* */` comments).
    pub fn from_bind_text(text: &str, file: &str) -> Result<TsigKey, TsigError> {
        let tokens = tokenize(text);
        let err = |line: usize, message: String| TsigError::Syntax {
            file: file.to_string(),
            line,
            message,
        };
        let last_line = text.lines().count().max(1);
        let mut it = tokens.iter().peekable();
        let mut next = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| err(last_line, format!("the file ends where {what} was expected")))
        };
        let (kw, line) = next("`key`")?;
        if kw != "key" {
            return Err(err(line, format!("expected `key \"NAME\" {{`, found {kw:?}")));
        }
        let (name_text, line) = next("the key name")?;
        let name = Name::parse(&name_text, Some(&Name::root()))
            .map_err(|e| err(line, format!("key name {name_text:?}: {e}")))?;
        let (brace, line) = next("`{`")?;
        if brace != "{" {
            return Err(err(line, format!("expected `{{`, found {brace:?}")));
        }
        let mut algorithm = None;
        let mut secret = None;
        loop {
            let (word, line) = next("`algorithm`, `secret` or `}`")?;
            match word.as_str() {
                "}" => break,
                ";" => continue,
                "algorithm" => {
                    let (a, l) = next("the algorithm")?;
                    if !a.eq_ignore_ascii_case("hmac-sha256") {
                        return Err(err(l, format!("algorithm {a:?} is not supported: use hmac-sha256")));
                    }
                    algorithm = Some(a);
                }
                "secret" => {
                    let (b, l) = next("the secret")?;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b.as_bytes())
                        .map_err(|e| err(l, format!("secret is not base64: {e}")))?;
                    if bytes.len() < 16 {
                        return Err(err(l, format!("secret is {} bytes; use at least 16 (mimi key tsig generate makes 32)", bytes.len())));
                    }
                    secret = Some(bytes);
                }
                other => return Err(err(line, format!("unexpected {other:?} in the key clause"))),
            }
        }
        if algorithm.is_none() {
            return Err(err(last_line, "the key has no `algorithm hmac-sha256;`".into()));
        }
        let secret = secret.ok_or_else(|| err(last_line, "the key has no `secret`".into()))?;
        Ok(TsigKey::new(name, secret))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable_hmac())
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // new_from_slice only fails for fixed-size-key MACs, which HMAC is not.
    HmacSha256::new_from_slice(&[0u8; 32]).expect("HMAC takes any key length")
}

/// Words, quoted strings, braces and semicolons with their lines.
fn tokenize(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                    }
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '{' | '}' | ';' => out.push((c.to_string(), line)),
            '"' => {
                let mut s = String::new();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    if c == '\n' {
                        line += 1;
                    }
                    s.push(c);
                }
                out.push((s, line));
            }
            c => {
                let mut s = c.to_string();
                while chars
                    .peek()
                    .is_some_and(|&c| !c.is_whitespace() && !"{};\"#".contains(c))
                {
                    s.extend(chars.next());
                }
                out.push((s, line));
            }
        }
    }
    out
}

/// A bounds-checked reader over a DNS message, for finding the TSIG record.
struct Cursor<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.msg.get(self.pos..self.pos + 2).ok_or("truncated")?;
        self.pos += 2;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let b = self.msg.get(self.pos..self.pos + n).ok_or("truncated")?;
        self.pos += n;
        Ok(b)
    }
    /// Reads a possibly compressed name into lowercase wire form.
    fn name(&mut self) -> Result<Name, &'static str> {
        let mut wire = Vec::new();
        let mut pos = self.pos;
        let mut jumped = false;
        for _ in 0..128 {
            let len = *self.msg.get(pos).ok_or("truncated name")?;
            if len & 0xc0 == 0xc0 {
                let lo = *self.msg.get(pos + 1).ok_or("truncated pointer")?;
                if !jumped {
                    self.pos = pos + 2;
                }
                jumped = true;
                pos = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                continue;
            }
            if len & 0xc0 != 0 {
                return Err("bad label type");
            }
            let label = self
                .msg
                .get(pos..pos + 1 + len as usize)
                .ok_or("truncated label")?;
            wire.extend(label.iter().map(|b| b.to_ascii_lowercase()));
            pos += 1 + len as usize;
            if len == 0 {
                if !jumped {
                    self.pos = pos;
                }
                return Name::from_wire(&wire).map(|n| n.0).map_err(|_| "bad name");
            }
        }
        Err("name pointer loop")
    }
    fn skip_name(&mut self) -> Result<(), &'static str> {
        self.name().map(|_| ())
    }
}

/// A TSIG record as found at the end of a message.
struct Found {
    /// Where the TSIG RR starts: the MAC covers the message before it.
    start: usize,
    key: Name,
    algorithm: Name,
    time: u64,
    fudge: u16,
    mac: Vec<u8>,
    original_id: u16,
    error: u16,
    other: Vec<u8>,
}

/// Finds the TSIG RR, which must be the last additional record.
fn find(msg: &[u8]) -> Result<Option<Found>, &'static str> {
    let mut c = Cursor { msg, pos: 0 };
    let _id = c.u16()?;
    let _flags = c.u16()?;
    let qd = c.u16()?;
    let an = c.u16()?;
    let ns = c.u16()?;
    let ar = c.u16()?;
    for _ in 0..qd {
        c.skip_name()?;
        c.bytes(4)?;
    }
    let total = usize::from(an) + usize::from(ns) + usize::from(ar);
    for i in 0..total {
        let start = c.pos;
        let owner = c.name()?;
        let rtype = c.u16()?;
        let class = c.u16()?;
        let ttl = c.bytes(4)?;
        let rdlen = c.u16()? as usize;
        let rdata_end = c.pos + rdlen;
        if rtype != TYPE_TSIG {
            c.bytes(rdlen)?;
            continue;
        }
        if class != CLASS_ANY || ttl != [0; 4] {
            return Err("TSIG must have class ANY and TTL 0");
        }
        if i + 1 != total || ar == 0 {
            return Err("TSIG is not the last additional record");
        }
        let algorithm = c.name()?;
        let t = c.bytes(6)?;
        let time = t.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        let fudge = c.u16()?;
        let mac_len = c.u16()? as usize;
        let mac = c.bytes(mac_len)?.to_vec();
        let original_id = c.u16()?;
        let error = c.u16()?;
        let other_len = c.u16()? as usize;
        let other = c.bytes(other_len)?.to_vec();
        if c.pos != rdata_end || c.pos != msg.len() {
            return Err("TSIG RDATA length does not match");
        }
        return Ok(Some(Found {
            start,
            key: owner,
            algorithm,
            time,
            fudge,
            mac,
            original_id,
            error,
            other,
        }));
    }
    Ok(None)
}

/// The message as it was before the TSIG RR was added: ARCOUNT one less, the original ID.
fn unsigned_part(msg: &[u8], found: &Found) -> Vec<u8> {
    let mut m = msg[..found.start].to_vec();
    m[0..2].copy_from_slice(&found.original_id.to_be_bytes());
    let ar = u16::from_be_bytes([m[10], m[11]]).saturating_sub(1);
    m[10..12].copy_from_slice(&ar.to_be_bytes());
    m
}

/// TSIG variables (RFC 8945 section 4.3.3).
fn variables(key: &Name, time: u64, fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
    let mut v = key.as_wire().to_vec();
    v.extend_from_slice(&CLASS_ANY.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(algorithm_name().as_wire());
    v.extend_from_slice(&time.to_be_bytes()[2..]);
    v.extend_from_slice(&fudge.to_be_bytes());
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    v
}

fn algorithm_name() -> Name {
    Name::parse(ALGORITHM, None).unwrap_or_else(|_| Name::root())
}

/// Appends a TSIG RR and bumps ARCOUNT.
#[allow(clippy::too_many_arguments)]
fn append_rr(msg: &mut Vec<u8>, key: &Name, time: u64, fudge: u16, mac: &[u8], id: u16, error: u16, other: &[u8]) {
    let mut rdata = algorithm_name().as_wire().to_vec();
    rdata.extend_from_slice(&time.to_be_bytes()[2..]);
    rdata.extend_from_slice(&fudge.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&id.to_be_bytes());
    rdata.extend_from_slice(&error.to_be_bytes());
    rdata.extend_from_slice(&(other.len() as u16).to_be_bytes());
    rdata.extend_from_slice(other);
    msg.extend_from_slice(key.as_wire());
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    msg.extend_from_slice(&rdata);
    if msg.len() >= 12 {
        let ar = u16::from_be_bytes([msg[10], msg[11]]).saturating_add(1);
        msg[10..12].copy_from_slice(&ar.to_be_bytes());
    }
}

/// The MAC of a signed request, which its answer's MAC covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMac(pub Vec<u8>);

/// A request whose TSIG verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Which of the keys given signed it.
    pub key_index: usize,
    pub mac: RequestMac,
    pub time: u64,
}

/// Signs a request (UPDATE, NOTIFY, a transfer): appends the TSIG RR.
pub fn sign_request(msg: &mut Vec<u8>, key: &TsigKey, now: u64) -> Result<RequestMac, TsigError> {
    if msg.len() < 12 {
        return Err(TsigError::Malformed("shorter than a DNS header"));
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let mut h = key.mac();
    h.update(msg);
    h.update(&variables(&key.name, now, FUDGE, 0, &[]));
    let mac = h.finalize().into_bytes().to_vec();
    append_rr(msg, &key.name, now, FUDGE, &mac, id, 0, &[]);
    Ok(RequestMac(mac))
}

/// Checks a request's TSIG against `keys` at time `now`.
pub fn verify_request(msg: &[u8], keys: &[&TsigKey], now: u64) -> Result<Verified, TsigFailure> {
    let found = find(msg)
        .map_err(TsigFailure::Malformed)?
        .ok_or(TsigFailure::Missing)?;
    if found.algorithm != algorithm_name() {
        return Err(TsigFailure::BadAlgorithm(found.algorithm));
    }
    let Some(key_index) = keys.iter().position(|k| k.name == found.key) else {
        return Err(TsigFailure::BadKey(found.key));
    };
    let key = keys[key_index];
    let mut h = key.mac();
    h.update(&unsigned_part(msg, &found));
    h.update(&variables(&key.name, found.time, found.fudge, found.error, &found.other));
    // Truncated MACs (RFC 8945 section 5.2.2.1) are not accepted: full length only.
    if found.mac.len() != 32 || h.verify_slice(&found.mac).is_err() {
        return Err(TsigFailure::BadSig(found.key));
    }
    if now.abs_diff(found.time) > u64::from(found.fudge) {
        return Err(TsigFailure::BadTime {
            key_index,
            signed: found.time,
            fudge: found.fudge,
            now,
            mac: found.mac,
        });
    }
    Ok(Verified {
        key_index,
        mac: RequestMac(found.mac),
        time: found.time,
    })
}

/// Signs an answer to a verified request (RFC 8945 section 5.3).
pub fn sign_response(response: &mut Vec<u8>, key: &TsigKey, request: &Verified, now: u64, error: u16) -> Result<(), TsigError> {
    sign_answer(response, key, &request.mac.0, now, error, &[])
}

fn sign_answer(response: &mut Vec<u8>, key: &TsigKey, request_mac: &[u8], now: u64, error: u16, other: &[u8]) -> Result<(), TsigError> {
    if response.len() < 12 {
        return Err(TsigError::Malformed("shorter than a DNS header"));
    }
    let id = u16::from_be_bytes([response[0], response[1]]);
    let mut h = key.mac();
    h.update(&(request_mac.len() as u16).to_be_bytes());
    h.update(request_mac);
    h.update(response);
    h.update(&variables(&key.name, now, FUDGE, error, other));
    let mac = h.finalize().into_bytes().to_vec();
    append_rr(response, &key.name, now, FUDGE, &mac, id, error, other);
    Ok(())
}

/// The TSIG RR of a failure answer: unsigned with BADKEY or BADSIG, signed with the
/// server's time for BADTIME (RFC 8945 section 5.2).
pub fn append_error(response: &mut Vec<u8>, failure: &TsigFailure, keys: &[&TsigKey], now: u64) -> Result<(), TsigError> {
    if response.len() < 12 {
        return Err(TsigError::Malformed("shorter than a DNS header"));
    }
    let id = u16::from_be_bytes([response[0], response[1]]);
    match failure {
        TsigFailure::BadKey(name) => append_rr(response, name, now, FUDGE, &[], id, BADKEY, &[]),
        TsigFailure::BadSig(name) => append_rr(response, name, now, FUDGE, &[], id, BADSIG, &[]),
        TsigFailure::BadTime { key_index, mac, .. } => {
            let key = keys.get(*key_index).ok_or(TsigError::Malformed("no such key"))?;
            let other = now.to_be_bytes()[2..].to_vec();
            sign_answer(response, key, mac, now, BADTIME, &other)?;
        }
        _ => return Err(TsigError::Malformed("no TSIG record to answer")),
    }
    Ok(())
}

/// Checks the TSIG of an answer to a request signed with `key`.
pub fn verify_response(response: &[u8], key: &TsigKey, request: &RequestMac, now: u64) -> Result<(), TsigError> {
    let found = find(response)
        .map_err(TsigError::Malformed)?
        .ok_or(TsigError::Unsigned)?;
    if found.error != 0 && found.mac.is_empty() {
        return Err(TsigError::ServerError { code: found.error });
    }
    let mut h = key.mac();
    h.update(&(request.0.len() as u16).to_be_bytes());
    h.update(&request.0);
    h.update(&unsigned_part(response, &found));
    h.update(&variables(&found.key, found.time, found.fudge, found.error, &found.other));
    if found.key != key.name || h.verify_slice(&found.mac).is_err() {
        return Err(TsigError::BadResponse {
            key: key.name.to_string(),
        });
    }
    if found.error != 0 {
        return Err(TsigError::ServerError { code: found.error });
    }
    if now.abs_diff(found.time) > u64::from(found.fudge) {
        return Err(TsigError::ServerError { code: BADTIME });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> TsigKey {
        TsigKey::new(name.parse().unwrap(), vec![7u8; 32])
    }

    fn query() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x04test\x00\x00\x06\x00\x01");
        m
    }

    #[test]
    fn round_trip_and_response() {
        let k = key("k1.");
        let mut m = query();
        let rmac = sign_request(&mut m, &k, 1000).unwrap();
        let v = verify_request(&m, &[&key("other."), &k], 1001).unwrap();
        assert_eq!(v.key_index, 1);
        assert_eq!(v.mac, rmac);
        let mut resp = query();
        resp[2] |= 0x80;
        sign_response(&mut resp, &k, &v, 1002, 0).unwrap();
        verify_response(&resp, &k, &rmac, 1003).unwrap();
        // Another request's MAC does not verify the answer.
        assert!(verify_response(&resp, &k, &RequestMac(vec![0; 32]), 1003).is_err());
    }

    #[test]
    fn every_flipped_bit_fails() {
        let k = key("k1.");
        let mut m = query();
        sign_request(&mut m, &k, 1000).unwrap();
        // Bytes 0-1 are the message ID, which TSIG leaves out (the original ID is signed).
        for i in 2..m.len() {
            for bit in 0..8 {
                // Names compare case-insensitively: a letter's case bit is no change.
                if bit == 5 && m[i].is_ascii_alphabetic() {
                    continue;
                }
                let mut x = m.clone();
                x[i] ^= 1 << bit;
                assert!(verify_request(&x, &[&k], 1000).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn failures() {
        let k = key("k1.");
        let mut m = query();
        sign_request(&mut m, &k, 1000).unwrap();
        assert!(matches!(verify_request(&m, &[&key("k2.")], 1000), Err(TsigFailure::BadKey(_))));
        assert!(matches!(verify_request(&m, &[&TsigKey::new("k1.".parse().unwrap(), vec![1; 32])], 1000), Err(TsigFailure::BadSig(_))));
        assert!(matches!(verify_request(&m, &[&k], 2000), Err(TsigFailure::BadTime { .. })));
        assert!(matches!(verify_request(&query(), &[&k], 1000), Err(TsigFailure::Missing)));
    }

    #[test]
    fn key_files() {
        let k = TsigKey::generate("signal-example.".parse().unwrap());
        let back = TsigKey::from_bind_text(&k.to_bind_text(), "f").unwrap();
        assert_eq!(back.name, k.name);
        assert_eq!(back.secret_base64(), k.secret_base64());
        let text = "# comment\nkey \"a.\" {\n algorithm hmac-md5;\n secret \"AAAA\";\n};\n";
        let e = TsigKey::from_bind_text(text, "f.key").unwrap_err().to_string();
        assert!(e.starts_with("f.key:3:"), "{e}");
        let e = TsigKey::from_bind_text("key \"a.\" {\n algorithm hmac-sha256;\n", "f").unwrap_err().to_string();
        assert!(e.contains("ends"), "{e}");
    }

    #[test]
    fn hostile_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let k = key("k1.");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut signed = query();
        sign_request(&mut signed, &k, 1000).unwrap();
        for _ in 0..20_000 {
            let mut m = signed.clone();
            for _ in 0..rng.gen_range(1..6) {
                let i = rng.gen_range(0..m.len());
                m[i] = rng.gen();
            }
            m.truncate(rng.gen_range(0..=m.len()));
            let _ = verify_request(&m, &[&k], 1000);
            let _ = verify_response(&m, &k, &RequestMac(vec![1; 32]), 1000);
        }
    }
}
