//! TSIG (RFC 8945) with HMAC-SHA256, on raw DNS message bytes.
//!
//! Both sides work on the bytes as sent, not on parsed messages: a MAC covers the exact
//! octets, and re-encoding a parsed message (name compression, record order) would change
//! them. A server verifies `request.as_slice()` with [`verify_request`] and signs its encoded
//! answer with [`sign_response`] (or appends the TSIG an error answer needs with
//! [`TsigFailure::append_answer_tsig`]); a client signs the bytes it encoded with
//! [`sign_request`] and checks the answer with [`verify_response`]. Multi-message answers
//! (AXFR, IXFR) sign every message, chaining each MAC to the previous one (section 5.3.1).
//!
//! Key files are the BIND format that `nsupdate -k` reads
//! (`key "name" { algorithm hmac-sha256; secret "base64"; };`) or the one-line
//! `hmac-sha256:name:base64` form that Knot's `knsupdate -k` and `kdig -k` read.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::name::{Name, MAX_WIRE_LEN};
use crate::record::KeyError;

type HmacSha256 = Hmac<Sha256>;

/// RR type of TSIG.
pub const TYPE_TSIG: u16 = 250;
/// TSIG records have class ANY.
const CLASS_ANY: u16 = 255;
/// Allowed clock difference, seconds (RFC 8945 section 10 recommends 300).
pub const DEFAULT_FUDGE: u16 = 300;
/// Length of an HMAC-SHA256 MAC.
pub const MAC_LEN: usize = 32;
/// Shortest truncated MAC accepted at all: the larger of 10 and half the hash (5.2.2.1).
const MIN_MAC_LEN: usize = 16;
/// Largest DNS message (TCP length prefix).
pub const MAX_MESSAGE_LEN: usize = 65535;
/// Time Signed is a 48-bit field.
const MAX_TIME: u64 = (1 << 48) - 1;
const HEADER_LEN: usize = 12;

/// RCODE FORMERR.
pub const RCODE_FORMERR: u16 = 1;
/// RCODE NOTAUTH (RFC 8945 uses it for every TSIG failure).
pub const RCODE_NOTAUTH: u16 = 9;

/// TSIG error field values (RFC 8945 section 3).
pub mod error_code {
    pub const NOERROR: u16 = 0;
    pub const BADSIG: u16 = 16;
    pub const BADKEY: u16 = 17;
    pub const BADTIME: u16 = 18;
    pub const BADTRUNC: u16 = 22;
}

/// The mnemonic of a TSIG error value.
pub fn error_name(code: u16) -> String {
    match code {
        error_code::NOERROR => "NOERROR".into(),
        error_code::BADSIG => "BADSIG".into(),
        error_code::BADKEY => "BADKEY".into(),
        error_code::BADTIME => "BADTIME".into(),
        error_code::BADTRUNC => "BADTRUNC".into(),
        other => format!("TSIG error {other}"),
    }
}

/// A TSIG algorithm. Only HMAC-SHA256 is implemented; the others of RFC 8945 are named in
/// errors so a key file for them fails clearly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha256,
}

impl Algorithm {
    /// The name as key files and `-y` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
        }
    }

    /// The algorithm's domain name, as in the TSIG RR.
    pub fn name(self) -> Name {
        Name::from_wire_trusted(b"\x0bhmac-sha256\x00")
    }

    /// Parses an algorithm name (case-insensitive, trailing dot optional).
    pub fn parse(text: &str) -> Result<Algorithm, String> {
        let t = text.trim_end_matches('.').to_ascii_lowercase();
        match t.as_str() {
            "hmac-sha256" => Ok(Algorithm::HmacSha256),
            "hmac-md5"
            | "hmac-md5.sig-alg.reg.int"
            | "hmac-sha1"
            | "hmac-sha224"
            | "hmac-sha384"
            | "hmac-sha512"
            | "hmac-sha256-128"
            | "hmac-sha384-192"
            | "hmac-sha512-256"
            | "gss-tsig" => Err(format!(
                "TSIG algorithm {text} is not supported: only hmac-sha256 is"
            )),
            _ => Err(format!(
                "unknown TSIG algorithm {text:?}: only hmac-sha256 is supported"
            )),
        }
    }

    fn from_name(name: &Name) -> Option<Algorithm> {
        (*name == Algorithm::HmacSha256.name()).then_some(Algorithm::HmacSha256)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a key file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyFileFormat {
    /// `key "name" { algorithm hmac-sha256; secret "..."; };` (BIND, `nsupdate -k`).
    #[default]
    Bind,
    /// `hmac-sha256:name:secret` (Knot, `knsupdate -k`, `kdig -k`).
    Knot,
}

/// A shared TSIG key: its name (what the TSIG RR carries), algorithm and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: Name,
    pub algorithm: Algorithm,
    secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TsigKey {
    /// A key from its parts; the secret must not be empty.
    pub fn new(name: Name, algorithm: Algorithm, secret: Vec<u8>) -> Result<TsigKey, TsigError> {
        if secret.is_empty() {
            return Err(TsigError::EmptySecret);
        }
        Ok(TsigKey {
            name,
            algorithm,
            secret: Zeroizing::new(secret),
        })
    }

    /// A new HMAC-SHA256 key with a 32-byte random secret (the hash length, RFC 2104).
    pub fn generate(name: Name) -> TsigKey {
        let mut secret = Zeroizing::new(vec![0u8; MAC_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        TsigKey {
            name,
            algorithm: Algorithm::HmacSha256,
            secret,
        }
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    pub fn secret_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(&*self.secret))
    }

    /// The BIND key-file text (`nsupdate -k`, named.conf `include`).
    pub fn to_bind_text(&self) -> String {
        format!(
            "# SECRET: TSIG key (RFC 8945). Keep private (mode 0600).\n\
             key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            self.name,
            self.algorithm,
            &*self.secret_base64()
        )
    }

    /// The `ALG:NAME:SECRET` form of `-y` and of Knot's key files (`knsupdate -k`).
    pub fn to_knot_text(&self) -> String {
        format!(
            "{}:{}:{}\n",
            self.algorithm,
            self.name,
            &*self.secret_base64()
        )
    }

    pub fn to_text(&self, format: KeyFileFormat) -> String {
        match format {
            KeyFileFormat::Bind => self.to_bind_text(),
            KeyFileFormat::Knot => self.to_knot_text(),
        }
    }

    /// Reads a key file holding exactly one key (either format).
    pub fn load(path: impl AsRef<Path>) -> Result<TsigKey, KeyError> {
        let path = path.as_ref();
        let mut keys = TsigKey::load_all(path)?;
        let source = path.display().to_string();
        match keys.len() {
            1 => Ok(keys.remove(0)),
            0 => Err(KeyError::Invalid {
                file: source,
                line: None,
                message: "no TSIG key in the file".into(),
            }),
            n => Err(KeyError::Invalid {
                file: source,
                line: None,
                message: format!("{n} TSIG keys in the file; expected one"),
            }),
        }
    }

    /// Reads every key of a key file (a keyring for a server).
    pub fn load_all(path: impl AsRef<Path>) -> Result<Vec<TsigKey>, KeyError> {
        crate::record::load_key_file(path.as_ref(), TsigKey::parse_file_text)
    }

    /// Parses key-file text in either format; `source` names it in errors.
    pub fn parse_file_text(text: &str, source: &str) -> Result<Vec<TsigKey>, KeyError> {
        let tokens = tokenize(text, source)?;
        match tokens.first() {
            Some(t) if t.kind == Tok::Word && t.text.eq_ignore_ascii_case("key") => {
                parse_bind(&tokens, source)
            }
            Some(t) if t.kind == Tok::Word && t.text.contains(':') && tokens.len() == 1 => {
                parse_knot(&t.text, t.line, source).map(|k| vec![k])
            }
            Some(t) => Err(KeyError::Syntax {
                file: source.into(),
                line: Some(t.line),
                message: format!(
                    "expected `key \"NAME\" {{ algorithm hmac-sha256; secret \"BASE64\"; }};` \
                     or `hmac-sha256:NAME:BASE64`, found {:?}",
                    t.text
                ),
            }),
            None => Ok(Vec::new()),
        }
    }

    /// Writes a new key file, mode 0600. Never overwrites: the text goes to a temporary
    /// name and is hard-linked into place, which fails if `path` exists.
    pub fn save_new(&self, path: impl AsRef<Path>, format: KeyFileFormat) -> Result<(), KeyError> {
        crate::record::write_secret_file_new(path.as_ref(), self.to_text(format).as_bytes())
    }

    fn hmac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; this cannot fail.
        <HmacSha256 as hmac::Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
    }
}

// ---------------------------------------------------------------------------------------
// Key-file syntax

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Word,
    Str,
    Punct,
}

