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
        let at_cut = rtype != TYPE_NS && cuts.iter().any(|c| r.name == **c);
        if (below_cut(&r.name) || at_cut) && rtype != TYPE_A && rtype != TYPE_AAAA {
            push(
                Severity::Warning,
                line,
                Some(idx),
                format!(
                    "{} lies at or below a delegation and will not be served",
                    r.name
                ),
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
pub fn check_sii_owner(owner: &Name, apex: &Name) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ApKey, Context, Method, ProviderKey};
    use ed25519_dalek::SigningKey;

    const NOW: u64 = 1_780_000_000; // 2026-05-28
    const DAY: u64 = 86400;

    /// The carrier zone's head: SOA (line 3), NS (line 4), glue (line 5); data from line 6.
    const CARRIER: &str = "$ORIGIN 5.5.5.1.e164.mimi.arpa.\n$TTL 3600\n\
                           @ SOA ns1 hostmaster 1 3600 600 1209600 300\n\
                           @ NS ns1\n\
                           ns1 A 127.0.0.1\n";
    /// The same for the tree root `mimi.arpa.`.
    const ROOT: &str = "$ORIGIN mimi.arpa.\n$TTL 3600\n\
                        @ SOA ns1 hostmaster 1 3600 600 1209600 300\n\
                        @ NS ns1\n\
                        ns1 A 127.0.0.1\n";
    const ALICE: &str = "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.";
    const BOB: &str = "3.3.3.3.1.1.1.5.5.5.1.e164.mimi.arpa.";

    fn n(s: &str) -> Name {
        s.parse().unwrap()
    }

    fn key(provider: &str, seed: u8) -> ProviderKey {
        ProviderKey {
            provider: n(provider),
            signing: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn chat() -> ProviderKey {
        key("chat.example.", 1)
    }

    fn talk() -> ProviderKey {
        key("talk.example.", 2)
    }

    fn trust(keys: &[&ProviderKey]) -> TrustStore {
        let mut t = TrustStore::new();
        for k in keys {
            t.add(k.provider.clone(), k.verifying_key());
        }
        t
    }

    /// A signed mapping at `owner` with the given URI and validity window.
    fn ssi_with(owner: &str, key: &ProviderKey, uri: &str, nb: u64, na: u64) -> String {
        let mut ssi = Ssi {
            version: 1,
            context: Context::Any,
            withdrawn: false,
            priority: 10,
            seq: 1,
            not_before: nb,
            not_after: na,
            method: Method::SmsOtp,
            verified_at: nb,
            provider: key.provider.clone(),
            uri: uri.to_string(),
            key_id: [0; 8],
            signature: [0; 64],
        };
        ssi.sign(&n(owner), &key.signing);
        format!("{owner} 3600 IN SSI {}\n", ssi.to_presentation())
    }

    fn uri(key: &ProviderKey, user: &str) -> String {
        format!(
            "mimi://{}/u/{user}",
            key.provider.to_string().trim_end_matches('.')
        )
    }

    /// A valid mapping: started a day ago, good for a year.
    fn ssi(owner: &str, key: &ProviderKey, user: &str) -> String {
        ssi_with(owner, key, &uri(key, user), NOW - DAY, NOW + 365 * DAY)
    }

    fn zone(text: &str) -> ZoneFile {
        ZoneFile::from_str_named(text, "t.zone", None).unwrap()
    }

    fn run(text: &str, trust: &TrustStore) -> Report {
        check(&zone(text), trust, &n("mimi.arpa."), NOW)
    }

    /// The one problem of a report.
    fn only(report: &Report) -> &Problem {
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        &report.problems[0]
    }

    fn assert_problem(p: &Problem, severity: Severity, line: usize, needle: &str) {
        assert_eq!(p.severity, severity, "{p:?}");
        assert_eq!(p.line, line, "{p:?}");
        assert!(p.message.contains(needle), "{needle:?} not in {p:?}");
    }

    #[test]
    fn clean_zone_has_no_problems() {
        let (c, t) = (chat(), talk());
        let text = format!(
            "{CARRIER}{}{}{}",
            ssi(ALICE, &c, "alice"),
            ssi(ALICE, &t, "alice"),
            ssi(BOB, &c, "bob")
        );
        let report = run(&text, &trust(&[&c, &t]));
        assert!(report.problems.is_empty(), "{:#?}", report.problems);
        assert_eq!(report.mappings, 3);
        assert_eq!(report.signatures_verified, 3);
        assert_eq!((report.errors(), report.warnings()), (0, 0));
        assert!(report.rejected_records().is_empty());
    }

    #[test]
    fn no_soa() {
        let report = run(
            "$ORIGIN 5.5.5.1.e164.mimi.arpa.\n$TTL 60\n@ NS ns1\nns1 A 127.0.0.1\n",
            &TrustStore::new(),
        );
        let p = only(&report);
        assert_problem(p, Severity::Error, 0, "has no SOA record");
        assert_eq!(p.record, None);
    }

    #[test]
    fn soa_not_at_origin() {
        let report = run(
            "$ORIGIN 5.5.5.1.e164.mimi.arpa.\n$TTL 60\n@ NS ns1\nns1 A 127.0.0.1\n\
             sub SOA ns1 hostmaster 1 2 3 4 5\n",
            &TrustStore::new(),
        );
        assert_problem(
            only(&report),
            Severity::Error,
            5,
            "SOA owner sub.5.5.5.1.e164.mimi.arpa. is not the zone origin",
        );
    }

    #[test]
    fn second_soa() {
        let text = format!("{CARRIER}@ SOA ns1 hostmaster 2 3600 600 1209600 300\n");
        assert_problem(
            only(&run(&text, &TrustStore::new())),
            Severity::Error,
            6,
            "a second SOA record",
        );
    }

    #[test]
    fn missing_apex_ns() {
        let report = run(
            "$ORIGIN mimi.arpa.\n$TTL 60\n@ SOA ns1 hostmaster 1 2 3 4 5\n\
             e164 NS ns1.e164\nns1.e164 A 127.0.0.2\n",
            &TrustStore::new(),
        );
        let p = only(&report);
        assert_problem(p, Severity::Error, 0, "no NS records at its apex");
        assert_eq!(p.record, None);
    }

    #[test]
    fn record_outside_the_zone() {
        let text = format!("{CARRIER}other.example. A 10.0.0.1\n");
        let report = run(&text, &TrustStore::new());
        let p = only(&report);
        assert_problem(
            p,
            Severity::Error,
            6,
            "other.example. is outside the zone 5.5.5.1.e164.mimi.arpa.",
        );
        assert_eq!(p.record, Some(3));
        // A mapping outside the zone is refused before anything else about it.
        let c = chat();
        let text = format!(
            "{CARRIER}{}",
            ssi("2.2.2.2.1.1.1.6.6.6.1.e164.mimi.arpa.", &c, "x")
        );
        let report = run(&text, &trust(&[&c]));
        assert_problem(only(&report), Severity::Error, 6, "outside the zone");
        assert_eq!(report.signatures_verified, 0);
    }

    #[test]
    fn duplicate_mapping_for_the_same_provider() {
        let c = chat();
        let text = format!(
            "{CARRIER}{}{}",
            ssi(ALICE, &c, "alice"),
            ssi(ALICE, &c, "alice2")
        );
        let report = run(&text, &trust(&[&c]));
        let p = only(&report);
        assert_problem(
            p,
            Severity::Error,
            7,
            "second mapping of 2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa. for provider chat.example. (first at line 6)",
        );
        assert_eq!(p.record, Some(4));
        assert_eq!(report.rejected_records(), [4].into());
    }

    #[test]
    fn exact_duplicate_is_a_warning_and_a_duplicate_mapping() {
        let c = chat();
        let line = ssi(ALICE, &c, "alice");
        let text = format!("{CARRIER}{line}{line}");
        let report = run(&text, &trust(&[&c]));
        assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
        // Sorted by line, errors before warnings on the same line.
        assert_problem(&report.problems[0], Severity::Error, 7, "second mapping");
        assert_problem(
            &report.problems[1],
            Severity::Warning,
            7,
            "duplicate of the record at line 6",
        );
        assert_eq!((report.errors(), report.warnings()), (1, 1));
    }

    #[test]
    fn bad_sii_owners() {
        let c = chat();
        let hash = "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6";
        let owners = [
            ("x.e164.mimi.arpa.", "every label under e164 must be one digit"),
            ("12.1.e164.mimi.arpa.", "every label under e164 must be one digit"),
            (
                "0.1.2.3.4.5.6.7.8.9.0.1.2.3.4.5.e164.mimi.arpa.",
                "1 to 15 digits",
            ),
            (
                "0123456789.example.com.email.mimi.arpa.",
                "56-hex-digit local-part hash",
            ),
            (
                "C93F1E400F26708F98CB19D936620DA35EEC8F72E57F9EEC01C1AFDG.example.com.email.mimi.arpa.",
                "56-hex-digit local-part hash",
            ),
            ("x.com.email.mimi.arpa.", "56-hex-digit local-part hash"),
            ("foo.bar.mimi.arpa.", "expected a name under e164.mimi.arpa."),
        ];
        let mut text = ROOT.to_string();
        for (owner, _) in owners {
            text.push_str(&ssi(owner, &c, "x"));
        }
        // Email hash with a one-label domain.
        text.push_str(&ssi(&format!("{hash}.com.email.mimi.arpa."), &c, "x"));
        let report = run(&text, &trust(&[&c]));
        assert_eq!(
            report.problems.len(),
            owners.len() + 1,
            "{:#?}",
            report.problems
        );
        for (i, (owner, why)) in owners.iter().enumerate() {
            let p = &report.problems[i];
            assert_problem(p, Severity::Error, 6 + i, why);
            assert!(
                p.message
                    .starts_with(&format!("{} is not a valid SII owner name", n(owner))),
                "{p:?}"
            );
            assert_eq!(p.record, Some(3 + i));
        }
        assert_problem(
            &report.problems[owners.len()],
            Severity::Error,
            6 + owners.len(),
            "at least two labels",
        );
        assert_eq!(report.signatures_verified, 0);

        // The valid forms pass, email included.
        let good = format!(
            "{ROOT}{}{}{}",
            ssi(ALICE, &c, "a"),
            ssi("1.e164.mimi.arpa.", &c, "b"),
            ssi(&format!("{hash}.example.com.email.mimi.arpa."), &c, "h")
        );
        let report = run(&good, &trust(&[&c]));
        assert!(report.problems.is_empty(), "{:#?}", report.problems);
        assert_eq!(report.signatures_verified, 3);
    }

    #[test]
    fn provider_host_mismatch() {
        let c = chat();
        let text = format!(
            "{CARRIER}{}",
            ssi_with(
                ALICE,
                &c,
                "mimi://talk.example/u/x",
                NOW - DAY,
                NOW + 30 * DAY
            )
        );
        let report = run(&text, &trust(&[&c]));
        let p = only(&report);
        assert_problem(
            p,
            Severity::Error,
            6,
            "SSI URI host talk.example. is not the provider chat.example.",
        );
        assert_eq!(p.record, Some(3));
    }

    #[test]
    fn expired() {
        let c = chat();
        let text = format!(
            "{CARRIER}{}",
            ssi_with(ALICE, &c, &uri(&c, "old"), NOW - 400 * DAY, NOW - DAY)
        );
        let report = run(&text, &trust(&[&c]));
        let p = only(&report);
        assert_problem(
            p,
            Severity::Error,
            6,
            "mapping for mimi://chat.example/u/old expired at ",
        );
        assert!(p.message.contains(&crate::record::format_time(NOW - DAY)));
        assert_eq!(report.signatures_verified, 1, "still verified");
        assert_eq!(report.rejected_records(), [3].into());
    }

    #[test]
    fn expiring_soon() {
        let c = chat();
        let at = |na: u64| {
            let text = format!(
                "{CARRIER}{}",
                ssi_with(ALICE, &c, &uri(&c, "soon"), NOW - DAY, na)
            );
            run(&text, &trust(&[&c]))
        };
        let report = at(NOW + 3 * DAY);
        assert_problem(only(&report), Severity::Warning, 6, "expires soon");
        assert!(report.rejected_records().is_empty());
        assert_problem(
            only(&at(NOW + EXPIRY_WARNING_SECS - 1)),
            Severity::Warning,
            6,
            "expires soon",
        );
        assert!(at(NOW + EXPIRY_WARNING_SECS).problems.is_empty());
        // The last valid second is not yet expired.
        assert_problem(only(&at(NOW)), Severity::Warning, 6, "expires soon");
        assert_problem(only(&at(NOW - 1)), Severity::Error, 6, "expired");
    }

    #[test]
    fn not_yet_valid() {
        let c = chat();
        let text = format!(
            "{CARRIER}{}",
            ssi_with(ALICE, &c, &uri(&c, "later"), NOW + DAY, NOW + 365 * DAY)
        );
        let report = run(&text, &trust(&[&c]));
        let p = only(&report);
        assert_problem(p, Severity::Warning, 6, "is not valid until");
        assert!(p.message.contains(&crate::record::format_time(NOW + DAY)));
        assert_eq!(report.signatures_verified, 1);
    }

    #[test]
    fn inverted_window() {
        let c = chat();
        let text = format!(
            "{CARRIER}{}",
            ssi_with(ALICE, &c, &uri(&c, "x"), NOW + 2 * DAY, NOW + DAY)
        );
        let report = run(&text, &trust(&[&c]));
        assert_problem(only(&report), Severity::Error, 6, "ends before it starts");
        assert_eq!(report.signatures_verified, 0);
    }

    #[test]
    fn untrusted_provider() {
        let (c, t) = (chat(), talk());
        let text = format!(
            "{CARRIER}{}{}",
            ssi(ALICE, &c, "alice"),
            ssi(ALICE, &t, "alice")
        );
        let report = run(&text, &trust(&[&c]));
        let p = only(&report);
        assert_problem(
            p,
            Severity::Error,
            7,
            "untrusted provider talk.example.: not in the trust store",
        );
        assert_eq!(p.record, Some(4));
        assert_eq!(report.signatures_verified, 1);
        // An empty trust store trusts nobody.
        assert_eq!(run(&text, &TrustStore::new()).errors(), 2);
    }

    #[test]
    fn unknown_key_id() {
        let c = chat();
        let rotated = key("chat.example.", 9);
        let text = format!("{CARRIER}{}", ssi(ALICE, &c, "alice"));
        let report = run(&text, &trust(&[&rotated]));
        let p = only(&report);
        assert_problem(
            p,
            Severity::Error,
            6,
            &format!(
                "provider chat.example.: key id {} is not a trusted key of this provider",
                hex::encode(c.key_id())
            ),
        );
        // Trusting both the old and the new key accepts it.
        assert!(run(&text, &trust(&[&rotated, &c])).problems.is_empty());
    }

    /// Replaces the first character of the signature (the last token of the line).
    fn tamper(line: &str) -> String {
        let (head, sig) = line.trim_end().rsplit_once(' ').unwrap();
        let first = if sig.starts_with('A') { 'B' } else { 'A' };
        format!("{head} {first}{}\n", &sig[1..])
    }

    #[test]
    fn bad_signature() {
        let c = chat();
        let text = format!(
            "{CARRIER}{}{}",
            ssi(ALICE, &c, "alice"),
            tamper(&ssi(BOB, &c, "bob"))
        );
        let report = run(&text, &trust(&[&c]));
        let p = only(&report);
        assert_problem(p, Severity::Error, 7, "signature does not verify under key");
        assert_eq!(p.record, Some(4));
        assert_eq!(report.signatures_verified, 1);

        // A record signed for another owner does not verify at this one.
        let moved = ssi(ALICE, &c, "alice").replacen(ALICE, BOB, 1);
        let report = run(&format!("{CARRIER}{moved}"), &trust(&[&c]));
        assert_problem(
            only(&report),
            Severity::Error,
            6,
            "signature does not verify",
        );
    }

    #[test]
    fn many_signatures_one_bad() {
        // More than one verification batch, with one bad record in the middle.
        let c = chat();
        let mut text = CARRIER.to_string();
        for i in 0..300u32 {
            let owner = format!(
                "{}.{}.{}.1.1.1.5.5.5.1.e164.mimi.arpa.",
                i % 10,
                (i / 10) % 10,
                i / 100
            );
            let line = ssi(&owner, &c, &format!("u{i}"));
            text.push_str(&if i == 150 { tamper(&line) } else { line });
        }
        let report = run(&text, &trust(&[&c]));
        let p = only(&report);
        assert_problem(p, Severity::Error, 6 + 150, "signature does not verify");
        assert_eq!(report.mappings, 300);
        assert_eq!(report.signatures_verified, 299);
    }

    fn apkey(key: &ProviderKey, nb: u64, na: u64) -> String {
        ApKey::new(&key.verifying_key(), nb, na).to_presentation()
    }

    #[test]
    fn apkey_owner_must_be_provider_under_ap() {
        let c = chat();
        let good = apkey(&c, NOW - DAY, NOW + 365 * DAY);
        let text = format!(
            "{ROOT}chat.example.ap APKEY {good}\n\
             chat.example.keys APKEY {good}\n\
             ap APKEY {good}\n\
             chat.example.ap.other. APKEY {good}\n"
        );
        let report = run(&text, &TrustStore::new());
        assert_eq!(report.problems.len(), 3, "{:#?}", report.problems);
        assert_problem(
            &report.problems[0],
            Severity::Error,
            7,
            "APKEY owner chat.example.keys.mimi.arpa. is not <provider>.ap.mimi.arpa.",
        );
        assert_problem(
            &report.problems[1],
            Severity::Error,
            8,
            "APKEY owner ap.mimi.arpa. is not <provider>.ap.mimi.arpa.",
        );
        assert_problem(&report.problems[2], Severity::Error, 9, "outside the zone");
        assert_eq!(report.rejected_records(), [4, 5, 6].into());
    }

    #[test]
    fn expired_apkey() {
        let c = chat();
        let text = format!(
            "{ROOT}chat.example.ap APKEY {}\n",
            apkey(&c, NOW - 400 * DAY, NOW - DAY)
        );
        assert_problem(
            only(&run(&text, &TrustStore::new())),
            Severity::Error,
            6,
            "APKEY expired at",
        );
    }

    #[test]
    fn data_below_a_delegation() {
        let text = "$ORIGIN 1.e164.mimi.arpa.\n$TTL 60\n\
                    @ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 127.0.0.1\n\
                    5.5.5 NS ns1.5.5.5\n\
                    ns1.5.5.5 A 127.0.0.4\n\
                    ns1.5.5.5 AAAA ::4\n\
                    x.5.5.5 TXT \"hidden\"\n";
        let report = run(text, &TrustStore::new());
        let p = only(&report);
        assert_problem(
            p,
            Severity::Warning,
            9,
            "x.5.5.5.1.e164.mimi.arpa. lies at or below a delegation and will not be served",
        );
        assert_eq!(p.record, Some(6));
        assert!(report.rejected_records().is_empty());
    }

    /// The store answers a query for the cut itself with a referral, so data at the cut
    /// (other than NS and address records that may be glue) is not served either.
    #[test]
    fn data_at_a_delegation_point() {
        let text = "$ORIGIN 1.e164.mimi.arpa.\n$TTL 60\n\
                    @ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 127.0.0.1\n\
                    5.5.5 NS ns1.5.5.5\n\
                    ns1.5.5.5 A 127.0.0.4\n\
                    5.5.5 TXT \"hidden\"\n";
        let report = run(text, &TrustStore::new());
        assert_problem(only(&report), Severity::Warning, 8, "will not be served");
    }

    #[test]
    fn rejected_records_are_exactly_the_records_with_errors() {
        let (c, t) = (chat(), talk());
        let lines = [
            ssi(ALICE, &c, "alice"),                                      // 3 ok
            ssi_with(BOB, &c, &uri(&c, "old"), NOW - 9 * DAY, NOW - DAY), // 4 expired
            tamper(&ssi(BOB, &t, "bob")),                                 // 5 bad signature
            ssi_with(
                "4.4.4.4.1.1.1.5.5.5.1.e164.mimi.arpa.",
                &c,
                &uri(&c, "soon"),
                NOW - DAY,
                NOW + DAY,
            ), // 6 expiring soon: a warning only
            "other.example. A 10.0.0.1\n".to_string(),                    // 7 outside
            ssi("x.5.5.5.1.e164.mimi.arpa.", &c, "x"),                    // 8 bad owner
            ssi(ALICE, &c, "again"),                                      // 9 second mapping
            ssi(ALICE, &t, "alice"),                                      // 10 ok
            ssi_with(
                "5.5.5.5.1.1.1.5.5.5.1.e164.mimi.arpa.",
                &c,
                "mimi://talk.example/u/x",
                NOW - DAY,
                NOW + 30 * DAY,
            ), // 11 host is not the provider
            ssi(
                "6.6.6.6.1.1.1.5.5.5.1.e164.mimi.arpa.",
                &key("work.example.", 3),
                "w",
            ), // 12 untrusted provider
            ssi_with(
                "7.7.7.7.1.1.1.5.5.5.1.e164.mimi.arpa.",
                &c,
                &uri(&c, "later"),
                NOW + DAY,
                NOW + 9 * DAY,
            ), // 13 not yet valid: a warning only
        ];
        let text = format!("{CARRIER}{}", lines.concat());
        let report = run(&text, &trust(&[&c, &t]));
        assert_eq!(
            report.rejected_records(),
            [4, 5, 7, 8, 9, 11, 12].into(),
            "{:#?}",
            report.problems
        );
        assert_eq!(report.errors(), 7, "{:#?}", report.problems);
        assert_eq!(report.warnings(), 2, "{:#?}", report.problems);
        // Every problem's line is its record's line.
        let z = zone(&text);
        for p in &report.problems {
            assert_eq!(z.records[p.record.unwrap()].line, p.line, "{p:?}");
        }
        let lines: Vec<usize> = report.problems.iter().map(|p| p.line).collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted);
    }
}
