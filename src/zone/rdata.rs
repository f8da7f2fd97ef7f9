//! Record data of the types zone files carry, in wire and presentation form.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::name::Name;
use crate::record::{ApKey, Ssi, TYPE_APKEY, TYPE_SSI};

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    pub mname: Name,
    pub rname: Name,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ns(Name),
    Soa(Box<Soa>),
    Txt(Vec<Box<[u8]>>),
    Ssi(Box<Ssi>),
    ApKey(Box<ApKey>),
    /// Any other type, kept as opaque RFC 3597 data.
    Unknown {
        rtype: u16,
        data: Box<[u8]>,
    },
}

impl RData {
    pub fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => TYPE_A,
            RData::Aaaa(_) => TYPE_AAAA,
            RData::Ns(_) => TYPE_NS,
            RData::Soa(_) => TYPE_SOA,
            RData::Txt(_) => TYPE_TXT,
            RData::Ssi(_) => TYPE_SSI,
            RData::ApKey(_) => TYPE_APKEY,
            RData::Unknown { rtype, .. } => *rtype,
        }
    }

    /// The same data as hickory's type; SSI, APKEY and unknown types travel as opaque
    /// RFC 3597 data.
    pub fn to_hickory(&self) -> hickory_proto::rr::RData {
        use hickory_proto::rr::{rdata, RData as H, RecordType};
        match self {
            RData::A(a) => H::A(rdata::A(*a)),
            RData::Aaaa(a) => H::AAAA(rdata::AAAA(*a)),
            RData::Ns(n) => H::NS(rdata::NS(n.to_hickory())),
            RData::Soa(s) => H::SOA(rdata::SOA::new(
                s.mname.to_hickory(),
                s.rname.to_hickory(),
                s.serial,
                s.refresh as i32,
                s.retry as i32,
                s.expire as i32,
                s.minimum,
            )),
            RData::Txt(strings) => H::TXT(rdata::TXT::from_bytes(
                strings.iter().map(|s| &s[..]).collect(),
            )),
            _ => H::Unknown {
                code: RecordType::from(self.rtype()),
                rdata: rdata::NULL::with(self.to_wire()),
            },
        }
    }

    /// Appends the uncompressed wire form of the RDATA (without its length).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RData::A(a) => out.extend_from_slice(&a.octets()),
            RData::Aaaa(a) => out.extend_from_slice(&a.octets()),
            RData::Ns(n) => out.extend_from_slice(n.as_wire()),
            RData::Soa(s) => {
                out.extend_from_slice(s.mname.as_wire());
                out.extend_from_slice(s.rname.as_wire());
                for v in [s.serial, s.refresh, s.retry, s.expire, s.minimum] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            RData::Txt(strings) => {
                for s in strings {
                    out.push(s.len() as u8);
                    out.extend_from_slice(s);
                }
            }
            RData::Ssi(s) => s.encode(out),
            RData::ApKey(k) => k.encode(out),
            RData::Unknown { data, .. } => out.extend_from_slice(data),
        }
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        out
    }

    /// Decodes uncompressed RDATA of type `rtype`; unknown types stay opaque.
    pub fn from_wire(rtype: u16, data: &[u8]) -> Result<RData, String> {
        let exact = |n: usize| {
            if data.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{} RDATA must be {n} octets, got {}",
                    type_name(rtype),
                    data.len()
                ))
            }
        };
        Ok(match rtype {
            TYPE_A => {
                exact(4)?;
                RData::A(Ipv4Addr::new(data[0], data[1], data[2], data[3]))
            }
            TYPE_AAAA => {
                exact(16)?;
                let mut b = [0u8; 16];
                b.copy_from_slice(data);
                RData::Aaaa(Ipv6Addr::from(b))
            }
            TYPE_NS => {
                let (n, used) = Name::from_wire(data).map_err(|e| format!("NS RDATA: {e}"))?;
                exact(used)?;
                RData::Ns(n)
            }
            TYPE_SOA => {
                let (mname, a) = Name::from_wire(data).map_err(|e| format!("SOA MNAME: {e}"))?;
                let (rname, b) =
                    Name::from_wire(&data[a..]).map_err(|e| format!("SOA RNAME: {e}"))?;
                let rest = &data[a + b..];
                if rest.len() != 20 {
                    return Err(format!(
                        "SOA RDATA needs 20 octets of counters after the names, got {}",
                        rest.len()
                    ));
                }
                let n =
                    |i: usize| u32::from_be_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
                RData::Soa(Box::new(Soa {
                    mname,
                    rname,
                    serial: n(0),
                    refresh: n(4),
                    retry: n(8),
                    expire: n(12),
                    minimum: n(16),
                }))
            }
            TYPE_TXT => {
                let mut strings = Vec::new();
                let mut i = 0;
                while i < data.len() {
                    let len = data[i] as usize;
                    let s = data
                        .get(i + 1..i + 1 + len)
                        .ok_or("TXT RDATA: character-string runs past the end")?;
                    strings.push(s.into());
                    i += 1 + len;
                }
                if strings.is_empty() {
                    return Err("TXT RDATA is empty".into());
                }
                RData::Txt(strings)
            }
            TYPE_SSI => RData::Ssi(Box::new(Ssi::from_wire(data).map_err(|e| e.to_string())?)),
            TYPE_APKEY => {
                RData::ApKey(Box::new(ApKey::from_wire(data).map_err(|e| e.to_string())?))
            }
            _ => RData::Unknown {
                rtype,
                data: data.into(),
            },
        })
    }

    /// Parses presentation-form RDATA for a known type. `fields` are the record's data
    /// tokens with quotes removed; `quoted` marks which were quoted.
    pub fn parse(
        rtype: u16,
        fields: &[&str],
        quoted: &[bool],
        origin: Option<&Name>,
    ) -> Result<RData, String> {
        let want = |n: usize| {
            if fields.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{} needs {n} field{}, got {}",
                    type_name(rtype),
                    if n == 1 { "" } else { "s" },
                    fields.len()
                ))
            }
        };
        // Relative names without an origin fail here, naming the name.
        let name = |s: &str| Name::parse(s, origin).map_err(|e| e.to_string());
        let num = |s: &str, what: &str| {
            super::parse::parse_u32(s).ok_or_else(|| format!("SOA {what} {s:?} is not a number"))
        };
        Ok(match rtype {
            TYPE_A => {
                want(1)?;
                RData::A(
                    fields[0]
                        .parse()
                        .map_err(|_| format!("{:?} is not an IPv4 address", fields[0]))?,
                )
            }
            TYPE_AAAA => {
                want(1)?;
                RData::Aaaa(
                    fields[0]
                        .parse()
                        .map_err(|_| format!("{:?} is not an IPv6 address", fields[0]))?,
                )
            }
            TYPE_NS => {
                want(1)?;
                RData::Ns(name(fields[0])?)
            }
            TYPE_SOA => {
                want(7)?;
                RData::Soa(Box::new(Soa {
                    mname: name(fields[0])?,
                    rname: name(fields[1])?,
                    serial: num(fields[2], "serial")?,
                    refresh: super::parse_ttl(fields[3])
                        .ok_or_else(|| format!("SOA refresh {:?} is not a time", fields[3]))?,
                    retry: super::parse_ttl(fields[4])
                        .ok_or_else(|| format!("SOA retry {:?} is not a time", fields[4]))?,
                    expire: super::parse_ttl(fields[5])
                        .ok_or_else(|| format!("SOA expire {:?} is not a time", fields[5]))?,
                    minimum: super::parse_ttl(fields[6])
                        .ok_or_else(|| format!("SOA minimum {:?} is not a time", fields[6]))?,
                }))
            }
            TYPE_TXT => {
                if fields.is_empty() {
                    return Err("TXT needs at least one string".into());
                }
                let mut strings = Vec::with_capacity(fields.len());
                for (f, _) in fields.iter().zip(quoted) {
                    let bytes = unescape(f)?;
                    if bytes.len() > 255 {
                        return Err(format!(
                            "TXT string of {} octets is longer than 255",
                            bytes.len()
                        ));
                    }
                    strings.push(bytes.into_boxed_slice());
                }
                RData::Txt(strings)
            }
            TYPE_SSI => RData::Ssi(Box::new(
                Ssi::parse_presentation(fields).map_err(|e| e.to_string())?,
            )),
            TYPE_APKEY => RData::ApKey(Box::new(
                ApKey::parse_presentation(fields).map_err(|e| e.to_string())?,
            )),
            // The line `mimi key dnssec ds` prints (RFC 4034 section 5.3); kept as opaque
            // RDATA, as every type the zone layer does not interpret.
            crate::dnssec::TYPE_DS => RData::Unknown {
                rtype,
                data: parse_ds(fields)?.into_boxed_slice(),
            },
            _ => {
                return Err(format!(
                    "no presentation form known for {}: write it as {} \\# <length> <hex>",
                    type_name(rtype),
                    generic_type_name(rtype)
                ))
            }
        })
    }

    /// Appends the presentation form of the RDATA, names relative to `origin`.
    /// With `generic`, SSI, APKEY and unknown types use RFC 3597 `\# len hex`.
    pub fn write_presentation(&self, out: &mut String, origin: &Name, generic: bool) {
        match self {
            RData::A(a) => {
                let _ = write!(out, "{a}");
            }
            RData::Aaaa(a) => {
                let _ = write!(out, "{a}");
            }
            RData::Ns(n) => out.push_str(&n.relative_to(origin)),
            RData::Soa(s) => {
                let _ = write!(
                    out,
                    "{} {} {} {} {} {} {}",
                    s.mname.relative_to(origin),
                    s.rname.relative_to(origin),
                    s.serial,
                    s.refresh,
                    s.retry,
                    s.expire,
                    s.minimum
                );
            }
            RData::Txt(strings) => {
                for (i, s) in strings.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    write_quoted(out, s);
                }
            }
            RData::Ssi(_) | RData::ApKey(_) | RData::Unknown { .. } if generic => {
                let wire = self.to_wire();
                let _ = write!(out, "\\# {}", wire.len());
                if !wire.is_empty() {
                    out.push(' ');
                    out.push_str(&hex::encode(&wire));
                }
            }
            RData::Ssi(s) => out.push_str(&s.to_presentation()),
            RData::ApKey(k) => out.push_str(&k.to_presentation()),
            RData::Unknown { .. } => {
                // Unknown types have no other presentation form.
                self.write_presentation(out, origin, true)
            }
        }
    }
}