#[derive(Debug)]
struct Token {
    kind: Tok,
    text: String,
    line: usize,
}

/// Splits key-file text into words, quoted strings and `{ } ;`, dropping `#`, `//` and
/// `/* */` comments (named.conf syntax).
fn tokenize(text: &str, source: &str) -> Result<Vec<Token>, KeyError> {
    let b = text.as_bytes();
    let (mut i, mut line) = (0usize, 1usize);
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = line;
                i += 2;
                loop {
                    match b.get(i) {
                        None => {
                            return Err(KeyError::Syntax {
                                file: source.into(),
                                line: Some(start),
                                message: "unterminated /* comment".into(),
                            })
                        }
                        Some(b'*') if b.get(i + 1) == Some(&b'/') => {
                            i += 2;
                            break;
                        }
                        Some(b'\n') => {
                            line += 1;
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'{' | b'}' | b';' => {
                out.push(Token {
                    kind: Tok::Punct,
                    text: (c as char).to_string(),
                    line,
                });
                i += 1;
            }
            b'"' => {
                let start = line;
                i += 1;
                let from = i;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err(KeyError::Syntax {
                        file: source.into(),
                        line: Some(start),
                        message: "unterminated quoted string".into(),
                    });
                }
                out.push(Token {
                    kind: Tok::Str,
                    text: text[from..i].to_string(),
                    line: start,
                });
                i += 1;
            }
            _ => {
                let from = i;
                while i < b.len()
                    && !b[i].is_ascii_whitespace()
                    && !matches!(b[i], b'{' | b'}' | b';' | b'"' | b'#')
                {
                    i += 1;
                }
                out.push(Token {
                    kind: Tok::Word,
                    text: text[from..i].to_string(),
                    line,
                });
            }
        }
    }
    Ok(out)
}

fn parse_bind<'t>(tokens: &'t [Token], source: &str) -> Result<Vec<TsigKey>, KeyError> {
    let syntax = |line: usize, message: String| KeyError::Syntax {
        file: source.into(),
        line: Some(line),
        message,
    };
    let invalid = |line: usize, message: String| KeyError::Invalid {
        file: source.into(),
        line: Some(line),
        message,
    };
    let last_line = tokens.last().map_or(1, |t| t.line);
    let mut it = tokens.iter().peekable();
    fn next_token<'t>(
        it: &mut std::iter::Peekable<std::slice::Iter<'t, Token>>,
        what: &str,
        source: &str,
        last_line: usize,
    ) -> Result<&'t Token, KeyError> {
        it.next().ok_or_else(|| KeyError::Syntax {
            file: source.into(),
            line: Some(last_line),
            message: format!("unexpected end of file: expected {what}"),
        })
    }
    let expect = |what: &str, it: &mut std::iter::Peekable<std::slice::Iter<'t, Token>>| {
        next_token(it, what, source, last_line)
    };
    let mut keys = Vec::new();
    while it.peek().is_some() {
        let kw = expect("`key`", &mut it)?;
        if !(kw.kind == Tok::Word && kw.text.eq_ignore_ascii_case("key")) {
            return Err(syntax(
                kw.line,
                format!("expected `key`, found {:?}", kw.text),
            ));
        }
        let name_tok = expect("the key name", &mut it)?;
        if name_tok.kind == Tok::Punct {
            return Err(syntax(name_tok.line, "expected the key name".into()));
        }
        let name = Name::parse(&name_tok.text, Some(&Name::root()))
            .map_err(|e| invalid(name_tok.line, format!("key name {:?}: {e}", name_tok.text)))?;
        let open = expect("`{`", &mut it)?;
        if open.text != "{" || open.kind != Tok::Punct {
            return Err(syntax(
                open.line,
                format!("expected `{{`, found {:?}", open.text),
            ));
        }
        let (mut algorithm, mut secret) = (None, None);
        loop {
            let t = expect("`algorithm`, `secret` or `}`", &mut it)?;
            if t.kind == Tok::Punct && t.text == "}" {
                break;
            }
            let word = t.text.to_ascii_lowercase();
            if t.kind != Tok::Word || !(word == "algorithm" || word == "secret") {
                return Err(syntax(
                    t.line,
                    format!("expected `algorithm`, `secret` or `}}`, found {:?}", t.text),
                ));
            }
            let value = expect("a value", &mut it)?;
            if value.kind == Tok::Punct {
                return Err(syntax(value.line, format!("expected a value after {word}")));
            }
            let semi = expect("`;`", &mut it)?;
            if semi.text != ";" || semi.kind != Tok::Punct {
                return Err(syntax(
                    semi.line,
                    format!("expected `;`, found {:?}", semi.text),
                ));
            }
            let slot = if word == "algorithm" {
                &mut algorithm
            } else {
                &mut secret
            };
            if slot.is_some() {
                return Err(syntax(t.line, format!("{word} given twice")));
            }
            *slot = Some(value);
        }
        let semi = expect("`;` after `}`", &mut it)?;
        if semi.text != ";" || semi.kind != Tok::Punct {
            return Err(syntax(
                semi.line,
                format!("expected `;` after `}}`, found {:?}", semi.text),
            ));
        }
        let alg_tok =
            algorithm.ok_or_else(|| invalid(name_tok.line, format!("key {name}: no algorithm")))?;
        let algorithm = Algorithm::parse(&alg_tok.text).map_err(|e| invalid(alg_tok.line, e))?;
        let secret_tok =
            secret.ok_or_else(|| invalid(name_tok.line, format!("key {name}: no secret")))?;
        let secret = decode_secret(&secret_tok.text).map_err(|e| invalid(secret_tok.line, e))?;
        keys.push(TsigKey {
            name,
            algorithm,
            secret,
        });
    }
    Ok(keys)
}

