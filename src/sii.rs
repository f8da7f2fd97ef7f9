//! Service-independent identifiers (SIIs): E.164 phone numbers and email addresses,
//! their normalised forms and the DNS owner names they map to (DESIGN.md section 3).

use std::fmt;
use std::str::FromStr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use phonenumber::metadata::DATABASE;
use sha2::{Digest, Sha256};
use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

use crate::name::{Name, NameError, MAX_WIRE_LEN};

/// The default apex under which `e164.` and `email.` zones live.
pub const DEFAULT_APEX: &str = "mimi.arpa.";

/// Most digits in an E.164 number, country code included (ITU-T E.164 section 6).
const E164_MAX_DIGITS: usize = 15;
/// Longest email local part in octets (RFC 5321 section 4.5.3.1.1).
const MAX_LOCAL_PART: usize = 64;
/// Longest domain name in presentation form, without the trailing dot.
const MAX_DOMAIN_CHARS: usize = 253;
/// Octets of SHA-256 kept for the local-part label (RFC 7929 section 3).
const LOCAL_HASH_OCTETS: usize = 28;

/// A normalised service-independent identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sii {
    /// An E.164 number such as `+15551112222`.
    Phone { e164: String },
    /// An email address: `local` is NFC-normalised and lowercase, `domain` is the
    /// lowercase IDNA A-label form without a trailing dot.
    Email { local: String, domain: String },
}

/// Why an input could not be used as an SII, or could not be mapped to a DNS name.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SiiError {
    #[error("empty input: expected a phone number (+CC...) or an email address")]
    Empty,

    #[error("{input:?} is neither an email address (it has no '@') nor a phone number (it has no digits)")]
    NotAnSii { input: String },
    #[error("{input:?}: letters are not allowed in a phone number (vanity numbers are not supported; write the digits)")]
    PhoneLetters { input: String },
    #[error("{input:?}: character {ch:?} is not allowed in a phone number (only digits, spaces, '-', '.', '(' and ')' after an optional leading '+')")]
    PhoneBadChar { input: String, ch: char },
    #[error("{input:?}: '+' may appear only once, at the start of a phone number")]
    PhoneMisplacedPlus { input: String },
    #[error("{input:?}: a phone number needs digits")]
    PhoneNoDigits { input: String },
    #[error("national number {input:?} needs a region (use an international +CC form or pass a region such as US)")]
    NeedsRegion { input: String },
    #[error("unknown region {region:?} (expected an ISO 3166 code such as US or GB)")]
    UnknownRegion { region: String },
    #[error("{input}: unknown country code +{code}")]
    UnknownCountryCode { input: String, code: String },
    #[error("{input}: too short for country code {code} (possible lengths: {lengths})")]
    PhoneTooShort {
        input: String,
        code: u16,
        lengths: String,
    },
    #[error("{input}: too long for country code {code} (possible lengths: {lengths})")]
    PhoneTooLong {
        input: String,
        code: u16,
        lengths: String,
    },
    #[error("{input}: a national number of {len} digits is not possible for country code {code} (possible lengths: {lengths})")]
    PhoneBadLength {
        input: String,
        code: u16,
        len: usize,
        lengths: String,
    },
    #[error("{input}: has {digits} digits, but an E.164 number has at most 15 including the country code")]
    PhoneTooManyDigits { input: String, digits: usize },
    #[error("{input}: not a usable phone number ({reason})")]
    PhoneUnparsable { input: String, reason: String },

    #[error("email address {input:?} has no '@'")]
    EmailNoAt { input: String },
    #[error("email address {input:?} has an empty local part (nothing before the '@')")]
    EmailEmptyLocal { input: String },
    #[error("email address {input:?}: local part is {len} octets long, more than the limit of 64")]
    EmailLocalTooLong { input: String, len: usize },
    #[error("email address {input:?}: local part contains {ch:?}; whitespace and control characters are not allowed")]
    EmailLocalBadChar { input: String, ch: char },
    #[error("email address {input:?} has an empty domain (nothing after the '@')")]
    EmailEmptyDomain { input: String },
    #[error("email address {input:?}: IP-address domains are not supported; use a domain name")]
    EmailIpLiteral { input: String },
    #[error("domain {domain:?} is not a valid IDNA domain: {reason}")]
    EmailBadDomain { domain: String, reason: String },
    #[error("domain {domain:?} has a single label; an email domain needs at least two (like example.com)")]
    EmailSingleLabel { domain: String },
    #[error(
        "domain {domain:?}: label {label:?} is {len} octets long, more than the DNS limit of 63"
    )]
    EmailDomainLabelTooLong {
        domain: String,
        label: String,
        len: usize,
    },
    #[error("domain {domain:?} is {len} characters long, longer than the DNS limit of 253")]
    EmailDomainTooLong { domain: String, len: usize },

    #[error("owner name for {sii} would be {len} characters, longer than 253 characters")]
    OwnerNameTooLong { sii: String, len: usize },
    #[error("owner name for {sii} is not a valid DNS name: {reason}")]
    OwnerName { sii: String, reason: String },
}

