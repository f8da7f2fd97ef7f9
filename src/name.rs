//! Domain names: fully qualified, lowercase, kept in uncompressed wire format.
//!
//! The zone store keys nodes by these wire bytes, so every ancestor of a name is a
//! suffix slice of it (`suffixes`) and looking up a closest enclosing node never
//! allocates. Lowercasing on construction makes equality and hashing case-insensitive
//! as DNS requires (RFC 4343); zone files are written lowercase.

use std::cmp::Ordering;
use std::fmt;

use thiserror::Error;

/// Longest wire-format name (RFC 1035 section 2.3.4), which is 253 presentation characters.
pub const MAX_WIRE_LEN: usize = 255;
/// Longest label (RFC 1035 section 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NameError {
    #[error("empty label in name {0:?}")]
    EmptyLabel(String),
    #[error("label longer than 63 octets in name {0:?}")]
    LabelTooLong(String),
    #[error("name longer than 253 characters (255 octets on the wire): {0:?}")]
    TooLong(String),
    #[error("bad escape sequence in name {0:?}")]
    BadEscape(String),
    #[error("relative name {0:?} with no origin to complete it")]
    NoOrigin(String),
    #[error("malformed wire-format name")]
    BadWire,
}

/// A fully qualified domain name, lowercase, in uncompressed wire format (ends with the
/// zero-length root label).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Name(Box<[u8]>);

impl Name {
    /// The root name `.`.
    pub fn root() -> Name {
        Name(Box::new([0u8]))
    }