/// A DS or DNSKEY line as `mimi key dnssec ds` prints it (`OWNER [TTL] [IN] DS tag alg
/// digest-type hex`, or `... DNSKEY flags 3 15 base64`, Ed25519 only): its owner, type and
/// RDATA. What a child hands its parent, and a resolver's trust anchor.
pub fn parse_key_line(line: &str) -> Result<(Name, u16, Vec<u8>), String> {
    let mut words = line.split_whitespace();
    let owner = words.next().ok_or("an empty line")?;
    let owner =
        Name::parse(owner, Some(&Name::root())).map_err(|e| format!("owner {owner:?}: {e}"))?;
    let rest: Vec<&str> = words
        .skip_while(|w| w.bytes().all(|b| b.is_ascii_digit()) || w.eq_ignore_ascii_case("IN"))
        .collect();
    match rest.split_first() {
        Some((t, fields)) if t.eq_ignore_ascii_case("DS") => {
            Ok((owner, crate::dnssec::TYPE_DS, parse_ds(fields)?))
        }
        Some((t, [flags, protocol, algorithm, key @ ..])) if t.eq_ignore_ascii_case("DNSKEY") => {
            use base64::Engine as _;
            let flags: u16 = flags
                .parse()
                .map_err(|_| format!("DNSKEY flags {flags:?} are not a number"))?;
            if *protocol != "3" || *algorithm != "15" {
                return Err(format!(
                    "DNSKEY protocol {protocol} algorithm {algorithm}: only 3 15 (Ed25519) is supported"
                ));
            }
            let key = base64::engine::general_purpose::STANDARD
                .decode(key.concat())
                .map_err(|e| format!("DNSKEY key is not base64: {e}"))?;
            let key: [u8; 32] = key.try_into().map_err(|k: Vec<u8>| {
                format!("an Ed25519 DNSKEY holds 32 octets, not {}", k.len())
            })?;
            let rdata = crate::dnssec::key::dnskey_rdata(flags, &key);
            Ok((owner, crate::dnssec::TYPE_DNSKEY, rdata))
        }
        _ => Err("expected a DS or DNSKEY record after the owner".into()),
    }
}

