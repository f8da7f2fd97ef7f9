//! RFC 1035 master-file reader: `$ORIGIN`, `$TTL`, relative names, `@`, blank owners,
//! parentheses across lines, comments, quoted strings, TTL units, and RFC 3597 generic
//! RDATA (`TYPEnnn \# len hex`) for any type.
//!
//! The lexer hands out slices of the input; only quoted strings with escapes are copied.
//! A syntax error skips to the next record so one pass reports every bad line.

use std::borrow::Cow;

use super::rdata::{parse_type, unescape_str, RData};
use super::{Record, SyntaxError};
use crate::name::Name;

/// What one pass over a zone file found.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The first `$ORIGIN`, or the origin given by the caller.
    pub origin: Option<Name>,
    pub records: Vec<Record>,
    pub errors: Vec<SyntaxError>,
}

#[derive(Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    quoted: bool,
    line: usize,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
}

/// One logical entry: the tokens of a record or directive, which may span lines.
struct Entry {
    line: usize,
    /// The entry began with white space: its owner is the previous record's.
    blank_owner: bool,
}

impl<'a> Lexer<'a> {
    /// Fills `tokens` with the next non-empty entry. `Err` leaves the lexer at the start
    /// of the following line so parsing can go on.
    fn next_entry(
        &mut self,
        tokens: &mut Vec<Token<'a>>,
    ) -> Option<Result<Entry, (usize, String)>> {
        tokens.clear();
        let bytes = self.src.as_bytes();
        let mut depth = 0usize;
        let mut paren_line = 0usize;
        let mut entry: Option<Entry> = None;
        loop {
            let Some(&c) = bytes.get(self.pos) else {
                if depth > 0 {
                    return Some(Err((
                        paren_line,
                        "parenthesis opened here is never closed".into(),
                    )));
                }
                return entry.map(Ok);
            };
            let at_line_start = self.pos == 0 || bytes[self.pos - 1] == b'\n';
            match c {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    if depth == 0 && !tokens.is_empty() {
                        return entry.map(Ok);
                    }
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b';' => {
                    while self.pos < bytes.len() && bytes[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'(' => {
                    if depth == 0 {
                        paren_line = self.line;
                    }
                    depth += 1;
                    self.pos += 1;
                    entry.get_or_insert(Entry {
                        line: self.line,
                        blank_owner: false,
                    });
                }
                b')' => {
                    if depth == 0 {
                        let line = self.line;
                        self.skip_line();
                        return Some(Err((line, "')' without a matching '('".into())));
                    }
                    depth -= 1;
                    self.pos += 1;
                }
                b'"' => {
                    let start = self.pos + 1;
                    let mut i = start;
                    loop {
                        match bytes.get(i) {
                            None | Some(b'\n') => {
                                let line = self.line;
                                self.pos = i;
                                self.skip_line();
                                return Some(Err((line, "quoted string is not closed".into())));
                            }
                            Some(b'\\') => i += 2,
                            Some(b'"') => break,
                            Some(_) => i += 1,
                        }
                    }
                    if entry.is_none() {
                        entry = Some(Entry {
                            line: self.line,
                            blank_owner: !at_line_start,
                        });
                    }
                    tokens.push(Token {
                        text: &self.src[start..i],
                        quoted: true,
                        line: self.line,
                    });
                    self.pos = i + 1;
                }
                _ => {
                    let start = self.pos;
                    let mut i = start;
                    while let Some(&b) = bytes.get(i) {
                        match b {
                            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                            b'\\' => i = (i + 2).min(bytes.len()),
                            _ => i += 1,
                        }
                    }
                    if entry.is_none() {
                        entry = Some(Entry {
                            line: self.line,
                            blank_owner: !at_line_start,
                        });
                    }
                    // A backslash may have stepped into a multi-byte character: keep
                    // the slice on a character boundary.
                    while i < bytes.len() && !self.src.is_char_boundary(i) {
                        i += 1;
                    }
                    tokens.push(Token {
                        text: &self.src[start..i],
                        quoted: false,
                        line: self.line,
                    });
                    self.pos = i;
                }
            }
        }
    }

    fn skip_line(&mut self) {
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() && bytes[self.pos] != b'\n' {
            self.pos += 1;
        }
    }
}

/// Parses a TTL: seconds, or BIND-style units (`1w2d3h4m5s`), at most 2^31-1.
pub fn parse_ttl(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    if let Some(v) = parse_u32(s) {
        return (v <= i32::MAX as u32).then_some(v);
    }
    let mut total: u64 = 0;
    let mut current: u64 = 0;
    let mut have_digit = false;
    for c in s.bytes() {
        match c {
            b'0'..=b'9' => {
                current = current.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                have_digit = true;
            }
            _ => {
                if !have_digit {
                    return None;
                }
                let unit = match c.to_ascii_lowercase() {
                    b's' => 1,
                    b'm' => 60,
                    b'h' => 3600,
                    b'd' => 86400,
                    b'w' => 604800,
                    _ => return None,
                };
                total = total.checked_add(current.checked_mul(unit)?)?;
                current = 0;
                have_digit = false;
            }
        }
    }
    if have_digit {
        return None; // units given, then a bare number at the end: ambiguous
    }
    (total <= i32::MAX as u64).then_some(total as u32)
}

pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses zone text. `origin` is the origin before any `$ORIGIN`.
pub fn parse_str(text: &str, file: &str, origin: Option<&Name>) -> Parsed {
    let mut out = Parsed {
        origin: origin.cloned(),
        ..Parsed::default()
    };
    let mut lexer = Lexer {
        src: text,
        pos: 0,
        line: 1,
    };
    let mut origin: Option<Name> = origin.cloned();
    let mut default_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    let mut last_owner: Option<Name> = None;
    let mut tokens: Vec<Token<'_>> = Vec::with_capacity(32);
    let mut fields: Vec<Cow<'_, str>> = Vec::with_capacity(32);
    let err = |line: usize, message: String| SyntaxError {
        file: file.to_string(),
        line,
        message,
    };

    while let Some(entry) = lexer.next_entry(&mut tokens) {
        let entry = match entry {
            Ok(e) => e,
            Err((line, message)) => {
                out.errors.push(err(line, message));
                continue;
            }
        };
        let line = entry.line;
        // An entry of nothing but parentheses, "()", has no token at all.
        let Some(&first) = tokens.first() else {
            continue;
        };
        if !first.quoted && first.text.starts_with('$') && !entry.blank_owner {
            match directive(first.text, &tokens[1..], origin.as_ref()) {
                Ok(Directive::Origin(o)) => {
                    if out.origin.is_none() {
                        out.origin = Some(o.clone());
                    }
                    origin = Some(o);
                }
                Ok(Directive::Ttl(t)) => default_ttl = Some(t),
                Err(m) => out.errors.push(err(line, m)),
            }
            continue;
        }
        match record(
            &entry,
            &tokens,
            &mut fields,
            origin.as_ref(),
            &mut last_owner,
            default_ttl,
            &mut last_ttl,
        ) {
            Ok(r) => out.records.push(r),
            Err((l, m)) => out.errors.push(err(l.unwrap_or(line), m)),
        }
    }
    out
}

enum Directive {
    Origin(Name),
    Ttl(u32),
}

fn directive(name: &str, args: &[Token<'_>], origin: Option<&Name>) -> Result<Directive, String> {
    match name.to_ascii_uppercase().as_str() {
        "$ORIGIN" => {
            let [arg] = args else {
                return Err("$ORIGIN takes exactly one name".into());
            };
            if !arg.text.ends_with('.') {
                // RFC 1035 allows a relative $ORIGIN; it is almost always a mistake.
                let o = origin.ok_or("relative $ORIGIN with no previous origin")?;
                return Name::parse(arg.text, Some(o))
                    .map(Directive::Origin)
                    .map_err(|e| format!("$ORIGIN: {e}"));
            }
            Name::parse(arg.text, None)
                .map(Directive::Origin)
                .map_err(|e| format!("$ORIGIN: {e}"))
        }
        "$TTL" => {
            let [arg] = args else {
                return Err("$TTL takes exactly one value".into());
            };
            parse_ttl(arg.text)
                .map(Directive::Ttl)
                .ok_or_else(|| format!("$TTL {:?} is not a TTL", arg.text))
        }
        "$INCLUDE" => Err("$INCLUDE is not supported: keep each zone in one file".into()),
        "$GENERATE" => Err("$GENERATE is not supported".into()),
        _ => Err(format!("unknown directive {name}")),
    }
}

type RecordError = (Option<usize>, String);

fn record<'a>(
    entry: &Entry,
    tokens: &[Token<'a>],
    fields: &mut Vec<Cow<'a, str>>,
    origin: Option<&Name>,
    last_owner: &mut Option<Name>,
    default_ttl: Option<u32>,
    last_ttl: &mut Option<u32>,
) -> Result<Record, RecordError> {
    let mut i = 0;
    let owner = if entry.blank_owner {
        last_owner.clone().ok_or((
            None,
            "record has no owner name and there is no previous one".to_string(),
        ))?
    } else {
        i = 1;
        let t = tokens[0];
        let name = Name::parse(t.text, origin).map_err(|e| (None, format!("owner: {e}")))?;
        *last_owner = Some(name.clone());
        name
    };
    let mut ttl = None;
    let mut class_seen = false;
    let rtype = loop {
        let Some(t) = tokens.get(i) else {
            return Err((None, format!("record for {owner} has no type")));
        };
        i += 1;
        if t.quoted {
            return Err((
                Some(t.line),
                format!("expected a type, found the string \"{}\"", t.text),
            ));
        }
        if t.text.as_bytes().first().is_some_and(u8::is_ascii_digit) && ttl.is_none() {
            ttl = Some(
                parse_ttl(t.text).ok_or((Some(t.line), format!("{:?} is not a TTL", t.text)))?,
            );
            continue;
        }
        if !class_seen {
            if t.text.eq_ignore_ascii_case("IN") {
                class_seen = true;
                continue;
            }
            if ["CH", "HS", "CS", "NONE", "ANY"]
                .iter()
                .any(|c| t.text.eq_ignore_ascii_case(c))
                || (t.text.len() > 5 && t.text.as_bytes()[..5].eq_ignore_ascii_case(b"CLASS"))
            {
                return Err((
                    Some(t.line),
                    format!("class {} is not supported: only IN", t.text),
                ));
            }
        }
        break parse_type(t.text)
            .ok_or_else(|| (Some(t.line), format!("unknown record type {:?}", t.text)))?;
    };
    let ttl = match ttl.or(default_ttl).or(*last_ttl) {
        Some(t) => t,
        None => {
            return Err((
                None,
                "record has no TTL and no $TTL or earlier TTL to inherit".into(),
            ))
        }
    };
    *last_ttl = Some(ttl);
    let rdata = &tokens[i..];
    let data = if rdata.first().is_some_and(|t| !t.quoted && t.text == "\\#") {
        generic(rtype, &rdata[1..])?
    } else {
        fields.clear();
        let mut quoted = Vec::with_capacity(rdata.len());
        for t in rdata {
            // Names and TXT decode their own escapes; only other quoted text is unescaped here.
            let s = if t.quoted && rtype == crate::record::TYPE_SSI {
                Cow::Owned(unescape_str(t.text).map_err(|e| (Some(t.line), e))?)
            } else {
                Cow::Borrowed(t.text)
            };
            fields.push(s);
            quoted.push(t.quoted);
        }
        let refs: Vec<&str> = fields.iter().map(|c| c.as_ref()).collect();
        RData::parse(rtype, &refs, &quoted, origin).map_err(|m| (None, m))?
    };
    Ok(Record {
        name: owner,
        ttl,
        data,
        line: entry.line,
    })
}

/// RFC 3597 section 5: `\# <length> <hex>...`, the hex possibly split into several words.
fn generic(rtype: u16, rest: &[Token<'_>]) -> Result<RData, RecordError> {
    let Some(len_tok) = rest.first() else {
        return Err((None, "\\# needs a length".into()));
    };
    let len: usize = parse_u32(len_tok.text).ok_or((
        Some(len_tok.line),
        format!("\\# length {:?} is not a number", len_tok.text),
    ))? as usize;
    if len > 65535 {
        return Err((
            Some(len_tok.line),
            format!("\\# length {len} is more than 65535"),
        ));
    }
    let mut data = Vec::with_capacity(len);
    for t in &rest[1..] {
        let bytes = hex::decode(t.text).map_err(|e| {
            (
                Some(t.line),
                format!("\\# data {:?} is not hex: {e}", t.text),
            )
        })?;
        data.extend_from_slice(&bytes);
    }
    if data.len() != len {
        return Err((
            None,
            format!("\\# says {len} octets but the hex holds {}", data.len()),
        ));
    }
    RData::from_wire(rtype, &data).map_err(|m| (None, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Parsed {
        parse_str(text, "test.zone", None)
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("3600"), Some(3600));
        assert_eq!(parse_ttl("1h"), Some(3600));
        assert_eq!(
            parse_ttl("1w2d3h4m5s"),
            Some(604800 + 2 * 86400 + 3 * 3600 + 245)
        );
        assert_eq!(parse_ttl("1h5"), None);
        assert_eq!(parse_ttl("x"), None);
        assert_eq!(parse_ttl("4294967295"), None);
    }

    #[test]
    fn basic_zone() {
        let p = parse(
            "$ORIGIN mimi.arpa.\n$TTL 1h\n@ IN SOA ns1 hostmaster ( 1 ; serial\n 7200 3600\n 1209600 300 )\n  NS ns1\nns1 60 IN A 127.0.0.1\n\tAAAA ::1\ntxt TXT \"a b\" \"c\\\"d\" x\nsub.zone 10 TYPE99 \\# 3 0102 03\n",
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.origin.as_ref().unwrap().to_string(), "mimi.arpa.");
        assert_eq!(p.records.len(), 6);
        assert_eq!(p.records[0].line, 3);
        assert_eq!(p.records[1].name.to_string(), "mimi.arpa.");
        assert_eq!(p.records[1].ttl, 3600);
        assert_eq!(p.records[1].line, 6);
        assert_eq!(p.records[3].name.to_string(), "ns1.mimi.arpa.");
        assert_eq!(
            p.records[3].ttl, 3600,
            "$TTL applies to records without TTL"
        );
        match &p.records[4].data {
            RData::Txt(s) => {
                assert_eq!(&*s[0], b"a b");
                assert_eq!(&*s[1], b"c\"d");
                assert_eq!(&*s[2], b"x");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.records[5].data,
            RData::Unknown {
                rtype: 99,
                data: vec![1, 2, 3].into()
            }
        );
    }

    /// The DS line `mimi key dnssec ds` prints goes into a parent's zone file as it is; a
    /// bad one names its line.
    #[test]
    fn ds_presentation_is_read_and_bad_ones_are_named() {
        let key =
            crate::dnssec::DnssecKey::generate("c.x.".parse().unwrap(), crate::dnssec::FLAGS_CSK);
        let ds = key.ds_rdata();
        let line = format!(
            "c.x. IN DS {} 15 2 {} {}",
            key.key_tag(),
            hex::encode_upper(&ds[4..20]),
            hex::encode(&ds[20..])
        );
        let p = parse(&format!("$ORIGIN x.\n$TTL 5\n{line}\n"));
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(
            p.records[0].data,
            RData::Unknown {
                rtype: crate::dnssec::TYPE_DS,
                data: ds.into_boxed_slice()
            }
        );
        let p = parse("$ORIGIN x.\n$TTL 5\nc DS 1 15 2 abcd\nd DS 1 15\ne DS 70000 15 2 ab\n");
        let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5], "{:?}", p.errors);
        assert!(p.errors[0].message.contains("32 octets"), "{:?}", p.errors);
    }

    #[test]
    fn generic_known_type_is_decoded() {
        let p = parse("$ORIGIN x.\n$TTL 5\na TYPE1 \\# 4 7f000001\n");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.records[0].data, RData::A("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn errors_have_lines_and_parsing_goes_on() {
        let p = parse("$ORIGIN x.\n$TTL 5\na A 1.2.3\nb A 1.2.3.4\nc BOGUS 1\nd TYPE1 \\# 3 7f0000\ne TXT \"open\nf A 1.2.3.4\n");
        let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 5, 6, 7], "{:?}", p.errors);
        assert!(p.errors[0].to_string().starts_with("test.zone:3: "));
        assert!(p.errors[0].message.contains("IPv4"));
        assert!(p.errors[1].message.contains("BOGUS"));
        assert!(p.errors[2].message.contains("A RDATA must be 4 octets"));
        assert!(p.errors[3].message.contains("not closed"));
        assert_eq!(p.records.len(), 2);
    }

    #[test]
    fn unclosed_paren() {
        let p = parse("$ORIGIN x.\n@ 5 SOA a b ( 1 2 3 4\n5\n");
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].line, 2);
        assert!(p.errors[0].message.contains("never closed"));
    }

    #[test]
    fn no_ttl_is_an_error() {
        let p = parse("$ORIGIN x.\na A 1.2.3.4\n");
        assert!(p.errors[0].message.contains("no TTL"));
    }

    #[test]
    fn class_and_ttl_in_either_order() {
        let p = parse("$ORIGIN x.\na IN 30 A 1.2.3.4\nb 40 IN A 1.2.3.4\nc CH A 1.2.3.4\n");
        assert_eq!(p.records[0].ttl, 30);
        assert_eq!(p.records[1].ttl, 40);
        assert!(p.errors[0].message.contains("only IN"));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "\\",
            "\"",
            "(",
            ")",
            "$",
            "$ORIGIN",
            "@",
            "a \\# 1 zz",
            "a 1 TYPE65280 \\# 2 0000",
            "\u{e9}\\\u{e9}",
            "a A \\",
            "$TTL 1\n a A 1.1.1.1",
            "x. 1 SSI",
            "x. 1 APKEY 1 2",
        ] {
            let _ = parse(text);
        }
    }

    #[test]
    fn an_entry_of_empty_parentheses_is_no_panic() {
        // Found by tools/fuzz.sh (zone_file): "()" made an entry without tokens.
        for text in [
            "()",
            "( )\n",
            "$ORIGIN x.\n()\n@ 5 SOA a b 1 2 3 4 5\n",
            // And a class-like token cut inside a character (CLAS + a two-byte letter).
            "$ORIGIN x.\n@ CLAS\u{e9}x A 1.2.3.4\n",
            "$ORIGIN x.\n@ \"\" A 1.2.3.4\n",
        ] {
            let _ = parse(text);
        }
    }
}