    /// Parses a presentation-format name. A name without a trailing dot is relative and
    /// is completed with `origin`; `@` is the origin itself.
    pub fn parse(text: &str, origin: Option<&Name>) -> Result<Name, NameError> {
        if text == "@" {
            return origin
                .cloned()
                .ok_or_else(|| NameError::NoOrigin(text.into()));
        }
        if text == "." {
            return Ok(Name::root());
        }
        let mut wire = Vec::with_capacity(text.len() + 2);
        let bytes = text.as_bytes();
        let mut label_start = 0usize;
        wire.push(0);
        let mut i = 0usize;
        let mut absolute = false;
        while i < bytes.len() {
            let c = bytes[i];
            match c {
                b'.' => {
                    let len = wire.len() - label_start - 1;
                    if len == 0 {
                        return Err(NameError::EmptyLabel(text.into()));
                    }
                    if len > MAX_LABEL_LEN {
                        return Err(NameError::LabelTooLong(text.into()));
                    }
                    wire[label_start] = len as u8;
                    if i + 1 == bytes.len() {
                        absolute = true;
                    } else {
                        label_start = wire.len();
                        wire.push(0);
                    }
                    i += 1;
                    continue;
                }
                b'\\' => {
                    let rest = &bytes[i + 1..];
                    if rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit) {
                        let v = u32::from(rest[0] - b'0') * 100
                            + u32::from(rest[1] - b'0') * 10
                            + u32::from(rest[2] - b'0');
                        if v > 255 {
                            return Err(NameError::BadEscape(text.into()));
                        }
                        wire.push((v as u8).to_ascii_lowercase());
                        i += 4;
                    } else if let Some(&e) = rest.first() {
                        wire.push(e.to_ascii_lowercase());
                        i += 2;
                    } else {
                        return Err(NameError::BadEscape(text.into()));
                    }
                }
                _ => {
                    wire.push(c.to_ascii_lowercase());
                    i += 1;
                }
            }
        }
        if !absolute {
            let len = wire.len() - label_start - 1;
            if len == 0 {
                return Err(NameError::EmptyLabel(text.into()));
            }
            if len > MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong(text.into()));
            }
            wire[label_start] = len as u8;
            let origin = origin.ok_or_else(|| NameError::NoOrigin(text.into()))?;
            wire.extend_from_slice(&origin.0);
        } else {
            wire.push(0);
        }
        if wire.len() > MAX_WIRE_LEN {
            return Err(NameError::TooLong(text.into()));
        }
        Ok(Name(wire.into_boxed_slice()))
    }

    /// Builds a name from labels, most specific first, under `suffix`.
    pub fn from_labels<'a, I>(labels: I, suffix: &Name) -> Result<Name, NameError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut wire = Vec::with_capacity(64 + suffix.0.len());
        for label in labels {
            if label.is_empty() {
                return Err(NameError::EmptyLabel(String::from_utf8_lossy(label).into()));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong(
                    String::from_utf8_lossy(label).into(),
                ));
            }
            wire.push(label.len() as u8);
            wire.extend(label.iter().map(u8::to_ascii_lowercase));
        }
        wire.extend_from_slice(&suffix.0);
        if wire.len() > MAX_WIRE_LEN {
            let shown = Name(wire.into_boxed_slice()).to_string();
            return Err(NameError::TooLong(shown));
        }
        Ok(Name(wire.into_boxed_slice()))
    }

    /// Reads an uncompressed wire-format name from the start of `buf`; returns the name
    /// and the number of bytes it took.
    pub fn from_wire(buf: &[u8]) -> Result<(Name, usize), NameError> {
        let mut i = 0usize;
        loop {
            let len = *buf.get(i).ok_or(NameError::BadWire)? as usize;
            if len == 0 {
                i += 1;
                break;
            }
            if len > MAX_LABEL_LEN {
                // Also rejects compression pointers (top bits set): not allowed in RDATA here.
                return Err(NameError::BadWire);
            }
            i += 1 + len;
            if i > buf.len() || i >= MAX_WIRE_LEN {
                return Err(NameError::BadWire);
            }
        }
        let wire: Box<[u8]> = buf[..i].iter().map(u8::to_ascii_lowercase).collect();
        Ok((Name(wire), i))
    }

    /// Wraps wire bytes already known to be a valid lowercase name (from `as_wire`).
    pub fn from_wire_trusted(wire: &[u8]) -> Name {
        debug_assert!(
            Name::from_wire(wire).map(|(n, l)| l == wire.len() && n.0[..] == wire[..]) == Ok(true)
        );
        Name(wire.into())
    }

    /// The uncompressed, lowercase wire form.
    pub fn as_wire(&self) -> &[u8] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// Labels, most specific first, without the root label.
    pub fn labels(&self) -> Labels<'_> {
        Labels { wire: &self.0 }
    }

    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// The wire forms of this name and every ancestor up to the root, longest first.
    pub fn suffixes(&self) -> Suffixes<'_> {
        Suffixes {
            wire: &self.0,
            done: false,
        }
    }

    /// The name with its first label removed; None for the root.
    pub fn parent(&self) -> Option<Name> {
        if self.is_root() {
            return None;
        }
        let skip = 1 + self.0[0] as usize;
        Some(Name(self.0[skip..].into()))
    }

    /// True when `self` equals `ancestor` or lies below it.
    pub fn is_subdomain_of(&self, ancestor: &Name) -> bool {
        self.suffixes().any(|s| s == ancestor.as_wire())
    }

    /// The presentation form relative to `origin`: `@` for the origin itself, the leading
    /// labels for a name below it, and the absolute form otherwise.
    pub fn relative_to(&self, origin: &Name) -> String {
        if self == origin {
            return "@".to_string();
        }
        if self.is_subdomain_of(origin) && !origin.is_root() {
            let keep = self.0.len() - origin.0.len();
            let mut out = String::new();
            write_labels(
                &mut out,
                Labels {
                    wire: &self.0[..keep],
                },
            );
            return out;
        }
        self.to_string()
    }

    pub fn to_hickory(&self) -> hickory_proto::rr::Name {
        let labels: Vec<&[u8]> = self.labels().collect();
        // Labels were validated on construction, so this cannot fail; fall back to root
        // rather than panic if hickory's rules ever diverge.
        hickory_proto::rr::Name::from_labels(labels)
            .unwrap_or_else(|_| hickory_proto::rr::Name::root())
    }

    pub fn from_hickory(name: &hickory_proto::rr::Name) -> Result<Name, NameError> {
        let labels: Vec<&[u8]> = name.iter().collect();
        Name::from_labels(labels, &Name::root())
    }
}