fn parse_knot(text: &str, line: usize, source: &str) -> Result<TsigKey, KeyError> {
    let invalid = |message: String| KeyError::Invalid {
        file: source.into(),
        line: Some(line),
        message,
    };
    let parts: Vec<&str> = text.split(':').collect();
    let (alg, name, secret) = match parts.as_slice() {
        [name, secret] => (Algorithm::HmacSha256, *name, *secret),
        [alg, name, secret] => (Algorithm::parse(alg).map_err(invalid)?, *name, *secret),
        _ => return Err(invalid("expected [ALGORITHM:]NAME:BASE64".into())),
    };
    let name = Name::parse(name, Some(&Name::root()))
        .map_err(|e| invalid(format!("key name {name:?}: {e}")))?;
    Ok(TsigKey {
        name,
        algorithm: alg,
        secret: decode_secret(secret).map_err(invalid)?,
    })
}

fn decode_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    // BIND allows the base64 to be split by whitespace inside the quotes.
    let compact: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    let secret = Zeroizing::new(
        B64.decode(compact.as_bytes())
            .map_err(|e| format!("secret is not base64: {e}"))?,
    );
    if secret.is_empty() {
        return Err("secret is empty".into());
    }
    Ok(secret)
}

// ---------------------------------------------------------------------------------------
// Errors

/// Why signing failed, or why a response's TSIG was not accepted (the client side).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TsigError {
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    #[error("the TSIG secret is empty")]
    EmptySecret,
    #[error("key {0} is not in the keyring given")]
    NoSuchKey(usize),
    #[error("the message would exceed 65535 bytes with its TSIG record")]
    TooLong,
    #[error("the response is not signed (no TSIG record), but the request was")]
    Unsigned,
    #[error("the response is signed with key {got}, not {expected}")]
    WrongKey { expected: Name, got: Name },
    #[error("the response is signed with algorithm {0}, not hmac-sha256")]
    WrongAlgorithm(Name),
    #[error("the response's TSIG original ID {got} is not the request's {expected}")]
    WrongId { expected: u16, got: u16 },
    #[error("the response's TSIG MAC has {0} bytes; expected {MAC_LEN}")]
    MacLength(usize),
    #[error("the response's TSIG MAC does not verify (wrong secret, or the answer was altered)")]
    BadSignature,
    #[error(
        "the response was signed at {signed}, more than {fudge} s from our time {now}: \
         check the clocks"
    )]
    BadTime { signed: u64, now: u64, fudge: u16 },
    #[error("the server refused our TSIG: BADKEY (it does not know key {key} with hmac-sha256)")]
    ServerBadKey { key: Name },
    #[error("the server refused our TSIG: BADSIG (the secret of key {key} differs)")]
    ServerBadSig { key: Name },
    #[error(
        "the server refused our TSIG: BADTIME (its clock says {server_time}, we signed at \
         {signed}): check the clocks"
    )]
    ServerBadTime { server_time: u64, signed: u64 },
    #[error("the server refused our TSIG: {}", error_name(*.0))]
    ServerError(u16),
}

/// Why a request's TSIG was not accepted, and so what the server must answer
/// (RFC 8945 section 5.2). [`TsigFailure::rcode`] and [`TsigFailure::append_answer_tsig`]
/// give the answer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TsigFailure {
    /// No TSIG record: the server's policy decides (an UPDATE is refused).
    #[error("the request is not signed (no TSIG record)")]
    Unsigned,
    /// The TSIG record cannot be interpreted or is misplaced: FORMERR, no TSIG.
    #[error("malformed TSIG: {0}")]
    FormErr(String),
    /// Unknown key or algorithm: NOTAUTH, TSIG error BADKEY, unsigned.
    #[error("unknown TSIG key {key_name} ({algorithm})")]
    BadKey {
        key_name: Name,
        algorithm: Name,
        original_id: u16,
    },
    /// The MAC does not verify: NOTAUTH, TSIG error BADSIG, unsigned.
    #[error("TSIG MAC of key {key_name} does not verify")]
    BadSig {
        key_name: Name,
        algorithm: Name,
        original_id: u16,
    },
    /// The MAC verifies but the time is outside the fudge: NOTAUTH, BADTIME, signed, with
    /// the server's time in other data.
    #[error(
        "TSIG of key {key_name} signed at {time_signed}, more than {fudge} s from now ({now})"
    )]
    BadTime {
        key: usize,
        key_name: Name,
        request_mac: TsigMac,
        time_signed: u64,
        fudge: u16,
        now: u64,
    },
    /// The MAC verifies but is truncated below our policy (the full length): NOTAUTH,
    /// BADTRUNC, signed.
    #[error("TSIG of key {key_name} has a truncated MAC ({len} bytes)")]
    BadTrunc {
        key: usize,
        key_name: Name,
        request_mac: TsigMac,
        len: usize,
    },
}

impl TsigFailure {
    /// The RCODE of the answer; None when the request was simply unsigned.
    pub fn rcode(&self) -> Option<u16> {
        match self {
            TsigFailure::Unsigned => None,
            TsigFailure::FormErr(_) => Some(RCODE_FORMERR),
            _ => Some(RCODE_NOTAUTH),
        }
    }

    /// The TSIG error of the answer's TSIG record, when it gets one.
    pub fn tsig_error(&self) -> Option<u16> {
        match self {
            TsigFailure::Unsigned | TsigFailure::FormErr(_) => None,
            TsigFailure::BadKey { .. } => Some(error_code::BADKEY),
            TsigFailure::BadSig { .. } => Some(error_code::BADSIG),
            TsigFailure::BadTime { .. } => Some(error_code::BADTIME),
            TsigFailure::BadTrunc { .. } => Some(error_code::BADTRUNC),
        }
    }

    /// Appends the TSIG record the error answer needs to `response` (already encoded with
    /// [`TsigFailure::rcode`]): unsigned for BADKEY and BADSIG, signed with the request's
    /// key for BADTIME and BADTRUNC, nothing for FORMERR and unsigned requests.
    pub fn append_answer_tsig(
        &self,
        response: &mut Vec<u8>,
        keys: &[TsigKey],
        now: u64,
    ) -> Result<(), TsigError> {
        match self {
            TsigFailure::Unsigned | TsigFailure::FormErr(_) => Ok(()),
            TsigFailure::BadKey {
                key_name,
                algorithm,
                ..
            } => append_unsigned_error(response, key_name, algorithm, now, error_code::BADKEY),
            TsigFailure::BadSig {
                key_name,
                algorithm,
                ..
            } => append_unsigned_error(response, key_name, algorithm, now, error_code::BADSIG),
            TsigFailure::BadTime {
                key, request_mac, ..
            } => {
                let key = keys.get(*key).ok_or(TsigError::NoSuchKey(*key))?;
                sign_response(response, key, request_mac, now, error_code::BADTIME).map(|_| ())
            }
            TsigFailure::BadTrunc {
                key, request_mac, ..
            } => {
                let key = keys.get(*key).ok_or(TsigError::NoSuchKey(*key))?;
                sign_response(response, key, request_mac, now, error_code::BADTRUNC).map(|_| ())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Wire

/// A MAC and what a reply to it must carry: the MAC of a request (or of the previous
/// message of a multi-message answer), which the next MAC covers.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigMac {
    pub mac: Vec<u8>,
    pub original_id: u16,
    pub time_signed: u64,
}

impl fmt::Debug for TsigMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigMac")
            .field("mac", &hex::encode(&self.mac))
            .field("original_id", &self.original_id)
            .field("time_signed", &self.time_signed)
            .finish()
    }
}

/// The MAC of a signed request, as [`sign_request`] returns it.
pub type RequestMac = TsigMac;

/// A TSIG record found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigRecord {
    /// Offset of the record in the message: the unsigned message is the bytes before it.
    pub start: usize,
    pub key_name: Name,
    pub algorithm: Name,
    pub time_signed: u64,
    pub fudge: u16,
    pub mac: Vec<u8>,
    pub original_id: u16,
    pub error: u16,
    pub other: Vec<u8>,
}