impl Sii {
    /// Parses and normalises a phone number or an email address. Input containing '@'
    /// (or starting with `mailto:`) is an email address, anything else a phone number
    /// (an optional `tel:` prefix is stripped). `region` (ISO 3166, such as "US") is
    /// needed only for phone numbers written without a leading '+'.
    pub fn parse(input: &str, region: Option<&str>) -> Result<Sii, SiiError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(SiiError::Empty);
        }
        if let Some(rest) = strip_prefix_ci(input, "mailto:") {
            return parse_email(rest.trim());
        }
        if let Some(rest) = strip_prefix_ci(input, "tel:") {
            return parse_phone(rest.trim(), region);
        }
        if input.contains('@') {
            parse_email(input)
        } else if !input.bytes().any(|b| b.is_ascii_digit())
            && input.chars().any(char::is_alphabetic)
        {
            Err(SiiError::NotAnSii {
                input: input.into(),
            })
        } else {
            parse_phone(input, region)
        }
    }

    /// "phone" or "email".
    pub fn kind(&self) -> &'static str {
        match self {
            Sii::Phone { .. } => "phone",
            Sii::Email { .. } => "email",
        }
    }

    fn zone_label(&self) -> &'static [u8] {
        match self {
            Sii::Phone { .. } => b"e164",
            Sii::Email { .. } => b"email",
        }
    }

    /// The zone holding names of this kind: `e164.<apex>` or `email.<apex>`.
    /// Fails only if `apex` is so long that one more label does not fit.
    pub fn try_zone_suffix(&self, apex: &Name) -> Result<Name, SiiError> {
        let label = self.zone_label();
        let wire = label.len() + 1 + apex.as_wire().len();
        Name::from_labels([label], apex).map_err(|e| self.name_error(e, wire))
    }

    /// The zone holding names of this kind: `e164.<apex>` or `email.<apex>`.
    /// If `apex` is too long to take one more label (over 249 octets), no owner name
    /// fits under it either; the apex itself is returned then and `owner_name` reports
    /// the error.
    pub fn zone_suffix(&self, apex: &Name) -> Name {
        self.try_zone_suffix(apex).unwrap_or_else(|_| apex.clone())
    }

    /// The DNS owner name for this SII under `apex`. Phone: the E.164 digits reversed,
    /// one label each, under `e164.<apex>`. Email: the hex of the first 28 octets of
    /// SHA-256 over the local part, then the domain, under `email.<apex>`. A name over
    /// the DNS limits is an error, never truncated.
    pub fn owner_name(&self, apex: &Name) -> Result<Name, SiiError> {
        let suffix = self.try_zone_suffix(apex)?;
        match self {
            Sii::Phone { e164 } => {
                let digits: Vec<u8> = e164.bytes().filter(u8::is_ascii_digit).collect();
                let labels: Vec<&[u8]> = digits.rchunks(1).collect();
                let wire = label_wire_len(&labels) + suffix.as_wire().len();
                Name::from_labels(labels, &suffix).map_err(|e| self.name_error(e, wire))
            }
            Sii::Email { local, domain } => {
                let hash = local_part_hash(local);
                let labels: Vec<&[u8]> = std::iter::once(hash.as_bytes())
                    .chain(domain.split('.').map(str::as_bytes))
                    .collect();
                let wire = label_wire_len(&labels) + suffix.as_wire().len();
                Name::from_labels(labels, &suffix).map_err(|e| self.name_error(e, wire))
            }
        }
    }

    /// `wire_len` is the wire length the name would have had.
    fn name_error(&self, err: NameError, wire_len: usize) -> SiiError {
        match err {
            // Presentation length (no trailing dot) is the wire length less the first
            // length octet and the root label.
            NameError::TooLong(_) => SiiError::OwnerNameTooLong {
                sii: self.to_string(),
                len: wire_len.max(MAX_WIRE_LEN + 1) - 2,
            },
            other => SiiError::OwnerName {
                sii: self.to_string(),
                reason: other.to_string(),
            },
        }
    }
}