fn write_labels(out: &mut String, labels: Labels<'_>) {
    let mut first = true;
    for label in labels {
        if !first {
            out.push('.');
        }
        first = false;
        for &b in label {
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    out.push('\\');
                    out.push(b as char);
                }
                0x21..=0x7e => out.push(b as char),
                _ => {
                    use std::fmt::Write;
                    let _ = write!(out, "\\{b:03}");
                }
            }
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        let mut out = String::with_capacity(self.0.len());
        write_labels(&mut out, self.labels());
        out.push('.');
        f.write_str(&out)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// RFC 4034 section 6.1 canonical order: compare label by label from the root.
impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        let a: Vec<&[u8]> = self.labels().collect();
        let b: Vec<&[u8]> = other.labels().collect();
        for (x, y) in a.iter().rev().zip(b.iter().rev()) {
            match x.cmp(y) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        a.len().cmp(&b.len())
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    /// Parses an absolute name; a missing trailing dot is taken as absolute too.
    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::parse(s, Some(&Name::root()))
    }
}

pub struct Labels<'a> {
    wire: &'a [u8],
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let len = *self.wire.first()? as usize;
        if len == 0 || self.wire.len() < 1 + len {
            return None;
        }
        let label = &self.wire[1..1 + len];
        self.wire = &self.wire[1 + len..];
        Some(label)
    }
}

pub struct Suffixes<'a> {
    wire: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Suffixes<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let current = self.wire;
        let len = *current.first()? as usize;
        if len == 0 || current.len() < 1 + len {
            self.done = true;
        } else {
            self.wire = &current[1 + len..];
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(n("Example.COM.").to_string(), "example.com.");
        assert_eq!(n(".").to_string(), ".");
        let origin = n("mimi.arpa.");
        assert_eq!(Name::parse("@", Some(&origin)).unwrap(), origin);
        assert_eq!(
            Name::parse("e164", Some(&origin)).unwrap(),
            n("e164.mimi.arpa.")
        );
        assert_eq!(n("a\\.b.c.").label_count(), 2);
        assert_eq!(n("a\\.b.c.").to_string(), "a\\.b.c.");
        assert_eq!(n("\\065.c.").to_string(), "a.c.");
        assert!(Name::parse("x", None).is_err());
    }

    #[test]
    fn limits() {
        let label = "a".repeat(64);
        assert!(matches!(
            Name::parse(&format!("{label}."), None),
            Err(NameError::LabelTooLong(_))
        ));
        let long = vec!["abcdefghi"; 26].join(".") + ".";
        assert!(matches!(
            Name::parse(&long, None),
            Err(NameError::TooLong(_))
        ));
        assert!(matches!(
            Name::parse("a..b.", None),
            Err(NameError::EmptyLabel(_))
        ));
        // 253 characters is the maximum that fits.
        let ok = format!(
            "{}.{}.{}.{}.",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(ok.len(), 254);
        assert!(Name::parse(&ok, None).is_ok());
    }

    #[test]
    fn relations() {
        let a = n("1.e164.mimi.arpa.");
        let apex = n("mimi.arpa.");
        assert!(a.is_subdomain_of(&apex));
        assert!(!apex.is_subdomain_of(&a));
        assert_eq!(a.relative_to(&apex), "1.e164");
        assert_eq!(apex.relative_to(&apex), "@");
        assert_eq!(n("other.org.").relative_to(&apex), "other.org.");
        assert_eq!(a.suffixes().count(), 5);
        assert_eq!(a.parent().unwrap(), n("e164.mimi.arpa."));
    }

    #[test]
    fn canonical_order() {
        let mut v = [
            n("z.example."),
            n("example."),
            n("a.example."),
            n("yljkjljk.a.example."),
            n("Z.a.example."),
        ];
        v.sort();
        let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            s,
            [
                "example.",
                "a.example.",
                "yljkjljk.a.example.",
                "z.a.example.",
                "z.example."
            ]
        );
    }

    #[test]
    fn wire_round_trip() {
        let a = n("Foo.Example.");
        let (b, used) = Name::from_wire(a.as_wire()).unwrap();
        assert_eq!(a, b);
        assert_eq!(used, a.as_wire().len());
        assert!(Name::from_wire(&[3, b'a']).is_err());
        assert!(Name::from_wire(&[0xc0, 0x0c]).is_err());
        assert_eq!(Name::from_hickory(&a.to_hickory()).unwrap(), a);
    }
}