/// A request whose TSIG verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Index of the key in the keyring given to [`verify_request`].
    pub key: usize,
    pub key_name: Name,
    /// What [`sign_response`] needs.
    pub request_mac: TsigMac,
    pub time_signed: u64,
    /// Offset of the TSIG record: the message without it is `msg[..tsig_start]` with
    /// ARCOUNT one less.
    pub tsig_start: usize,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn malformed(what: &str) -> TsigError {
    TsigError::Malformed(what.to_string())
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], TsigError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| TsigError::Malformed(format!("truncated in {what}")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self, what: &str) -> Result<u16, TsigError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, TsigError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u48(&mut self, what: &str) -> Result<u64, TsigError> {
        let b = self.take(6, what)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// Reads a name, following compression pointers (backwards only, so no loops), as a
    /// lowercase uncompressed name.
    fn name(&mut self, what: &str) -> Result<Name, TsigError> {
        let bad = || TsigError::Malformed(format!("bad name in {what}"));
        let mut wire = Vec::with_capacity(32);
        let mut pos = self.pos;
        let mut resume = None;
        let mut limit = pos;
        loop {
            let len = *self.buf.get(pos).ok_or_else(bad)? as usize;
            match len {
                0 => {
                    wire.push(0);
                    pos += 1;
                    break;
                }
                1..=63 => {
                    let label = self.buf.get(pos + 1..pos + 1 + len).ok_or_else(bad)?;
                    wire.push(len as u8);
                    wire.extend(label.iter().map(u8::to_ascii_lowercase));
                    if wire.len() >= MAX_WIRE_LEN {
                        return Err(bad());
                    }
                    pos += 1 + len;
                }
                0xC0..=0xFF => {
                    let lo = *self.buf.get(pos + 1).ok_or_else(bad)? as usize;
                    let target = ((len & 0x3F) << 8) | lo;
                    // Strictly backwards from where this name began: terminates.
                    if target >= limit {
                        return Err(bad());
                    }
                    if resume.is_none() {
                        resume = Some(pos + 2);
                    }
                    limit = target;
                    pos = target;
                }
                _ => return Err(bad()),
            }
        }
        self.pos = resume.unwrap_or(pos);
        Name::from_wire(&wire).map(|(n, _)| n).map_err(|_| bad())
    }

    fn skip_record(&mut self, what: &str) -> Result<u16, TsigError> {
        self.name(what)?;
        let rtype = self.u16(what)?;
        self.take(6, what)?;
        let rdlen = self.u16(what)? as usize;
        self.take(rdlen, what)?;
        Ok(rtype)
    }
}

fn header_counts(msg: &[u8]) -> Result<[u16; 4], TsigError> {
    if msg.len() < HEADER_LEN {
        return Err(malformed("shorter than a DNS header"));
    }
    let c = |i: usize| u16::from_be_bytes([msg[4 + 2 * i], msg[5 + 2 * i]]);
    Ok([c(0), c(1), c(2), c(3)])
}

/// Finds the TSIG record of a message. It must be the last additional record and the
/// only one; anything else is malformed (RFC 8945 section 5.1).
pub fn find_tsig(msg: &[u8]) -> Result<Option<TsigRecord>, TsigError> {
    let [qd, an, ns, ar] = header_counts(msg)?;
    let mut r = Reader {
        buf: msg,
        pos: HEADER_LEN,
    };
    for _ in 0..qd {
        r.name("question")?;
        r.take(4, "question")?;
    }
    for _ in 0..(u32::from(an) + u32::from(ns)) {
        if r.skip_record("answer/authority record")? == TYPE_TSIG {
            return Err(malformed("TSIG record outside the additional section"));
        }
    }
    let mut found = None;
    for i in 0..ar {
        let start = r.pos;
        let key_name = r.name("additional record")?;
        let rtype = r.u16("additional record")?;
        if rtype != TYPE_TSIG {
            r.take(6, "additional record")?;
            let rdlen = r.u16("additional record")? as usize;
            r.take(rdlen, "additional record")?;
            continue;
        }
        if i + 1 != ar {
            return Err(malformed("TSIG is not the last additional record"));
        }
        let class = r.u16("TSIG")?;
        let ttl = r.u32("TSIG")?;
        if class != CLASS_ANY || ttl != 0 {
            return Err(malformed(
                "TSIG record with a class other than ANY or TTL not 0",
            ));
        }
        let rdlen = r.u16("TSIG")? as usize;
        let rdata_start = r.pos;
        r.take(rdlen, "TSIG RDATA")?;
        let rdata_end = r.pos;
        // The fields are read from the whole message (the algorithm name may point
        // backwards) and must end exactly where RDLENGTH says.
        let mut d = Reader {
            buf: msg,
            pos: rdata_start,
        };
        let algorithm = d.name("TSIG algorithm")?;
        let time_signed = d.u48("TSIG time signed")?;
        let fudge = d.u16("TSIG fudge")?;
        let mac_len = d.u16("TSIG MAC size")? as usize;
        let mac = d.take(mac_len, "TSIG MAC")?.to_vec();
        let original_id = d.u16("TSIG original ID")?;
        let error = d.u16("TSIG error")?;
        let other_len = d.u16("TSIG other length")? as usize;
        let other = d.take(other_len, "TSIG other data")?.to_vec();
        if d.pos != rdata_end {
            return Err(malformed("TSIG RDATA length does not match its fields"));
        }
        found = Some(TsigRecord {
            start,
            key_name,
            algorithm,
            time_signed,
            fudge,
            mac,
            original_id,
            error,
            other,
        });
    }
    if r.pos != msg.len() {
        return Err(malformed("bytes after the last record"));
    }
    Ok(found)
}

/// The message without its TSIG record, as it was before signing: ARCOUNT one less and
/// the original ID restored. Unsigned messages are returned as they are.
pub fn unsigned_message(msg: &[u8]) -> Result<Vec<u8>, TsigError> {
    match find_tsig(msg)? {
        None => Ok(msg.to_vec()),
        Some(t) => {
            let mut out = msg[..t.start].to_vec();
            restore_header(&mut out, t.original_id);
            Ok(out)
        }
    }
}