impl fmt::Display for Sii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sii::Phone { e164 } => f.write_str(e164),
            Sii::Email { local, domain } => write!(f, "{local}@{domain}"),
        }
    }
}

impl FromStr for Sii {
    type Err = SiiError;

    fn from_str(s: &str) -> Result<Sii, SiiError> {
        Sii::parse(s, None)
    }
}

/// Lowercase hex of the first 28 octets of SHA-256 over `local` (RFC 7929 section 3).
fn local_part_hash(local: &str) -> String {
    let digest = Sha256::digest(local.as_bytes());
    hex::encode(&digest[..LOCAL_HASH_OCTETS])
}

fn label_wire_len(labels: &[&[u8]]) -> usize {
    labels.iter().map(|l| l.len() + 1).sum()
}

fn strip_prefix_ci<'a>(input: &'a str, prefix: &str) -> Option<&'a str> {
    let head = input.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        input.get(prefix.len()..)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------
// Phone numbers

fn is_phone_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')')
}

fn parse_phone(input: &str, region: Option<&str>) -> Result<Sii, SiiError> {
    if input.is_empty() {
        return Err(SiiError::Empty);
    }
    let (international, body) = match input.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, input),
    };
    let mut digits = String::with_capacity(body.len());
    for c in body.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if c == '+' {
            return Err(SiiError::PhoneMisplacedPlus {
                input: input.into(),
            });
        } else if c.is_alphabetic() {
            return Err(SiiError::PhoneLetters {
                input: input.into(),
            });
        } else if !is_phone_separator(c) {
            return Err(SiiError::PhoneBadChar {
                input: input.into(),
                ch: c,
            });
        }
    }
    if digits.is_empty() {
        return Err(SiiError::PhoneNoDigits {
            input: input.into(),
        });
    }
    // Anything this long cannot be a phone number even with a national prefix; stop
    // before the parser has to deal with it.
    if digits.len() > E164_MAX_DIGITS + 4 {
        return Err(SiiError::PhoneTooManyDigits {
            input: input.into(),
            digits: digits.len(),
        });
    }
    let region = match region {
        Some(r) => Some(parse_region(r)?),
        None => None,
    };

    let (code, parsed) = if international {
        let code = country_code_prefix(&digits).ok_or_else(|| SiiError::UnknownCountryCode {
            input: input.into(),
            code: digits.chars().take(3).collect(),
        })?;
        (code, phonenumber::parse(None, format!("+{digits}")))
    } else {
        let region = region.ok_or_else(|| SiiError::NeedsRegion {
            input: input.into(),
        })?;
        let code = DATABASE
            .by_id(region.as_ref())
            .map(|m| m.country_code())
            .ok_or_else(|| SiiError::UnknownRegion {
                region: region.as_ref().into(),
            })?;
        (code, phonenumber::parse(Some(region), &digits))
    };

    let number = parsed.map_err(|e| {
        use phonenumber::ParseError as P;
        match e {
            P::NoNumber | P::TooShortNsn | P::TooShortAfterIdd => SiiError::PhoneTooShort {
                input: input.into(),
                code,
                lengths: join_lengths(&possible_lengths(code)),
            },
            P::TooLong => SiiError::PhoneTooLong {
                input: input.into(),
                code,
                lengths: join_lengths(&possible_lengths(code)),
            },
            P::InvalidCountryCode => SiiError::UnknownCountryCode {
                input: input.into(),
                code: code.to_string(),
            },
            other => SiiError::PhoneUnparsable {
                input: input.into(),
                reason: other.to_string(),
            },
        }
    })?;

    // The parser may have found a different country code (an international prefix such
    // as 00 in a national-format number); the length check uses the one it found.
    let code = number.code().value();
    let national = number.national().to_string();
    check_length(input, code, national.len())?;
    let e164 = format!("+{code}{national}");
    let total = e164.len() - 1;
    if total > E164_MAX_DIGITS {
        return Err(SiiError::PhoneTooManyDigits {
            input: input.into(),
            digits: total,
        });
    }
    Ok(Sii::Phone { e164 })
}