/// DS RDATA from `key-tag algorithm digest-type digest-hex...` (the digest may be split
/// into several words).
fn parse_ds(fields: &[&str]) -> Result<Vec<u8>, String> {
    let [tag, alg, digest_type, digest @ ..] = fields else {
        return Err("DS needs a key tag, an algorithm, a digest type and a digest".into());
    };
    if digest.is_empty() {
        return Err("DS needs a key tag, an algorithm, a digest type and a digest".into());
    }
    let tag: u16 = tag
        .parse()
        .map_err(|_| format!("DS key tag {tag:?} is not a number from 0 to 65535"))?;
    let alg: u8 = alg
        .parse()
        .map_err(|_| format!("DS algorithm {alg:?} is not a number from 0 to 255"))?;
    let digest_type: u8 = digest_type
        .parse()
        .map_err(|_| format!("DS digest type {digest_type:?} is not a number from 0 to 255"))?;
    let digest = hex::decode(digest.concat()).map_err(|e| format!("DS digest is not hex: {e}"))?;
    if digest_type == crate::dnssec::DIGEST_SHA256 && digest.len() != 32 {
        return Err(format!(
            "a SHA-256 DS digest is 32 octets, not {}",
            digest.len()
        ));
    }
    let mut out = Vec::with_capacity(4 + digest.len());
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&[alg, digest_type]);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// Mnemonic of a type, or `TYPEnnn`.
pub fn type_name(rtype: u16) -> String {
    match type_mnemonic(rtype) {
        Some(m) => m.to_string(),
        None => generic_type_name(rtype),
    }
}