fn restore_header(header: &mut [u8], original_id: u16) {
    header[..2].copy_from_slice(&original_id.to_be_bytes());
    let ar = u16::from_be_bytes([header[10], header[11]]).wrapping_sub(1);
    header[10..12].copy_from_slice(&ar.to_be_bytes());
}

fn u48_bytes(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Feeds the signed message to the MAC: its header with the original ID and the ARCOUNT
/// it had before the TSIG was added, and the rest up to the TSIG record.
fn feed_message(mac: &mut HmacSha256, msg: &[u8], tsig_start: usize, original_id: u16) {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&msg[..HEADER_LEN]);
    restore_header(&mut header, original_id);
    mac.update(&header);
    mac.update(&msg[HEADER_LEN..tsig_start]);
}

/// The TSIG variables of RFC 8945 section 4.3.3, names in canonical (lowercase,
/// uncompressed) form.
fn feed_variables(
    mac: &mut HmacSha256,
    key_name: &Name,
    algorithm: &Name,
    time_signed: u64,
    fudge: u16,
    error: u16,
    other: &[u8],
) {
    mac.update(key_name.as_wire());
    mac.update(&CLASS_ANY.to_be_bytes());
    mac.update(&0u32.to_be_bytes());
    mac.update(algorithm.as_wire());
    mac.update(&u48_bytes(time_signed));
    mac.update(&fudge.to_be_bytes());
    mac.update(&error.to_be_bytes());
    mac.update(&(other.len() as u16).to_be_bytes());
    mac.update(other);
}

fn feed_prior(mac: &mut HmacSha256, prior: &[u8]) {
    mac.update(&(prior.len() as u16).to_be_bytes());
    mac.update(prior);
}

struct TsigFields<'a> {
    key_name: &'a Name,
    algorithm: &'a Name,
    time_signed: u64,
    fudge: u16,
    mac: &'a [u8],
    original_id: u16,
    error: u16,
    other: &'a [u8],
}

/// Appends a TSIG record and counts it in ARCOUNT.
fn append_tsig(msg: &mut Vec<u8>, f: &TsigFields<'_>) -> Result<(), TsigError> {
    let [_, _, _, ar] = header_counts(msg)?;
    let ar = ar
        .checked_add(1)
        .ok_or_else(|| malformed("ARCOUNT is full"))?;
    let rdlen = f.algorithm.as_wire().len() + 6 + 2 + 2 + f.mac.len() + 2 + 2 + 2 + f.other.len();
    let total = msg.len() + f.key_name.as_wire().len() + 10 + rdlen;
    if total > MAX_MESSAGE_LEN {
        return Err(TsigError::TooLong);
    }
    msg.reserve(total - msg.len());
    msg.extend_from_slice(f.key_name.as_wire());
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend_from_slice(&(rdlen as u16).to_be_bytes());
    msg.extend_from_slice(f.algorithm.as_wire());
    msg.extend_from_slice(&u48_bytes(f.time_signed));
    msg.extend_from_slice(&f.fudge.to_be_bytes());
    msg.extend_from_slice(&(f.mac.len() as u16).to_be_bytes());
    msg.extend_from_slice(f.mac);
    msg.extend_from_slice(&f.original_id.to_be_bytes());
    msg.extend_from_slice(&f.error.to_be_bytes());
    msg.extend_from_slice(&(f.other.len() as u16).to_be_bytes());
    msg.extend_from_slice(f.other);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
    Ok(())
}

fn message_id(msg: &[u8]) -> Result<u16, TsigError> {
    header_counts(msg)?;
    Ok(u16::from_be_bytes([msg[0], msg[1]]))
}