fn parse_region(region: &str) -> Result<phonenumber::country::Id, SiiError> {
    let upper = region.trim().to_ascii_uppercase();
    let unknown = || SiiError::UnknownRegion {
        region: region.into(),
    };
    let id: phonenumber::country::Id = upper.parse().map_err(|_| unknown())?;
    if DATABASE.by_id(id.as_ref()).is_none() {
        return Err(unknown());
    }
    Ok(id)
}

/// The country calling code at the start of `digits`; codes are prefix-free, so the
/// first 1-, 2- or 3-digit prefix with metadata is the one.
fn country_code_prefix(digits: &str) -> Option<u16> {
    if digits.starts_with('0') {
        return None;
    }
    (1..=3.min(digits.len())).find_map(|n| {
        let code: u16 = digits.get(..n)?.parse().ok()?;
        DATABASE.by_code(&code).map(|_| code)
    })
}

/// National significant number lengths possible for a country code: every dialable
/// number type of the code's main region, as libphonenumber's possibility check does.
/// (The crate leaves the general descriptor's lengths empty, so they are gathered
/// here.) Local-only lengths are left out: an E.164 number is complete.
fn possible_lengths(code: u16) -> Vec<u16> {
    let regions = DATABASE.by_code(&code).unwrap_or_default();
    let Some(main) = regions
        .iter()
        .find(|m| m.is_main_country_for_code())
        .or(regions.first())
    else {
        return Vec::new();
    };
    let d = main.descriptors();
    let types = [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ];
    let mut lengths: Vec<u16> = types
        .into_iter()
        .flatten()
        .flat_map(|desc| desc.possible_length().iter().copied())
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
}

