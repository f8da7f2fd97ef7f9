//! Zone validation: the checks `mimi zone check` prints and the DP applies on load.
//!
//! Problems point at records by index and line, so the server can refuse exactly the bad
//! records and serve the rest.

use std::collections::HashMap;

use super::rdata::{RData, TYPE_A, TYPE_AAAA, TYPE_NS, TYPE_SOA};
use super::ZoneFile;
use crate::name::Name;
use crate::record::{verify_batch, Ssi, TrustStore};

/// Mappings expiring sooner than this get a warning.
pub const EXPIRY_WARNING_SECS: u64 = 7 * 86400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub line: usize,
    /// Index into the zone's records, when the problem is one record's.
    pub record: Option<usize>,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub mappings: usize,
    pub signatures_verified: usize,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.problems.len() - self.errors()
    }

    /// Indexes of records that have an error and must not be served.
    pub fn rejected_records(&self) -> std::collections::HashSet<usize> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .filter_map(|p| p.record)
            .collect()
    }
}

/// Checks a zone: structure, owner binding, providers and key ids against `trust`, SSI
/// host versus provider, every signature (in parallel), validity windows at `now`, and
/// duplicates. Problems come back sorted by line.
pub fn check(zone: &ZoneFile, trust: &TrustStore, apex: &Name, now: u64) -> Report {
    let mut report = Report::default();
    let mut push = |severity, line, record: Option<usize>, message: String| {
        report.problems.push(Problem {
            severity,
            line,
            record,
            message,
        })
    };
    let origin = &zone.origin;

    let soas: Vec<_> = zone
        .records
        .iter()
        .filter(|r| r.data.rtype() == TYPE_SOA)
        .collect();
    match soas.as_slice() {
        [] => push(
            Severity::Error,
            0,
            None,
            format!("zone {origin} has no SOA record"),
        ),
        [one] if one.name != *origin => push(
            Severity::Error,
            one.line,
            None,
            format!("SOA owner {} is not the zone origin {origin}", one.name),
        ),
        [_] => {}
        [_, more @ ..] => {
            for r in more {
                push(Severity::Error, r.line, None, "a second SOA record".into());
            }
        }
    }
    if !zone
        .records
        .iter()
        .any(|r| r.name == *origin && r.data.rtype() == TYPE_NS)
    {
        push(
            Severity::Error,
            0,
            None,
            format!("zone {origin} has no NS records at its apex"),
        );
    }

    // Zone cuts, to spot data hidden below a delegation.
    let cuts: Vec<&Name> = zone
        .records
        .iter()
        .filter(|r| r.data.rtype() == TYPE_NS && r.name != *origin)
        .map(|r| &r.name)
        .collect();
    let below_cut = |name: &Name| cuts.iter().any(|c| name != *c && name.is_subdomain_of(c));

    let mut to_verify: Vec<(usize, &Name, &Ssi)> = Vec::new();
    let mut seen_mapping: HashMap<(&[u8], &[u8]), usize> = HashMap::new();
    let mut seen_record: HashMap<(&[u8], u16, Vec<u8>), usize> = HashMap::new();

    for (idx, r) in zone.records.iter().enumerate() {
        let line = r.line;
        if !r.name.is_subdomain_of(origin) {
            push(
                Severity::Error,
                line,
                Some(idx),
                format!("{} is outside the zone {origin}", r.name),
            );
            continue;
        }
        let rtype = r.data.rtype();
        if let Some(first) = seen_record.insert((r.name.as_wire(), rtype, r.data.to_wire()), line) {
            push(
                Severity::Warning,
                line,
                Some(idx),
                format!("duplicate of the record at line {first}"),
            );
        }
        if below_cut(&r.name) && rtype != TYPE_A && rtype != TYPE_AAAA {
            push(
                Severity::Warning,
                line,
                Some(idx),
                format!("{} lies below a delegation and will not be served", r.name),
            );
        }
        match &r.data {
            RData::Ssi(ssi) => {
                report.mappings += 1;
                if let Err(m) = check_sii_owner(&r.name, apex) {
                    push(Severity::Error, line, Some(idx), m);
                    continue;
                }
                if let Some(first) =
                    seen_mapping.insert((r.name.as_wire(), ssi.provider.as_wire()), line)
                {
                    push(
                        Severity::Error,
                        line,
                        Some(idx),
                        format!(
                            "second mapping of {} for provider {} (first at line {first}): one per provider",
                            r.name, ssi.provider
                        ),
                    );
                }
                if let Err(e) = ssi.check_provider() {
                    push(Severity::Error, line, Some(idx), e.to_string());
                    continue;
                }
                if ssi.not_before > ssi.not_after {
                    push(
                        Severity::Error,
                        line,
                        Some(idx),
                        "validity window ends before it starts".into(),
                    );
                    continue;
                }
                if ssi.not_after < now {
                    push(
                        Severity::Error,
                        line,
                        Some(idx),
                        format!(
                            "mapping for {} expired at {}",
                            ssi.uri,
                            crate::record::format_time(ssi.not_after)
                        ),
                    );
                } else if ssi.not_after < now + EXPIRY_WARNING_SECS {
                    push(
                        Severity::Warning,
                        line,
                        Some(idx),
                        format!(
                            "mapping for {} expires soon, at {}",
                            ssi.uri,
                            crate::record::format_time(ssi.not_after)
                        ),
                    );
                }
                if ssi.not_before > now {
                    push(
                        Severity::Warning,
                        line,
                        Some(idx),
                        format!(
                            "mapping for {} is not valid until {}",
                            ssi.uri,
                            crate::record::format_time(ssi.not_before)
                        ),
                    );
                }
                to_verify.push((idx, &r.name, ssi));
            }
            RData::ApKey(key) => {
                let ap = Name::parse("ap", Some(apex)).ok();
                let under_ap = ap
                    .as_ref()
                    .is_some_and(|ap| r.name.is_subdomain_of(ap) && r.name != *ap);
                if !under_ap {
                    push(
                        Severity::Error,
                        line,
                        Some(idx),
                        format!("APKEY owner {} is not <provider>.ap.{apex}", r.name),
                    );
                }
                if let Err(e) = key.verifying_key() {
                    push(Severity::Error, line, Some(idx), e.to_string());
                }
                if key.not_after < now {
                    push(
                        Severity::Error,
                        line,
                        Some(idx),
                        format!(
                            "APKEY expired at {}",
                            crate::record::format_time(key.not_after)
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    let items: Vec<(&Name, &Ssi)> = to_verify.iter().map(|(_, n, s)| (*n, *s)).collect();
    let results = verify_batch(&items, trust);
    report.signatures_verified = results.iter().filter(|r| r.is_ok()).count();
    for ((idx, _, _), result) in to_verify.iter().zip(results) {
        if let Err(e) = result {
            push(
                Severity::Error,
                zone.records[*idx].line,
                Some(*idx),
                e.to_string(),
            );
        }
    }
    report
        .problems
        .sort_by(|a, b| (a.line, b.severity).cmp(&(b.line, a.severity)));
    report
}

/// An SSI owner must be an SII owner name under `apex`: reversed E.164 digits under
/// `e164.<apex>`, or a 56-hex local-part hash and a domain under `email.<apex>`.
fn check_sii_owner(owner: &Name, apex: &Name) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{owner} is not a valid SII owner name: {why}"));
    let labels: Vec<&[u8]> = owner.labels().collect();
    let apex_labels = apex.label_count();
    if !owner.is_subdomain_of(apex) || labels.len() < apex_labels + 2 {
        return bad(&format!(
            "expected a name under e164.{apex} or email.{apex}"
        ));
    }
    let inner = &labels[..labels.len() - apex_labels];
    let (kind, rest) = inner
        .split_last()
        .map(|(k, r)| (*k, r))
        .unwrap_or((b"", &[]));
    match kind {
        b"e164" => {
            if rest.is_empty() || rest.len() > 15 {
                return bad("an E.164 number has 1 to 15 digits");
            }
            if !rest.iter().all(|l| l.len() == 1 && l[0].is_ascii_digit()) {
                return bad("every label under e164 must be one digit");
            }
            Ok(())
        }
        b"email" => {
            let Some((hash, domain)) = rest.split_first() else {
                return bad("no local-part hash");
            };
            if hash.len() != 56 || !hash.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                return bad("the first label must be the 56-hex-digit local-part hash");
            }
            if domain.len() < 2 {
                return bad("the email domain needs at least two labels");
            }
            Ok(())
        }
        _ => bad(&format!(
            "expected a name under e164.{apex} or email.{apex}"
        )),
    }
}