fn check_time(now: u64) -> Result<(), TsigError> {
    if now > MAX_TIME {
        return Err(malformed("time does not fit the 48-bit Time Signed field"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Client side

/// Signs a request: appends the TSIG record (fudge 300, original ID = the message ID,
/// error 0, no other data) and bumps ARCOUNT. Returns the MAC the response must cover.
pub fn sign_request(msg: &mut Vec<u8>, key: &TsigKey, now: u64) -> Result<TsigMac, TsigError> {
    check_time(now)?;
    let id = message_id(msg)?;
    let algorithm = key.algorithm.name();
    let mut mac = key.hmac();
    mac.update(msg);
    feed_variables(
        &mut mac,
        &key.name,
        &algorithm,
        now,
        DEFAULT_FUDGE,
        error_code::NOERROR,
        &[],
    );
    let tag = mac.finalize().into_bytes().to_vec();
    append_tsig(
        msg,
        &TsigFields {
            key_name: &key.name,
            algorithm: &algorithm,
            time_signed: now,
            fudge: DEFAULT_FUDGE,
            mac: &tag,
            original_id: id,
            error: error_code::NOERROR,
            other: &[],
        },
    )?;
    Ok(TsigMac {
        mac: tag,
        original_id: id,
        time_signed: now,
    })
}

/// Checks the TSIG of a response to a request signed with [`sign_request`] (RFC 8945
/// section 5.3: the request's MAC is covered). Returns the response's MAC, which the next
/// message of a multi-message answer covers ([`verify_response_continuation`]).
///
/// Fails when the response is unsigned, signed with another key, altered, outside the
/// fudge, or carries a TSIG error (BADKEY, BADSIG: unsigned; BADTIME: signed, with the
/// server's clock).
pub fn verify_response(
    response: &[u8],
    key: &TsigKey,
    request: &TsigMac,
    now: u64,
) -> Result<TsigMac, TsigError> {
    verify_reply(response, key, &request.mac, request.original_id, now, false)
}

/// Checks the TSIG of a later message of a multi-message answer (RFC 8945 section 5.3.1),
/// chained to the previous message's MAC. Every message must be signed.
pub fn verify_response_continuation(
    msg: &[u8],
    key: &TsigKey,
    previous: &TsigMac,
    now: u64,
) -> Result<TsigMac, TsigError> {
    verify_reply(msg, key, &previous.mac, previous.original_id, now, true)
}

fn verify_reply(
    msg: &[u8],
    key: &TsigKey,
    prior: &[u8],
    original_id: u16,
    now: u64,
    continuation: bool,
) -> Result<TsigMac, TsigError> {
    let t = find_tsig(msg)?.ok_or(TsigError::Unsigned)?;
    if t.key_name != key.name {
        return Err(TsigError::WrongKey {
            expected: key.name.clone(),
            got: t.key_name,
        });
    }
    if Algorithm::from_name(&t.algorithm) != Some(key.algorithm) {
        return Err(TsigError::WrongAlgorithm(t.algorithm));
    }
    if t.original_id != original_id {
        return Err(TsigError::WrongId {
            expected: original_id,
            got: t.original_id,
        });
    }
    // BADKEY and BADSIG answers are unsigned: nothing to verify, report the error.
    if t.mac.is_empty() {
        return Err(match t.error {
            error_code::BADKEY => TsigError::ServerBadKey {
                key: key.name.clone(),
            },
            error_code::BADSIG => TsigError::ServerBadSig {
                key: key.name.clone(),
            },
            error_code::NOERROR => TsigError::MacLength(0),
            e => TsigError::ServerError(e),
        });
    }
    if t.mac.len() != MAC_LEN {
        return Err(TsigError::MacLength(t.mac.len()));
    }
    let mut mac = key.hmac();
    feed_prior(&mut mac, prior);
    feed_message(&mut mac, msg, t.start, t.original_id);
    if continuation {
        mac.update(&u48_bytes(t.time_signed));
        mac.update(&t.fudge.to_be_bytes());
    } else {
        feed_variables(
            &mut mac,
            &t.key_name,
            &t.algorithm,
            t.time_signed,
            t.fudge,
            t.error,
            &t.other,
        );
    }
    // Constant-time comparison.
    mac.verify_slice(&t.mac)
        .map_err(|_| TsigError::BadSignature)?;
    match t.error {
        error_code::NOERROR => {}
        error_code::BADTIME => {
            let server_time = match t.other.as_slice() {
                [a, b, c, d, e, f] => [a, b, c, d, e, f]
                    .iter()
                    .fold(0u64, |acc, &&x| (acc << 8) | u64::from(x)),
                _ => 0,
            };
            return Err(TsigError::ServerBadTime {
                server_time,
                signed: t.time_signed,
            });
        }
        error_code::BADKEY => {
            return Err(TsigError::ServerBadKey {
                key: key.name.clone(),
            })
        }
        error_code::BADSIG => {
            return Err(TsigError::ServerBadSig {
                key: key.name.clone(),
            })
        }
        e => return Err(TsigError::ServerError(e)),
    }
    if now.abs_diff(t.time_signed) > u64::from(t.fudge) {
        return Err(TsigError::BadTime {
            signed: t.time_signed,
            now,
            fudge: t.fudge,
        });
    }
    Ok(TsigMac {
        mac: t.mac,
        original_id: t.original_id,
        time_signed: t.time_signed,
    })
}

// ---------------------------------------------------------------------------------------
// Server side

/// Verifies a request's TSIG against a keyring (RFC 8945 section 5.2: format, key, MAC,
/// then time). On failure, [`TsigFailure`] says what to answer.
pub fn verify_request(msg: &[u8], keys: &[TsigKey], now: u64) -> Result<Verified, TsigFailure> {
    let t = match find_tsig(msg) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(TsigFailure::Unsigned),
        Err(e) => return Err(TsigFailure::FormErr(e.to_string())),
    };
    let bad_key = || TsigFailure::BadKey {
        key_name: t.key_name.clone(),
        algorithm: t.algorithm.clone(),
        original_id: t.original_id,
    };
    let Some(index) = keys.iter().position(|k| k.name == t.key_name) else {
        return Err(bad_key());
    };
    let key = &keys[index];
    if Algorithm::from_name(&t.algorithm) != Some(key.algorithm) {
        return Err(bad_key());
    }
    // 5.2.2.1: longer than the hash, or shorter than half of it, cannot be a valid MAC.
    if t.mac.len() > MAC_LEN || t.mac.len() < MIN_MAC_LEN {
        return Err(TsigFailure::FormErr(format!(
            "TSIG MAC of {} bytes (hmac-sha256 gives {MAC_LEN})",
            t.mac.len()
        )));
    }
    let mut mac = key.hmac();
    feed_message(&mut mac, msg, t.start, t.original_id);
    feed_variables(
        &mut mac,
        &t.key_name,
        &t.algorithm,
        t.time_signed,
        t.fudge,
        t.error,
        &t.other,
    );
    // Constant-time comparison (of the leading bytes, for a truncated MAC).
    let ok = if t.mac.len() == MAC_LEN {
        mac.verify_slice(&t.mac).is_ok()
    } else {
        mac.verify_truncated_left(&t.mac).is_ok()
    };
    if !ok {
        return Err(TsigFailure::BadSig {
            key_name: t.key_name,
            algorithm: t.algorithm,
            original_id: t.original_id,
        });
    }
    let request_mac = TsigMac {
        mac: t.mac,
        original_id: t.original_id,
        time_signed: t.time_signed,
    };
    // RFC 8945 order: the MAC (with the truncation policy, 5.2.2.1), then the time.
    if request_mac.mac.len() < MAC_LEN {
        let len = request_mac.mac.len();
        return Err(TsigFailure::BadTrunc {
            key: index,
            key_name: t.key_name,
            request_mac,
            len,
        });
    }
    if now.abs_diff(t.time_signed) > u64::from(t.fudge) {
        return Err(TsigFailure::BadTime {
            key: index,
            key_name: t.key_name,
            request_mac,
            time_signed: t.time_signed,
            fudge: t.fudge,
            now,
        });
    }
    Ok(Verified {
        key: index,
        key_name: t.key_name,
        request_mac,
        time_signed: t.time_signed,
        tsig_start: t.start,
    })
}

/// Signs a response (or the first message of a multi-message answer) to a verified
/// request; `error` is the TSIG error field (0, or BADTIME/BADTRUNC for a signed error
/// answer). For BADTIME, Time Signed is the request's and other data holds our time, so
/// the client can check the answer against its own clock and learn ours (as BIND does).
/// Returns this message's MAC, for [`sign_response_continuation`].
pub fn sign_response(
    response: &mut Vec<u8>,
    key: &TsigKey,
    request: &TsigMac,
    now: u64,
    error: u16,
) -> Result<TsigMac, TsigError> {
    check_time(now)?;
    let id = message_id(response)?;
    let algorithm = key.algorithm.name();
    let (time_signed, other) = if error == error_code::BADTIME {
        (request.time_signed, u48_bytes(now).to_vec())
    } else {
        (now, Vec::new())
    };
    let mut mac = key.hmac();
    feed_prior(&mut mac, &request.mac);
    mac.update(response);
    feed_variables(
        &mut mac,
        &key.name,
        &algorithm,
        time_signed,
        DEFAULT_FUDGE,
        error,
        &other,
    );
    let tag = mac.finalize().into_bytes().to_vec();
    append_tsig(
        response,
        &TsigFields {
            key_name: &key.name,
            algorithm: &algorithm,
            time_signed,
            fudge: DEFAULT_FUDGE,
            mac: &tag,
            original_id: id,
            error,
            other: &other,
        },
    )?;
    Ok(TsigMac {
        mac: tag,
        original_id: id,
        time_signed,
    })
}

/// Signs a later message of a multi-message answer (AXFR, IXFR), chained to the previous
/// message's MAC: prior MAC, this message, and only the timers (RFC 8945 section 5.3.1).
pub fn sign_response_continuation(
    msg: &mut Vec<u8>,
    key: &TsigKey,
    previous: &TsigMac,
    now: u64,
) -> Result<TsigMac, TsigError> {
    check_time(now)?;
    let id = message_id(msg)?;
    let algorithm = key.algorithm.name();
    let mut mac = key.hmac();
    feed_prior(&mut mac, &previous.mac);
    mac.update(msg);
    mac.update(&u48_bytes(now));
    mac.update(&DEFAULT_FUDGE.to_be_bytes());
    let tag = mac.finalize().into_bytes().to_vec();
    append_tsig(
        msg,
        &TsigFields {
            key_name: &key.name,
            algorithm: &algorithm,
            time_signed: now,
            fudge: DEFAULT_FUDGE,
            mac: &tag,
            original_id: id,
            error: error_code::NOERROR,
            other: &[],
        },
    )?;
    Ok(TsigMac {
        mac: tag,
        original_id: id,
        time_signed: now,
    })
}

/// Appends the unsigned TSIG record of a BADKEY or BADSIG answer (MAC size 0; key and
/// algorithm names as the request gave them).
pub fn append_unsigned_error(
    response: &mut Vec<u8>,
    key_name: &Name,
    algorithm: &Name,
    now: u64,
    error: u16,
) -> Result<(), TsigError> {
    check_time(now)?;
    let id = message_id(response)?;
    append_tsig(
        response,
        &TsigFields {
            key_name,
            algorithm,
            time_signed: now,
            fudge: DEFAULT_FUDGE,
            mac: &[],
            original_id: id,
            error,
            other: &[],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_780_000_000;

    fn n(s: &str) -> Name {
        s.parse().unwrap()
    }

    fn key(name: &str, secret: &[u8]) -> TsigKey {
        TsigKey::new(n(name), Algorithm::HmacSha256, secret.to_vec()).unwrap()
    }

    /// A query for `example.` A with an OPT record, as hickory encodes it.
    fn query(id: u16) -> Vec<u8> {
        use hickory_proto::op::{Edns, Message, Query};
        use hickory_proto::rr::{Name as HName, RecordType};
        let mut m = Message::query();
        m.metadata.id = id;
        m.add_query(Query::query(
            HName::from_ascii("www.example.").unwrap(),
            RecordType::A,
        ));
        m.set_edns(Edns::new());
        m.to_vec().unwrap()
    }

    fn response_to(query: &[u8]) -> Vec<u8> {
        let mut r = unsigned_message(query).unwrap();
        r[2] |= 0x80; // QR
        r
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let k = key("ap1.example.", b"0123456789abcdef0123456789abcdef");
        let mut q = query(0x1234);
        let plain = q.clone();
        let req = sign_request(&mut q, &k, NOW).unwrap();
        assert_eq!(unsigned_message(&q).unwrap(), plain);
        let keys = [key("other.", b"x"), k.clone()];
        let v = verify_request(&q, &keys, NOW + 10).unwrap();
        assert_eq!(v.key, 1);
        assert_eq!(v.request_mac, req);
        assert_eq!(v.tsig_start, plain.len());
        // hickory reads the TSIG too.
        let parsed = hickory_proto::op::Message::from_vec(&q).unwrap();
        assert!(parsed
            .additionals
            .iter()
            .any(|r| u16::from(r.record_type()) == TYPE_TSIG));

        let mut resp = response_to(&plain);
        let rmac = sign_response(&mut resp, &k, &v.request_mac, NOW + 11, 0).unwrap();
        let got = verify_response(&resp, &k, &req, NOW + 12).unwrap();
        assert_eq!(got, rmac);

        // A second message of the answer, chained.
        let mut next = response_to(&plain);
        let m2 = sign_response_continuation(&mut next, &k, &rmac, NOW + 13).unwrap();
        assert_eq!(
            verify_response_continuation(&next, &k, &rmac, NOW + 13).unwrap(),
            m2
        );
        // Out of order fails.
        assert_eq!(
            verify_response_continuation(&next, &k, &req, NOW + 13),
            Err(TsigError::BadSignature)
        );
    }

    #[test]
    fn a_flipped_bit_anywhere_fails() {
        let k = key("ap1.example.", b"secret-secret-secret");
        let mut q = query(7);
        sign_request(&mut q, &k, NOW).unwrap();
        // Bytes 0-1, the message ID, are not covered: the MAC uses the original ID of the
        // TSIG record, so a forwarder may change the header's (RFC 8945 section 4.3.2).
        // Key and algorithm names are compared case-insensitively (canonical form in the
        // MAC), so a letter's case bit there is not a change.
        let t = find_tsig(&q).unwrap().unwrap();
        let key_end = t.start + k.name.as_wire().len();
        let alg = key_end + 10..key_end + 10 + t.algorithm.as_wire().len();
        let in_names = |i: usize| (t.start..key_end).contains(&i) || alg.contains(&i);
        for byte in 2..q.len() {
            for bit in 0..8 {
                if bit == 5 && in_names(byte) && q[byte].is_ascii_alphabetic() {
                    let mut m = q.clone();
                    m[byte] ^= 1 << bit;
                    assert!(verify_request(&m, std::slice::from_ref(&k), NOW).is_ok());
                    continue;
                }
                let mut m = q.clone();
                m[byte] ^= 1 << bit;
                assert!(
                    verify_request(&m, std::slice::from_ref(&k), NOW).is_err(),
                    "bit {bit} of byte {byte} flipped still verifies"
                );
            }
        }
        // And in a response.
        let v = verify_request(&q, std::slice::from_ref(&k), NOW).unwrap();
        let mut resp = response_to(&q);
        sign_response(&mut resp, &k, &v.request_mac, NOW, 0).unwrap();
        for byte in 2..resp.len() {
            let mut m = resp.clone();
            m[byte] ^= 0x10;
            assert!(
                verify_response(&m, &k, &v.request_mac, NOW).is_err(),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn unknown_key_is_badkey_and_answered_unsigned() {
        let k = key("ap1.example.", b"secret");
        let mut q = query(9);
        let req = sign_request(&mut q, &k, NOW).unwrap();
        let ring = [key("ap2.example.", b"secret")];
        let f = verify_request(&q, &ring, NOW).unwrap_err();
        assert!(matches!(f, TsigFailure::BadKey { .. }), "{f:?}");
        assert_eq!(f.rcode(), Some(RCODE_NOTAUTH));
        assert_eq!(f.tsig_error(), Some(error_code::BADKEY));
        let mut resp = response_to(&q);
        f.append_answer_tsig(&mut resp, &ring, NOW).unwrap();
        let t = find_tsig(&resp).unwrap().unwrap();
        assert!(t.mac.is_empty());
        assert_eq!(t.key_name, n("ap1.example."));
        assert_eq!(
            verify_response(&resp, &k, &req, NOW),
            Err(TsigError::ServerBadKey {
                key: n("ap1.example.")
            })
        );
    }

    #[test]
    fn wrong_secret_is_badsig() {
        let mut q = query(9);
        sign_request(&mut q, &key("ap1.example.", b"one"), NOW).unwrap();
        let ring = [key("AP1.Example.", b"two")];
        let f = verify_request(&q, &ring, NOW).unwrap_err();
        assert!(matches!(f, TsigFailure::BadSig { .. }), "{f:?}");
        assert_eq!(f.tsig_error(), Some(error_code::BADSIG));
    }

    #[test]
    fn wrong_time_is_badtime_answered_signed_with_our_clock() {
        let k = key("ap1.example.", b"secret");
        let mut q = query(9);
        let req = sign_request(&mut q, &k, NOW).unwrap();
        let ring = [k.clone()];
        assert!(verify_request(&q, &ring, NOW + 300).is_ok());
        assert!(verify_request(&q, &ring, NOW - 300).is_ok());
        let f = verify_request(&q, &ring, NOW + 301).unwrap_err();
        assert!(matches!(f, TsigFailure::BadTime { .. }), "{f:?}");
        let mut resp = response_to(&q);
        f.append_answer_tsig(&mut resp, &ring, NOW + 301).unwrap();
        // The client checks the answer against its own clock, and learns the server's.
        assert_eq!(
            verify_response(&resp, &k, &req, NOW),
            Err(TsigError::ServerBadTime {
                server_time: NOW + 301,
                signed: NOW
            })
        );
        // A response from the past fails on the client.
        let v = verify_request(&q, &ring, NOW).unwrap();
        let mut resp = response_to(&q);
        sign_response(&mut resp, &k, &v.request_mac, NOW, 0).unwrap();
        assert!(matches!(
            verify_response(&resp, &k, &req, NOW + 1000),
            Err(TsigError::BadTime { .. })
        ));
    }

    #[test]
    fn unsigned_and_misplaced_tsig() {
        let q = query(1);
        assert_eq!(
            verify_request(&q, &[key("a.", b"s")], NOW),
            Err(TsigFailure::Unsigned)
        );
        let k = key("a.", b"s");
        let mut q2 = query(1);
        let req = sign_request(&mut q2, &k, NOW).unwrap();
        // An unsigned response to a signed request.
        assert_eq!(
            verify_response(&response_to(&q), &k, &req, NOW),
            Err(TsigError::Unsigned)
        );
        // Two TSIGs: the first is not last.
        let mut twice = q2.clone();
        sign_request(&mut twice, &k, NOW).unwrap();
        let f = verify_request(&twice, std::slice::from_ref(&k), NOW).unwrap_err();
        assert!(matches!(f, TsigFailure::FormErr(_)), "{f:?}");
        assert_eq!(f.rcode(), Some(RCODE_FORMERR));
        // Trailing bytes.
        let mut trailing = q2.clone();
        trailing.push(0);
        assert!(matches!(
            verify_request(&trailing, std::slice::from_ref(&k), NOW),
            Err(TsigFailure::FormErr(_))
        ));
    }

    #[test]
    fn truncated_mac_is_badtrunc_or_formerr() {
        let k = key("a.", b"s");
        let mut q = query(3);
        sign_request(&mut q, &k, NOW).unwrap();
        let t = find_tsig(&q).unwrap().unwrap();
        let rebuild = |len: usize| {
            let mut m = q[..t.start].to_vec();
            restore_header(&mut m, t.original_id);
            append_tsig(
                &mut m,
                &TsigFields {
                    key_name: &t.key_name,
                    algorithm: &t.algorithm,
                    time_signed: t.time_signed,
                    fudge: t.fudge,
                    mac: &t.mac[..len],
                    original_id: t.original_id,
                    error: 0,
                    other: &[],
                },
            )
            .unwrap();
            m
        };
        let ring = [k];
        assert!(matches!(
            verify_request(&rebuild(20), &ring, NOW),
            Err(TsigFailure::BadTrunc { len: 20, .. })
        ));
        assert!(matches!(
            verify_request(&rebuild(8), &ring, NOW),
            Err(TsigFailure::FormErr(_))
        ));
    }

    #[test]
    fn compressed_tsig_names_are_read() {
        // A TSIG whose key name points at the question name: legal to parse.
        let k = key("www.example.", b"s");
        let mut q = query(5);
        sign_request(&mut q, &k, NOW).unwrap();
        let t = find_tsig(&q).unwrap().unwrap();
        let mut m = q[..t.start].to_vec();
        m.extend_from_slice(&[0xC0, 12]);
        m.extend_from_slice(&q[t.start + k.name.as_wire().len()..]);
        let v = verify_request(&m, &[k], NOW).unwrap();
        assert_eq!(v.key_name, n("www.example."));
    }

    #[test]
    fn key_files_parse_and_round_trip() {
        let k = TsigKey::generate(n("ap1.chat.example."));
        for format in [KeyFileFormat::Bind, KeyFileFormat::Knot] {
            let text = k.to_text(format);
            let back = TsigKey::parse_file_text(&text, "k").unwrap();
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].name, k.name);
            assert_eq!(back[0].secret(), k.secret());
        }
        let text = "// a comment\n/* block\ncomment */ key ap2.example {\n  algorithm HMAC-SHA256.;\n  # why\n  secret \"c2Vj cmV0\";\n};\nkey \"b.\" { secret \"AAAA\"; algorithm hmac-sha256; };\n";
        let keys = TsigKey::parse_file_text(text, "ring").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].secret(), b"secret");
        assert_eq!(keys[0].name, n("ap2.example."));
        let err = |t: &str| {
            TsigKey::parse_file_text(t, "f.key")
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("key \"a.\" {\n algorithm hmac-md5;\n secret \"AAAA\";\n};\n")
                .starts_with("f.key:2: TSIG algorithm hmac-md5 is not supported"),
            "{}",
            err("key \"a.\" {\n algorithm hmac-md5;\n secret \"AAAA\";\n};\n")
        );
        assert!(
            err("key \"a.\" {\n algorithm hmac-sha256;\n secret \"!!\";\n};\n")
                .starts_with("f.key:3: secret is not base64")
        );
        assert!(err("key \"a.\" {\n algorithm hmac-sha256;\n};\n").contains("no secret"));
        assert!(
            err("key \"a.\" {\n algorithm hmac-sha256\n secret \"AAAA\";\n};\n")
                .starts_with("f.key:3: expected `;`")
        );
        assert!(err("server 1.2.3.4;\n").starts_with("f.key:1:"));
        assert!(err("key \"a.\" {\n algorithm hmac-sha256;\n").contains("end of file"));
    }

    #[test]
    fn save_new_never_overwrites_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ap.key");
        let k = TsigKey::generate(n("ap."));
        k.save_new(&path, KeyFileFormat::Bind).unwrap();
        assert!(matches!(
            k.save_new(&path, KeyFileFormat::Bind),
            Err(KeyError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(TsigKey::load(&path).unwrap().secret(), k.secret());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(!format!("{k:?}").contains(&*k.secret_base64()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let ring = [key("ap1.example.", b"secret")];
            let _ = verify_request(&bytes, &ring, NOW);
            let _ = find_tsig(&bytes);
            let req = TsigMac { mac: vec![1; 32], original_id: 0, time_signed: NOW };
            let _ = verify_response(&bytes, &ring[0], &req, NOW);
            let _ = unsigned_message(&bytes);
        }

        #[test]
        fn mutated_signed_messages_never_panic(
            edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
            cut in any::<u16>(),
        ) {
            let k = key("ap1.example.", b"secret");
            let mut q = query(42);
            sign_request(&mut q, &k, NOW).unwrap();
            for (at, v) in &edits {
                let i = usize::from(*at) % q.len();
                q[i] = *v;
            }
            let ring = [k];
            let _ = verify_request(&q, &ring, NOW);
            let _ = verify_response(&q, &ring[0], &TsigMac { mac: vec![0; 32], original_id: 42, time_signed: NOW }, NOW);
            q.truncate(usize::from(cut) % (q.len() + 1));
            let _ = verify_request(&q, &ring, NOW);
            let _ = unsigned_message(&q);
        }
    }
}