fn join_lengths(lengths: &[u16]) -> String {
    if lengths.is_empty() {
        return "unknown".into();
    }
    lengths
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_length(input: &str, code: u16, len: usize) -> Result<(), SiiError> {
    let lengths = possible_lengths(code);
    let (Some(&min), Some(&max)) = (lengths.first(), lengths.last()) else {
        // No length data for this code: nothing to check against.
        return Ok(());
    };
    let len16 = u16::try_from(len).unwrap_or(u16::MAX);
    if lengths.contains(&len16) {
        return Ok(());
    }
    let input = input.to_string();
    let joined = join_lengths(&lengths);
    Err(if len16 < min {
        SiiError::PhoneTooShort {
            input,
            code,
            lengths: joined,
        }
    } else if len16 > max {
        SiiError::PhoneTooLong {
            input,
            code,
            lengths: joined,
        }
    } else {
        SiiError::PhoneBadLength {
            input,
            code,
            len,
            lengths: joined,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Email addresses

fn parse_email(input: &str) -> Result<Sii, SiiError> {
    let Some((raw_local, raw_domain)) = input.rsplit_once('@') else {
        return Err(SiiError::EmailNoAt {
            input: input.into(),
        });
    };
    if raw_local.is_empty() {
        return Err(SiiError::EmailEmptyLocal {
            input: input.into(),
        });
    }
    if let Some(ch) = raw_local
        .chars()
        .find(|c| c.is_control() || c.is_whitespace())
    {
        return Err(SiiError::EmailLocalBadChar {
            input: input.into(),
            ch,
        });
    }
    let local = raw_local.nfc().collect::<String>().to_lowercase();
    if local.len() > MAX_LOCAL_PART {
        return Err(SiiError::EmailLocalTooLong {
            input: input.into(),
            len: local.len(),
        });
    }
    let domain = normalise_domain(input, raw_domain)?;
    Ok(Sii::Email { local, domain })
}

fn normalise_domain(input: &str, raw: &str) -> Result<String, SiiError> {
    if raw.is_empty() || raw == "." {
        return Err(SiiError::EmailEmptyDomain {
            input: input.into(),
        });
    }
    if raw.starts_with('[') {
        return Err(SiiError::EmailIpLiteral {
            input: input.into(),
        });
    }
    let bad = |reason: String| SiiError::EmailBadDomain {
        domain: raw.into(),
        reason,
    };
    if let Some(ch) = raw.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!(
            "it contains {ch:?}; whitespace and control characters are not allowed"
        )));
    }
    let ascii = to_ascii(raw).map_err(|_| bad(diagnose_domain(raw)))?;
    let ascii = ascii.to_ascii_lowercase();
    let domain = ascii.strip_suffix('.').unwrap_or(&ascii);
    if domain.is_empty() {
        return Err(SiiError::EmailEmptyDomain {
            input: input.into(),
        });
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(bad(
            "it has an empty label (two dots in a row or a leading dot)".into(),
        ));
    }
    if labels.len() < 2 {
        return Err(SiiError::EmailSingleLabel {
            domain: domain.into(),
        });
    }
    if let Some(label) = labels.iter().find(|l| l.len() > crate::name::MAX_LABEL_LEN) {
        return Err(SiiError::EmailDomainLabelTooLong {
            domain: domain.into(),
            label: (*label).into(),
            len: label.len(),
        });
    }
    if domain.len() > MAX_DOMAIN_CHARS {
        return Err(SiiError::EmailDomainTooLong {
            domain: domain.into(),
            len: domain.len(),
        });
    }
    // No top-level domain is all digits, so this is a dotted IPv4 address.
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(SiiError::EmailIpLiteral {
            input: input.into(),
        });
    }
    Ok(domain.into())
}

/// UTS 46 ToASCII with the STD3 (letters, digits, hyphen) rules and no hyphen at the
/// start or end of a label; lengths are checked afterwards to give precise errors.
fn to_ascii(domain: &str) -> Result<String, idna::Errors> {
    Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Ignore,
        )
        .map(|cow| cow.into_owned())
}