pub fn generic_type_name(rtype: u16) -> String {
    format!("TYPE{rtype}")
}

fn type_mnemonic(rtype: u16) -> Option<&'static str> {
    Some(match rtype {
        TYPE_A => "A",
        TYPE_NS => "NS",
        TYPE_SOA => "SOA",
        TYPE_TXT => "TXT",
        TYPE_AAAA => "AAAA",
        TYPE_SSI => "SSI",
        TYPE_APKEY => "APKEY",
        crate::record::TYPE_PIRCFG => "PIRCFG",
        crate::record::TYPE_PIR => "PIR",
        5 => "CNAME",
        12 => "PTR",
        15 => "MX",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        255 => "ANY",
        _ => return None,
    })
}

/// Type code of a mnemonic (case-insensitive) or of `TYPEnnn`.
pub fn parse_type(s: &str) -> Option<u16> {
    // Bytes, not a str slice: the token may hold multi-byte characters.
    if s.len() > 4 && s.as_bytes()[..4].eq_ignore_ascii_case(b"TYPE") {
        return s.get(4..)?.parse().ok();
    }
    let upper = s.to_ascii_uppercase();
    [
        TYPE_A,
        TYPE_NS,
        TYPE_SOA,
        TYPE_TXT,
        TYPE_AAAA,
        TYPE_SSI,
        TYPE_APKEY,
        crate::record::TYPE_PIRCFG,
        crate::record::TYPE_PIR,
        5,
        12,
        15,
        33,
        35,
        43,
        46,
        48,
        255,
    ]
    .into_iter()
    .find(|&t| type_mnemonic(t) == Some(upper.as_str()))
}

/// Decodes the escapes of a character-string: `\X` and `\DDD`.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let rest = &b[i + 1..];
            if rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit) {
                let v = u32::from(rest[0] - b'0') * 100
                    + u32::from(rest[1] - b'0') * 10
                    + u32::from(rest[2] - b'0');
                if v > 255 {
                    return Err(format!("escape \\{} is above 255", &s[i + 1..i + 4]));
                }
                out.push(v as u8);
                i += 4;
            } else if let Some(&c) = rest.first() {
                out.push(c);
                i += 2;
            } else {
                return Err("string ends with a lone backslash".into());
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn write_quoted(out: &mut String, s: &[u8]) {
    out.push('"');
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
}

/// Splits a quoted-string token's text back out for callers needing the raw string
/// (SSI URIs): decodes escapes, rejecting non-UTF-8.
pub fn unescape_str(s: &str) -> Result<String, String> {
    if !s.contains('\\') {
        return Ok(s.to_string());
    }
    String::from_utf8(unescape(s)?).map_err(|_| "string is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_token_with_multibyte_characters_is_no_panic() {
        // Found by tools/fuzz.sh (zone_file): "TYP\u{e9}..." sliced inside a character.
        assert_eq!(parse_type("TYP\u{e9}1"), None);
        assert_eq!(parse_type("\u{e9}\u{e9}\u{e9}"), None);
        assert_eq!(parse_type("type65280"), Some(65280));
    }
}