/// The idna crate does not say what was wrong, so find the first offending label.
fn diagnose_domain(domain: &str) -> String {
    for label in domain.split('.') {
        if label.is_empty() || to_ascii(label).is_ok() {
            continue;
        }
        if label.starts_with('-') || label.ends_with('-') {
            return format!("label {label:?} starts or ends with a hyphen");
        }
        if let Some(ch) = label
            .chars()
            .find(|c| c.is_ascii() && !c.is_ascii_alphanumeric() && *c != '-')
        {
            return format!("label {label:?} contains {ch:?}, which is not allowed in host names");
        }
        if strip_prefix_ci(label, "xn--").is_some() {
            return format!("label {label:?} is not valid punycode");
        }
        return format!("label {label:?} contains characters IDNA does not allow");
    }
    "it contains characters IDNA does not allow".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apex() -> Name {
        DEFAULT_APEX.parse().unwrap()
    }

    fn phone(s: &str) -> String {
        match Sii::parse(s, None).unwrap() {
            Sii::Phone { e164 } => e164,
            other => panic!("not a phone: {other:?}"),
        }
    }

    fn err(s: &str, region: Option<&str>) -> String {
        match Sii::parse(s, region) {
            Ok(v) => panic!("{s:?} parsed as {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_mentions(msg: &str, parts: &[&str]) {
        for p in parts {
            assert!(msg.contains(p), "{msg:?} does not mention {p:?}");
        }
    }

    #[test]
    fn phone_vector() {
        let sii = Sii::parse("+1 (555) 111-2222", None).unwrap();
        assert_eq!(sii.to_string(), "+15551112222");
        assert_eq!(sii.kind(), "phone");
        assert_eq!(
            sii.owner_name(&apex()).unwrap().to_string(),
            "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa."
        );
        assert_eq!(sii.zone_suffix(&apex()).to_string(), "e164.mimi.arpa.");
    }

    #[test]
    fn email_vector() {
        let sii = Sii::parse("Hugh@Example.COM", None).unwrap();
        assert_eq!(
            sii,
            Sii::Email {
                local: "hugh".into(),
                domain: "example.com".into()
            }
        );
        assert_eq!(sii.to_string(), "hugh@example.com");
        assert_eq!(sii.kind(), "email");
        assert_eq!(
            sii.owner_name(&apex()).unwrap().to_string(),
            "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6.example.com.email.mimi.arpa."
        );
        assert_eq!(sii.zone_suffix(&apex()).to_string(), "email.mimi.arpa.");
    }

    #[test]
    fn phone_separators() {
        for s in [
            "+1 555 111 2222",
            "+1.555.111.2222",
            "+1-555-111-2222",
            "+1 (555) 111-2222",
            "  +15551112222\t",
            "+1\u{a0}555\u{a0}111\u{a0}2222",
        ] {
            assert_eq!(phone(s), "+15551112222", "{s:?}");
        }
    }

    #[test]
    fn phone_international_and_national() {
        assert_eq!(phone("+44 20 7946 0000"), "+442079460000");
        assert_eq!(phone("+44 (0)20 7946 0000"), "+442079460000");
        let gb = Sii::parse("020 7946 0000", Some("GB")).unwrap();
        assert_eq!(gb.to_string(), "+442079460000");
        assert_eq!(Sii::parse("020 7946 0000", Some("gb")).unwrap(), gb);
        assert_eq!(
            Sii::parse("(555) 111-2222", Some("US"))
                .unwrap()
                .to_string(),
            "+15551112222"
        );
        // A region does not override an explicit country code.
        assert_eq!(
            Sii::parse("+1 555 111 2222", Some("GB"))
                .unwrap()
                .to_string(),
            "+15551112222"
        );
        // Italian numbers keep their leading zero.
        assert_eq!(phone("+39 06 1234 5678"), "+390612345678");
        assert_eq!(
            Sii::parse("06 1234 5678", Some("IT")).unwrap().to_string(),
            "+390612345678"
        );
        assert_eq!(phone("+800 1234 5678"), "+80012345678");
    }

    #[test]
    fn phone_errors() {
        let m = err("020 7946 0000", None);
        assert_mentions(&m, &["020 7946 0000", "needs a region", "+CC"]);
        let m = err("020 7946 0000", Some("XX"));
        assert_mentions(&m, &["unknown region", "XX"]);
        let m = err("+1 555", None);
        assert_mentions(
            &m,
            &[
                "+1 555",
                "too short",
                "country code 1",
                "(possible lengths: 10)",
            ],
        );
        // Canada's seven-digit 310 numbers are not reachable from abroad.
        let m = err("+1 310 1234", None);
        assert_mentions(&m, &["too short", "(possible lengths: 10)"]);
        let m = err("+1 5", None);
        assert_mentions(&m, &["+1 5", "too short", "country code 1"]);
        let m = err("+1", None);
        assert_mentions(&m, &["too short", "country code 1"]);
        let m = err("+1 5551112222333", None);
        assert_mentions(
            &m,
            &["+1 5551112222333", "too long", "country code 1", "10"],
        );
        let m = err("+999 123", None);
        assert_mentions(&m, &["+999 123", "unknown country code +999"]);
        let m = err("+0 123", None);
        assert_mentions(&m, &["unknown country code +0"]);
        let m = err("555", Some("US"));
        assert_mentions(&m, &["too short", "country code 1"]);
        let m = err("+44 20 7946 00", None);
        assert_mentions(&m, &["not possible", "country code 44"]);
        let m = err("+49 123 456 789 012 345", None);
        assert_mentions(&m, &["at most 15"]);
        let m = err("+1234567890123456789012", None);
        assert_mentions(&m, &["at most 15"]);
    }

    #[test]
    fn phone_rejects_letters_and_junk() {
        for s in ["+1 800 FLOWERS", "1-800-flowers", "tel:+1 555 CALL NOW"] {
            let m = err(s, Some("US"));
            assert_mentions(&m, &["letters are not allowed"]);
        }
        let m = err("+1 555 111 2222 #3", None);
        assert_mentions(&m, &["'#'", "not allowed"]);
        let m = err("+1 555 111 2222;ext=3", None);
        assert_mentions(&m, &["';'", "not allowed"]);
        let m = err("++15551112222", None);
        assert_mentions(&m, &["'+'", "only once"]);
        let m = err("+1 555 +111 2222", None);
        assert_mentions(&m, &["'+'", "only once"]);
        let m = err("bob", None);
        assert_mentions(
            &m,
            &["\"bob\"", "neither an email address", "nor a phone number"],
        );
        let m = err("+ - ()", None);
        assert_mentions(&m, &["needs digits"]);
        let m = err("+１５５５１１１２２２２", None);
        assert_mentions(&m, &["not allowed"]);
    }

    #[test]
    fn prefixes() {
        assert_eq!(phone("tel:+1-555-111-2222"), "+15551112222");
        assert_eq!(phone("TEL:+1-555-111-2222"), "+15551112222");
        assert_eq!(
            Sii::parse("mailto:Hugh@Example.COM", None)
                .unwrap()
                .to_string(),
            "hugh@example.com"
        );
        assert_eq!(
            "MailTo:hugh@example.com"
                .parse::<Sii>()
                .unwrap()
                .to_string(),
            "hugh@example.com"
        );
        let m = err("mailto:+15551112222", None);
        assert_mentions(&m, &["no '@'"]);
    }

    #[test]
    fn unicode_email() {
        let sii = Sii::parse("Ünïcødé@Bücher.example", None).unwrap();
        assert_eq!(
            sii,
            Sii::Email {
                local: "ünïcødé".into(),
                domain: "xn--bcher-kva.example".into()
            }
        );
        let nfd: String = "Ünïcødé".nfd().collect();
        assert_ne!(nfd, "Ünïcødé");
        let from_nfd = Sii::parse(&format!("{nfd}@b\u{fc}cher.example"), None).unwrap();
        assert_eq!(from_nfd, sii);
        assert_eq!(
            from_nfd.owner_name(&apex()).unwrap(),
            sii.owner_name(&apex()).unwrap()
        );
        let name = sii.owner_name(&apex()).unwrap().to_string();
        assert!(
            name.ends_with(".xn--bcher-kva.example.email.mimi.arpa."),
            "{name}"
        );
        // An A-label domain and a trailing dot give the same SII.
        assert_eq!(
            Sii::parse("ünïcødé@XN--BCHER-KVA.example.", None).unwrap(),
            sii
        );
    }

    #[test]
    fn email_errors() {
        let m = err("mailto:hugh.example.com", None);
        assert_mentions(&m, &["hugh.example.com", "no '@'"]);
        let m = err("@example.com", None);
        assert_mentions(&m, &["@example.com", "empty local part"]);
        let m = err("hugh@", None);
        assert_mentions(&m, &["hugh@", "empty domain"]);
        let m = err("hugh@.", None);
        assert_mentions(&m, &["empty domain"]);
        let m = err("hugh@ex ample.com", None);
        assert_mentions(
            &m,
            &["ex ample.com", "not a valid IDNA domain", "whitespace"],
        );
        let m = err("hugh@ex_ample.com", None);
        assert_mentions(&m, &["ex_ample.com", "not a valid IDNA domain", "'_'"]);
        let m = err("hugh@-example.com", None);
        assert_mentions(&m, &["-example.com", "hyphen"]);
        let m = err("hugh@xn--zz.com", None);
        assert_mentions(&m, &["xn--zz", "punycode"]);
        let m = err("hugh@example..com", None);
        assert_mentions(&m, &["example..com", "empty label"]);
        let m = err("hugh@localhost", None);
        assert_mentions(&m, &["localhost", "single label"]);
        let m = err("hugh@[192.0.2.1]", None);
        assert_mentions(&m, &["[192.0.2.1]", "IP-address"]);
        let m = err("hugh@192.0.2.1", None);
        assert_mentions(&m, &["192.0.2.1", "IP-address"]);
        let m = err("hu gh@example.com", None);
        assert_mentions(&m, &["hu gh@example.com", "whitespace"]);
        let m = err("hu\u{7}gh@example.com", None);
        assert_mentions(&m, &["control"]);
        let long_local = "a".repeat(65);
        let m = err(&format!("{long_local}@example.com"), None);
        assert_mentions(&m, &[&long_local, "65 octets", "64"]);
        assert!(Sii::parse(&format!("{}@example.com", "a".repeat(64)), None).is_ok());
        let long_label = "b".repeat(64);
        let m = err(&format!("hugh@{long_label}.com"), None);
        assert_mentions(&m, &[&long_label, "64 octets", "63"]);
        let long_domain = format!("{}.com", vec!["c".repeat(60); 5].join("."));
        let m = err(&format!("hugh@{long_domain}"), None);
        assert_mentions(&m, &[&long_domain, "longer", "253"]);
    }

    #[test]
    fn owner_name_too_long() {
        // A valid 190-character domain, but with the hash label, email and the apex
        // the owner name passes 253 characters.
        let domain = format!("{}.com", vec!["d".repeat(62); 3].join("."));
        let sii = Sii::parse(&format!("hugh@{domain}"), None).unwrap();
        let e = sii.owner_name(&apex()).unwrap_err();
        assert!(matches!(e, SiiError::OwnerNameTooLong { .. }), "{e:?}");
        assert_mentions(&e.to_string(), &[&domain, "longer than 253 characters"]);
        // Exactly 253 characters: 56 + 1 + 180 + 16 (".email.mimi.arpa").
        let domain = format!("{}.com", vec!["d".repeat(58); 3].join("."));
        assert_eq!(domain.len(), 180);
        let sii = Sii::parse(&format!("hugh@{domain}"), None).unwrap();
        let name = sii.owner_name(&apex()).unwrap().to_string();
        assert_eq!(name.len(), 253 + 1);
        // One more character is too many.
        let sii = Sii::parse(&format!("hugh@d{domain}"), None).unwrap();
        let m = sii.owner_name(&apex()).unwrap_err().to_string();
        assert_mentions(&m, &["254 characters"]);

        // A phone number under an apex so long nothing fits.
        let long_apex =
            Name::parse(&format!("{}.", vec!["e".repeat(62); 4].join(".")), None).unwrap();
        let sii = Sii::parse("+15551112222", None).unwrap();
        let m = sii.owner_name(&long_apex).unwrap_err().to_string();
        assert_mentions(&m, &["+15551112222", "longer than 253 characters"]);
        assert_eq!(sii.zone_suffix(&long_apex), long_apex);
    }

    #[test]
    fn empty_and_odd_inputs_do_not_panic() {
        let odd = [
            "",
            " ",
            "+",
            "@",
            "@@",
            "+0",
            "++1",
            "\u{0}",
            "tel:",
            "mailto:",
            "mailto:@",
            "tel:@",
            "a@",
            "@b",
            "+\u{0}",
            "0",
            "00",
            "000000000000000000000000000000",
            "+1 (",
            "()",
            "...",
            "+44 0",
            "é@é",
            "\u{300}@x.y",
            "a@b@c.d",
            "a@.",
            "a@..",
            "a@[",
            "a@[]",
            "a@xn--",
            "a@xn--.com",
            "a@-.com",
            "+9",
            "+99",
            "+999",
            "+8",
            "+88",
            "+888",
            "+38",
            "+383",
            "+1-",
            "tel:+",
            "x",
            "İ@x.com",
            "\u{feff}+1 555 111 2222",
            "a@b.c\u{3002}",
            "a@\u{3002}",
            "+7 8",
        ];
        for s in odd {
            for region in [
                None,
                Some("US"),
                Some("GB"),
                Some("IT"),
                Some(""),
                Some("ZZ"),
            ] {
                if let Ok(sii) = Sii::parse(s, region) {
                    let _ = sii.owner_name(&apex());
                }
            }
        }
        assert_eq!(Sii::parse("", None), Err(SiiError::Empty));
        assert_eq!(Sii::parse("   ", None), Err(SiiError::Empty));
    }

    #[test]
    fn pseudo_random_inputs_do_not_panic() {
        let alphabet: Vec<char> = "+0123456789 -.()@a.Zé\u{0}\u{3002}#;:[]xn-tel:mailto"
            .chars()
            .collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let region = if state & 1 == 0 { None } else { Some("DE") };
            if let Ok(sii) = Sii::parse(&s, region) {
                assert!(sii.owner_name(&apex()).is_ok(), "{s:?} -> {sii:?}");
            }
        }
    }
}
