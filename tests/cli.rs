//! End-to-end tests of the `mimi` binary: every command, its documented output and exit
//! codes, run in a fresh temporary directory.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const CARRIER_NS: &str = "ns1.5.5.5.1.e164.mimi.arpa.=127.0.0.1";

/// Runs `mimi` in `dir`; afterwards no temporary file may be left behind.
fn mimi(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_mimi"))
        .current_dir(dir)
        .args(args)
        .env_remove("MIMI_APEX")
        .env_remove("MIMI_LOG")
        .output()
        .expect("run mimi");
    assert_no_temp_files(dir);
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// Runs `mimi` and insists on exit 0; returns its standard output.
fn ok(dir: &Path, args: &[&str]) -> String {
    let o = mimi(dir, args);
    assert_eq!(
        code(&o),
        0,
        "mimi {args:?} failed\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs `mimi` and insists on the exit code `want`; returns (stdout, stderr).
fn fails(dir: &Path, args: &[&str], want: i32) -> (String, String) {
    let o = mimi(dir, args);
    assert_eq!(
        code(&o),
        want,
        "mimi {args:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    (stdout(&o), stderr(&o))
}

fn assert_no_temp_files(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !(name.starts_with('.') && name.contains(".tmp")),
            "temporary file {name} left in {}",
            dir.display()
        );
    }
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap()
}

fn tmp() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// A key for `provider` in `<provider>.key`.
fn key(dir: &Path, provider: &str) -> String {
    let file = format!("{provider}.key");
    ok(
        dir,
        &["key", "generate", "--provider", provider, "--out", &file],
    );
    file
}

/// Appends the provider's trust entry to `trust.toml`.
fn trust(dir: &Path, key_file: &str) {
    let entry = ok(dir, &["key", "public", key_file]);
    let mut text = fs::read_to_string(dir.join("trust.toml")).unwrap_or_default();
    text.push('\n');
    text.push_str(&entry);
    fs::write(dir.join("trust.toml"), text).unwrap();
}

/// The carrier zone `c.zone` and a trusted key for chat.example.
fn carrier(dir: &Path) {
    ok(
        dir,
        &[
            "zone", "new", CARRIER, "--out", "c.zone", "--ns", CARRIER_NS,
        ],
    );
    let k = key(dir, "chat.example");
    trust(dir, &k);
}

fn add(dir: &Path, sii: &str, ssi: &str, key: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "zone", "add", "c.zone", "--sii", sii, "--ssi", ssi, "--key", key,
    ];
    args.extend_from_slice(extra);
    ok(dir, &args)
}

fn list_json(dir: &Path, file: &str) -> Vec<serde_json::Value> {
    let out = ok(dir, &["zone", "list", file, "--json"]);
    match serde_json::from_str(&out).expect("list --json is JSON") {
        serde_json::Value::Array(items) => items,
        other => panic!("expected an array, got {other}"),
    }
}

/// The SOA serial of a zone file written by mimi.
fn serial(dir: &Path, file: &str) -> u32 {
    let text = read(dir, file);
    let soa = text
        .lines()
        .find(|l| l.contains(" IN SOA "))
        .expect("an SOA line");
    soa.split_whitespace().nth(6).unwrap().parse().unwrap()
}

/// 1-based line number of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
        + 1
}

fn check(dir: &Path, file: &str) -> Output {
    mimi(dir, &["zone", "check", file, "--trust", "trust.toml"])
}

// ---------------------------------------------------------------------------------------
// mimi name

#[test]
fn name_of_a_phone_number() {
    let d = tmp();
    assert_eq!(
        ok(d.path(), &["name", "+1 (555) 111-2222"]),
        "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.\n"
    );
}

#[test]
fn name_of_an_email_address() {
    let d = tmp();
    assert_eq!(
        ok(d.path(), &["name", "hugh@example.com"]),
        "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6.example.com.email.mimi.arpa.\n"
    );
}

#[test]
fn name_of_a_national_number_with_region() {
    let d = tmp();
    assert_eq!(
        ok(d.path(), &["name", "020 7946 0000", "--region", "GB"]),
        "0.0.0.0.6.4.9.7.0.2.4.4.e164.mimi.arpa.\n"
    );
    // Without the region a national number cannot be placed.
    let (out, err) = fails(d.path(), &["name", "020 7946 0000"], 2);
    assert!(out.is_empty());
    assert!(err.contains("region"), "{err}");
}

#[test]
fn name_of_an_invalid_identifier_exits_2_with_the_reason() {
    let d = tmp();
    let (out, err) = fails(d.path(), &["name", "bogus"], 2);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("invalid identifier \"bogus\""), "{err}");
    assert!(err.contains("neither an email address"), "{err}");

    let (_, err) = fails(d.path(), &["name", "alice@"], 2);
    assert!(err.contains("empty domain"), "{err}");
    let (out, err) = fails(d.path(), &["name", "+1 555 111 2222 3333 4444"], 2);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("invalid identifier"), "{err}");
}

#[test]
fn name_with_another_apex() {
    let d = tmp();
    assert_eq!(
        ok(
            d.path(),
            &["name", "+1 555 111 2222", "--apex", "other.test."]
        ),
        "2.2.2.2.1.1.1.5.5.5.1.e164.other.test.\n"
    );
    // The trailing dot is optional, and MIMI_APEX works like --apex.
    assert_eq!(
        ok(
            d.path(),
            &["name", "hugh@example.com", "--apex", "other.test"]
        ),
        "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6.example.com.email.other.test.\n"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_mimi"))
        .current_dir(d.path())
        .args(["name", "+1 555 111 2222"])
        .env("MIMI_APEX", "env.test.")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(stdout(&o), "2.2.2.2.1.1.1.5.5.5.1.e164.env.test.\n");
}

// ---------------------------------------------------------------------------------------
// mimi key

#[test]
fn key_generate_prints_public_key_and_id_with_mode_0600() {
    let d = tmp();
    let out = ok(
        d.path(),
        &[
            "key",
            "generate",
            "--provider",
            "chat.example",
            "--out",
            "chat.key",
        ],
    );
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name:?} in {out}"))
            .trim()
            .to_string()
    };
    let public = field("public key");
    let id = field("key id");
    assert_eq!(field("provider"), "chat.example.");
    assert_eq!(public.len(), 44, "base64 of 32 bytes: {public}");
    assert_eq!(id.len(), 16, "8 bytes in hex: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));

    let text = read(d.path(), "chat.key");
    assert!(
        text.contains(&format!("public_key = \"{public}\"")),
        "{text}"
    );
    assert!(text.contains(&format!("key_id = \"{id}\"")), "{text}");
    assert!(text.contains("secret_key = "));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(d.path().join("chat.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn key_generate_never_overwrites() {
    let d = tmp();
    key(d.path(), "chat.example");
    let before = read(d.path(), "chat.example.key");
    let (out, err) = fails(
        d.path(),
        &[
            "key",
            "generate",
            "--provider",
            "talk.example",
            "--out",
            "chat.example.key",
        ],
        2,
    );
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(read(d.path(), "chat.example.key"), before);
}

#[test]
fn key_public_prints_a_trust_entry_that_zone_check_accepts() {
    let d = tmp();
    let dir = d.path();
    ok(
        dir,
        &[
            "zone", "new", CARRIER, "--out", "c.zone", "--ns", CARRIER_NS,
        ],
    );
    let chat = key(dir, "chat.example");
    let talk = key(dir, "talk.example");
    add(
        dir,
        "+1 555 111 2222",
        "mimi://chat.example/u/alice",
        &chat,
        &[],
    );

    let entry = ok(dir, &["key", "public", &chat]);
    assert!(entry.starts_with("[[provider]]\n"), "{entry}");
    assert!(entry.contains("domain = \"chat.example\""), "{entry}");
    assert!(entry.contains("keys = [\""), "{entry}");
    assert!(!entry.contains("secret"), "{entry}");

    // Trusting only talk.example: chat.example's mapping is refused.
    trust(dir, &talk);
    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    // Appending chat.example's entry makes the same zone pass.
    trust(dir, &chat);
    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("1 signatures verified, 0 error(s)"));
}

// ---------------------------------------------------------------------------------------
// mimi zone new / add / remove / list

#[test]
fn zone_new_writes_soa_ns_and_glue_and_refuses_to_overwrite() {
    let d = tmp();
    let dir = d.path();
    let out = ok(
        dir,
        &[
            "zone",
            "new",
            CARRIER,
            "--out",
            "c.zone",
            "--ns",
            CARRIER_NS,
            "--ns",
            "ns2.5.5.5.1.e164.mimi.arpa.=::1",
            "--ns",
            "ns.elsewhere.example.=192.0.2.1",
        ],
    );
    assert!(
        out.contains("created zone 5.5.5.1.e164.mimi.arpa."),
        "{out}"
    );
    let text = read(dir, "c.zone");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], "$ORIGIN 5.5.5.1.e164.mimi.arpa.");
    assert!(
        lines[2].starts_with("@ 3600 IN SOA ns1 hostmaster "),
        "{text}"
    );
    assert!(lines[2].ends_with(" 3600 600 1209600 300"), "{text}");
    assert!(text.contains("@ 3600 IN NS ns1\n"), "{text}");
    assert!(text.contains("@ 3600 IN NS ns2\n"), "{text}");
    assert!(
        text.contains("@ 3600 IN NS ns.elsewhere.example.\n"),
        "{text}"
    );
    assert!(text.contains("ns1 3600 IN A 127.0.0.1\n"), "{text}");
    assert!(text.contains("ns2 3600 IN AAAA ::1\n"), "{text}");
    // No glue for a name server outside the zone.
    assert!(!text.contains("192.0.2.1"), "{text}");
    // A new zone passes the check.
    fs::write(dir.join("trust.toml"), "").unwrap();
    assert_eq!(code(&check(dir, "c.zone")), 0);

    let (_, err) = fails(
        dir,
        &[
            "zone",
            "new",
            CARRIER,
            "--out",
            "c.zone",
            "--ns",
            "ns9.x.=10.0.0.9",
        ],
        2,
    );
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(read(dir, "c.zone"), text);
}

#[test]
fn zone_new_with_a_bad_ns_argument_fails() {
    let d = tmp();
    let (_, err) = fails(
        d.path(),
        &["zone", "new", CARRIER, "--out", "c.zone", "--ns", "ns1"],
        2,
    );
    assert!(err.contains("NAME=IP"), "{err}");
    let (_, err) = fails(
        d.path(),
        &[
            "zone",
            "new",
            CARRIER,
            "--out",
            "c.zone",
            "--ns",
            "ns1.x.=nope",
        ],
        2,
    );
    assert!(err.contains("not an IP address"), "{err}");
    assert!(!d.path().join("c.zone").exists());
}

#[test]
fn zone_add_puts_a_signed_mapping_in_the_zone() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let serial0 = serial(dir, "c.zone");
    let out = add(
        dir,
        "+1 (555) 111-2222",
        "mimi://chat.example/u/alice",
        "chat.example.key",
        &[],
    );
    assert_eq!(
        out,
        "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa. -> mimi://chat.example/u/alice (seq 1)\n"
    );
    assert!(serial(dir, "c.zone") > serial0);

    let items = list_json(dir, "c.zone");
    assert_eq!(items.len(), 1);
    let m = &items[0];
    assert_eq!(m["owner"], "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.");
    assert_eq!(m["phone"], "+15551112222");
    assert_eq!(m["provider"], "chat.example.");
    assert_eq!(m["ssi"], "mimi://chat.example/u/alice");
    assert_eq!(m["context"], "any");
    assert_eq!(m["priority"], 10);
    assert_eq!(m["seq"], 1);
    assert_eq!(m["ttl"], 3600);
    assert_eq!(m["method"], "sms-otp");
    assert_eq!(m["withdrawn"], false);
    assert_eq!(m["key_id"].as_str().unwrap().len(), 16);
    let text = read(dir, "c.zone");
    assert_eq!(m["line"], line_of(&text, " IN SSI ") as u64);
    // Valid for the default 365 days.
    let nb = m["not_before"].as_str().unwrap();
    let na = m["not_after"].as_str().unwrap();
    let secs = |s: &str| mimi_discovery::record::parse_time("t", s).unwrap();
    assert_eq!(secs(na) - secs(nb), 365 * 86400, "{nb} .. {na}");

    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn zone_add_same_provider_again_bumps_seq_and_keeps_one_mapping() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let k = "chat.example.key";
    add(
        dir,
        "+1 555 111 2222",
        "mimi://chat.example/u/alice",
        k,
        &[],
    );
    let s1 = serial(dir, "c.zone");
    let out = add(dir, "+15551112222", "mimi://chat.example/u/alice2", k, &[]);
    assert!(out.ends_with("(seq 2)\n"), "{out}");
    assert!(serial(dir, "c.zone") > s1);
    let items = list_json(dir, "c.zone");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["seq"], 2);
    assert_eq!(items[0]["ssi"], "mimi://chat.example/u/alice2");
    let out = add(dir, "+15551112222", "mimi://chat.example/u/alice3", k, &[]);
    assert!(out.ends_with("(seq 3)\n"), "{out}");
    assert_eq!(list_json(dir, "c.zone").len(), 1);
    assert_eq!(code(&check(dir, "c.zone")), 0);
}

#[test]
fn zone_add_second_provider_adds_a_second_mapping() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let talk = key(dir, "talk.example");
    trust(dir, &talk);
    add(
        dir,
        "+1 555 111 2222",
        "mimi://chat.example/u/alice",
        "chat.example.key",
        &[],
    );
    let out = add(
        dir,
        "+1 555 111 2222",
        "mimi://talk.example/u/alice",
        &talk,
        &[],
    );
    assert!(out.ends_with("(seq 1)\n"), "{out}");
    let items = list_json(dir, "c.zone");
    assert_eq!(items.len(), 2, "{items:?}");
    let mut providers: Vec<&str> = items
        .iter()
        .map(|m| m["provider"].as_str().unwrap())
        .collect();
    providers.sort();
    assert_eq!(providers, ["chat.example.", "talk.example."]);
    assert!(items.iter().all(|m| m["seq"] == 1));
    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("2 mappings, 2 signatures verified"));
}

#[test]
fn zone_add_refuses_an_sii_outside_the_zone() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let before = read(dir, "c.zone");
    let args = [
        "zone",
        "add",
        "c.zone",
        "--sii",
        "+44 20 7946 0000",
        "--ssi",
        "mimi://chat.example/u/alice",
        "--key",
        "chat.example.key",
    ];
    let (out, err) = fails(dir, &args, 2);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("outside the zone"), "{err}");
    assert_eq!(read(dir, "c.zone"), before);
    let args = [
        "zone",
        "add",
        "c.zone",
        "--sii",
        "hugh@example.com",
        "--ssi",
        "mimi://chat.example/u/hugh",
        "--key",
        "chat.example.key",
    ];
    let (_, err) = fails(dir, &args, 2);
    assert!(err.contains("outside the zone"), "{err}");
    assert_eq!(read(dir, "c.zone"), before);
}

#[test]
fn zone_add_refuses_an_ssi_of_another_provider() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let before = read(dir, "c.zone");
    let args = [
        "zone",
        "add",
        "c.zone",
        "--sii",
        "+1 555 111 2222",
        "--ssi",
        "mimi://talk.example/u/alice",
        "--key",
        "chat.example.key",
    ];
    let (_, err) = fails(dir, &args, 2);
    assert!(err.contains("talk.example"), "{err}");
    assert!(err.contains("is not the provider chat.example."), "{err}");
    assert_eq!(read(dir, "c.zone"), before);
}

#[test]
fn zone_add_refuses_an_invalid_identifier() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let before = read(dir, "c.zone");
    let args = [
        "zone",
        "add",
        "c.zone",
        "--sii",
        "not a number",
        "--ssi",
        "mimi://chat.example/u/x",
        "--key",
        "chat.example.key",
    ];
    let (_, err) = fails(dir, &args, 2);
    assert!(err.contains("invalid identifier"), "{err}");
    assert_eq!(read(dir, "c.zone"), before);
}

#[test]
fn zone_add_options_are_reflected_in_the_listing() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    add(
        dir,
        "+1 555 111 2222",
        "mimi://chat.example/u/bob",
        "chat.example.key",
        &[
            "--context",
            "business",
            "--priority",
            "20",
            "--ttl",
            "60",
            "--method",
            "voice-otp",
        ],
    );
    let items = list_json(dir, "c.zone");
    assert_eq!(items.len(), 1);
    let m = &items[0];
    assert_eq!(m["context"], "business");
    assert_eq!(m["priority"], 20);
    assert_eq!(m["ttl"], 60);
    assert_eq!(m["method"], "voice-otp");
    assert!(read(dir, "c.zone").contains(" 60 IN SSI 1 business 20 1 "));
    assert_eq!(code(&check(dir, "c.zone")), 0);
}

#[test]
fn zone_add_of_an_email_address() {
    let d = tmp();
    let dir = d.path();
    ok(
        dir,
        &[
            "zone",
            "new",
            "example.com.email.mimi.arpa.",
            "--out",
            "e.zone",
            "--ns",
            "ns1.example.com.email.mimi.arpa.=127.0.0.7",
        ],
    );
    let k = key(dir, "chat.example");
    trust(dir, &k);
    let out = ok(
        dir,
        &[
            "zone",
            "add",
            "e.zone",
            "--sii",
            "Hugh@Example.COM",
            "--ssi",
            "mimi://chat.example/u/hugh",
            "--key",
            &k,
        ],
    );
    assert!(out.starts_with(
        "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6.example.com.email.mimi.arpa. ->"
    ), "{out}");
    let items = list_json(dir, "e.zone");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["phone"], serde_json::Value::Null);
    assert_eq!(items[0]["method"], "email-link");
    assert_eq!(code(&check(dir, "e.zone")), 0);
}

#[test]
fn zone_remove_with_and_without_provider() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let talk = key(dir, "talk.example");
    trust(dir, &talk);
    let chat = "chat.example.key";
    add(dir, "+1 555 111 2222", "mimi://chat.example/u/a", chat, &[]);
    add(
        dir,
        "+1 555 111 2222",
        "mimi://talk.example/u/a",
        &talk,
        &[],
    );
    add(dir, "+1 555 111 3333", "mimi://chat.example/u/b", chat, &[]);
    add(
        dir,
        "+1 555 111 3333",
        "mimi://talk.example/u/b",
        &talk,
        &[],
    );
    assert_eq!(list_json(dir, "c.zone").len(), 4);

    // One provider's mapping.
    let s = serial(dir, "c.zone");
    let out = ok(
        dir,
        &[
            "zone",
            "remove",
            "c.zone",
            "--sii",
            "+1 555 111 2222",
            "--provider",
            "talk.example",
        ],
    );
    assert_eq!(
        out,
        "removed 1 mapping(s) of 2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.\n"
    );
    assert!(serial(dir, "c.zone") > s);
    let items = list_json(dir, "c.zone");
    assert_eq!(items.len(), 3);
    assert!(!items.iter().any(|m| m["ssi"] == "mimi://talk.example/u/a"));

    // Every mapping of an identifier.
    let out = ok(dir, &["zone", "remove", "c.zone", "--sii", "+15551113333"]);
    assert!(out.starts_with("removed 2 mapping(s) of 3.3.3.3."), "{out}");
    let items = list_json(dir, "c.zone");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["ssi"], "mimi://chat.example/u/a");

    // Nothing to remove: exit 1, zone unchanged.
    let before = read(dir, "c.zone");
    let (_, err) = fails(
        dir,
        &["zone", "remove", "c.zone", "--sii", "+15551113333"],
        1,
    );
    assert!(err.contains("no mapping of 3.3.3.3.1.1.1"), "{err}");
    let (_, err) = fails(
        dir,
        &[
            "zone",
            "remove",
            "c.zone",
            "--sii",
            "+15551112222",
            "--provider",
            "talk.example",
        ],
        1,
    );
    assert!(err.contains("no mapping"), "{err}");
    assert_eq!(read(dir, "c.zone"), before);

    // A bad identifier is an error, not "nothing to remove".
    fails(dir, &["zone", "remove", "c.zone", "--sii", "bogus"], 2);
}

#[test]
fn zone_list_human_and_json() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let chat = "chat.example.key";
    add(dir, "+1 555 111 3333", "mimi://chat.example/u/b", chat, &[]);
    add(
        dir,
        "+1 555 111 2222",
        "mimi://chat.example/u/a",
        chat,
        &["--context", "personal", "--priority", "5"],
    );

    let out = ok(dir, &["zone", "list", "c.zone"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for col in ["identifier", "context", "prio", "seq", "valid until", "ssi"] {
        assert!(lines[0].contains(col), "{out}");
    }
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cols[0], "+15551112222", "{out}");
    assert_eq!(cols[1], "personal");
    assert_eq!(cols[2], "5");
    assert_eq!(cols[3], "1");
    assert_eq!(cols[5], "mimi://chat.example/u/a");
    assert!(lines[2].starts_with("+15551113333 "), "{out}");
    assert!(lines[2].ends_with("mimi://chat.example/u/b"), "{out}");

    let items = list_json(dir, "c.zone");
    let phones: Vec<&str> = items.iter().map(|m| m["phone"].as_str().unwrap()).collect();
    assert_eq!(phones, ["+15551112222", "+15551113333"]);

    // An empty zone lists nothing.
    ok(
        dir,
        &[
            "zone",
            "new",
            "4.4.e164.mimi.arpa.",
            "--out",
            "uk.zone",
            "--ns",
            "ns1.4.4.e164.mimi.arpa.=127.0.0.5",
        ],
    );
    assert_eq!(ok(dir, &["zone", "list", "uk.zone", "--json"]), "[]\n");
    assert_eq!(ok(dir, &["zone", "list", "uk.zone"]).lines().count(), 1);
}

#[test]
fn zone_commands_on_a_missing_file_fail_with_exit_2() {
    let d = tmp();
    let (_, err) = fails(d.path(), &["zone", "list", "nope.zone"], 2);
    assert!(err.contains("nope.zone"), "{err}");
}

// ---------------------------------------------------------------------------------------
// mimi zone delegate / publish-key

fn root_zone(dir: &Path) {
    ok(
        dir,
        &[
            "zone",
            "new",
            "mimi.arpa.",
            "--out",
            "root.zone",
            "--ns",
            "ns1.mimi.arpa.=127.53.0.1",
        ],
    );
}

#[test]
fn zone_delegate_writes_ns_and_glue() {
    let d = tmp();
    let dir = d.path();
    root_zone(dir);
    let s = serial(dir, "root.zone");
    let out = ok(
        dir,
        &[
            "zone",
            "delegate",
            "root.zone",
            "--child",
            "e164.mimi.arpa.",
            "--ns",
            "ns1.e164.mimi.arpa.=127.53.0.2",
            "--ns",
            "ns2.e164.mimi.arpa.=fd00::2",
            "--ns",
            "ns.other.example.=192.0.2.9",
        ],
    );
    assert_eq!(out, "delegated e164.mimi.arpa. to 3 name server(s)\n");
    assert!(serial(dir, "root.zone") > s);
    let text = read(dir, "root.zone");
    for want in [
        "e164 3600 IN NS ns1.e164\n",
        "e164 3600 IN NS ns2.e164\n",
        "e164 3600 IN NS ns.other.example.\n",
        "ns1.e164 3600 IN A 127.53.0.2\n",
        "ns2.e164 3600 IN AAAA fd00::2\n",
    ] {
        assert!(text.contains(want), "{want:?} missing in\n{text}");
    }
    assert!(!text.contains("192.0.2.9"), "{text}");

    // Delegating again replaces the NS set and its glue.
    ok(
        dir,
        &[
            "zone",
            "delegate",
            "root.zone",
            "--child",
            "e164.mimi.arpa",
            "--ns",
            "ns3.e164.mimi.arpa.=127.53.0.3",
            "--ttl",
            "600",
        ],
    );
    let text = read(dir, "root.zone");
    assert!(text.contains("e164 600 IN NS ns3.e164\n"), "{text}");
    assert!(text.contains("ns3.e164 600 IN A 127.53.0.3\n"), "{text}");
    assert!(!text.contains("ns1.e164"), "{text}");
    assert!(!text.contains("ns2.e164"), "{text}");
    fs::write(dir.join("trust.toml"), "").unwrap();
    let o = check(dir, "root.zone");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn zone_delegate_refuses_a_child_outside_the_zone() {
    let d = tmp();
    let dir = d.path();
    root_zone(dir);
    let before = read(dir, "root.zone");
    for child in ["example.org.", "mimi.arpa.", "arpa."] {
        let (_, err) = fails(
            dir,
            &[
                "zone",
                "delegate",
                "root.zone",
                "--child",
                child,
                "--ns",
                "ns1.example.org.=192.0.2.1",
            ],
            2,
        );
        assert!(err.contains("must be below the zone mimi.arpa."), "{err}");
    }
    assert_eq!(read(dir, "root.zone"), before);
}

#[test]
fn zone_publish_key_puts_apkey_under_ap() {
    let d = tmp();
    let dir = d.path();
    root_zone(dir);
    let k = key(dir, "chat.example");
    let id = read(dir, &k)
        .lines()
        .find_map(|l| l.strip_prefix("key_id = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let public = read(dir, &k)
        .lines()
        .find_map(|l| l.strip_prefix("public_key = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let s = serial(dir, "root.zone");
    let out = ok(dir, &["zone", "publish-key", "root.zone", "--key", &k]);
    assert_eq!(
        out,
        format!("published chat.example.'s key {id} at chat.example.ap.mimi.arpa.\n")
    );
    assert!(serial(dir, "root.zone") > s);
    let text = read(dir, "root.zone");
    let line = text
        .lines()
        .find(|l| l.contains(" APKEY "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with("chat.example.ap 3600 IN APKEY 1 ed25519 "),
        "{line}"
    );
    assert!(line.ends_with(&public), "{line}");
    // Publishing the same key again replaces it.
    ok(
        dir,
        &[
            "zone",
            "publish-key",
            "root.zone",
            "--key",
            &k,
            "--ttl",
            "60",
        ],
    );
    let text = read(dir, "root.zone");
    assert_eq!(text.matches(" APKEY ").count(), 1, "{text}");
    assert!(text.contains("chat.example.ap 60 IN APKEY "), "{text}");
    fs::write(dir.join("trust.toml"), "").unwrap();
    let o = check(dir, "root.zone");
    assert_eq!(code(&o), 0, "{}", stdout(&o));

    // A zone that does not hold ap.mimi.arpa. refuses.
    ok(
        dir,
        &[
            "zone", "new", CARRIER, "--out", "c.zone", "--ns", CARRIER_NS,
        ],
    );
    let before = read(dir, "c.zone");
    let (_, err) = fails(dir, &["zone", "publish-key", "c.zone", "--key", &k], 2);
    assert!(err.contains("outside the zone"), "{err}");
    assert_eq!(read(dir, "c.zone"), before);
}

// ---------------------------------------------------------------------------------------
// mimi zone check

#[test]
fn zone_check_clean_zone_exits_0() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    add(
        dir,
        "+1 555 111 2222",
        "mimi://chat.example/u/alice",
        "chat.example.key",
        &[],
    );
    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "c.zone: 4 records, 1 mappings, 1 signatures verified, 0 error(s), 0 warning(s)"
        ),
        "{out}"
    );
    assert!(!out.contains("error:"), "{out}");
    assert!(!out.contains("warning:"), "{out}");
}

#[test]
fn zone_check_names_the_line_of_a_tampered_signature() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let k = "chat.example.key";
    add(dir, "+1 555 111 2222", "mimi://chat.example/u/a", k, &[]);
    add(dir, "+1 555 111 3333", "mimi://chat.example/u/b", k, &[]);
    let text = read(dir, "c.zone");
    let target = line_of(&text, "\"mimi://chat.example/u/b\"");
    let tampered: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == target {
                // Flip one byte of the signature: its first base64 character.
                let (head, sig) = l.rsplit_once(' ').unwrap();
                let first = if sig.starts_with('A') { 'B' } else { 'A' };
                format!("{head} {first}{}\n", &sig[1..])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(tampered, text);
    fs::write(dir.join("c.zone"), &tampered).unwrap();

    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let out = stdout(&o);
    let prefix = format!("c.zone:{target}: error: ");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{out}"));
    assert!(line.contains("signature does not verify"), "{line}");
    assert!(
        line.contains("3.3.3.3.1.1.1.5.5.5.1.e164.mimi.arpa."),
        "{line}"
    );
    assert!(
        out.contains("2 mappings, 1 signatures verified, 1 error(s)"),
        "{out}"
    );
    assert_eq!(out.matches(": error: ").count(), 1, "{out}");
}

#[test]
fn zone_check_reports_an_expired_mapping() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    add(
        dir,
        "+1 555 111 9999",
        "mimi://chat.example/u/old",
        "chat.example.key",
        &["--not-after", "2025-01-01T00:00:00Z"],
    );
    let items = list_json(dir, "c.zone");
    assert_eq!(items[0]["not_after"], "2025-01-01T00:00:00Z");
    let line = items[0]["line"].as_u64().unwrap();
    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let out = stdout(&o);
    let prefix = format!("c.zone:{line}: error: ");
    let l = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{out}"));
    assert!(l.contains("expired"), "{l}");
    assert!(l.contains("2025-01-01T00:00:00Z"), "{l}");
    // The signature itself is fine.
    assert!(out.contains("1 signatures verified, 1 error(s)"), "{out}");
}

#[test]
fn zone_check_warns_about_a_mapping_expiring_within_7_days() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    add(
        dir,
        "+1 555 111 2222",
        "mimi://chat.example/u/soon",
        "chat.example.key",
        &["--valid-days", "3"],
    );
    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("c.zone:5: warning: "), "{out}");
    assert!(out.contains("expires soon"), "{out}");
    assert!(out.contains("0 error(s), 1 warning(s)"), "{out}");
}

#[test]
fn zone_check_refuses_an_untrusted_provider() {
    let d = tmp();
    let dir = d.path();
    ok(
        dir,
        &[
            "zone", "new", CARRIER, "--out", "c.zone", "--ns", CARRIER_NS,
        ],
    );
    let chat = key(dir, "chat.example");
    let talk = key(dir, "talk.example");
    trust(dir, &chat);
    add(
        dir,
        "+1 555 111 2222",
        "mimi://chat.example/u/a",
        &chat,
        &[],
    );
    add(
        dir,
        "+1 555 111 2222",
        "mimi://talk.example/u/a",
        &talk,
        &[],
    );
    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let out = stdout(&o);
    let l = out
        .lines()
        .find(|l| l.contains(": error: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(l.contains("untrusted provider talk.example."), "{l}");
    let text = read(dir, "c.zone");
    let line = line_of(&text, "mimi://talk.example/u/a");
    assert!(l.starts_with(&format!("c.zone:{line}: ")), "{l}");
    assert!(out.contains("1 signatures verified, 1 error(s)"), "{out}");

    // A trusted provider whose key changed: unknown key id.
    fs::remove_file(dir.join("trust.toml")).unwrap();
    fs::remove_file(dir.join(&chat)).unwrap();
    let chat2 = key(dir, "chat.example");
    trust(dir, &chat2);
    trust(dir, &talk);
    let o = check(dir, "c.zone");
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("is not a trusted key of this provider"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn zone_check_lists_every_syntax_error_with_file_and_line() {
    let d = tmp();
    let dir = d.path();
    fs::write(
        dir.join("bad.zone"),
        "$ORIGIN 5.5.5.1.e164.mimi.arpa.\n\
         $TTL 3600\n\
         @ SOA ns1 hostmaster 1 3600 600 1209600 300\n\
         @ NS ns1\n\
         ns1 A 127.0.0.300\n\
         ns2 A 127.0.0.2\n\
         x BOGUS 1\n",
    )
    .unwrap();
    fs::write(dir.join("trust.toml"), "").unwrap();
    let o = check(dir, "bad.zone");
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let out = stdout(&o);
    let bad: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("bad.zone:") && l.contains("error"))
        .collect();
    assert!(bad[0].starts_with("bad.zone:5: "), "{out}");
    assert!(bad[0].contains("IPv4"), "{out}");
    assert!(bad[1].starts_with("bad.zone:7: "), "{out}");
    assert!(bad[1].contains("BOGUS"), "{out}");
    assert!(out.contains("bad.zone: 2 error(s)"), "{out}");
    assert!(!out.contains("bad.zone:6:"), "{out}");
}

/// Syntax errors should be printed like every other problem, `file:line: error: message`,
/// so editors and CI annotators that match that pattern pick them up.
#[test]
fn zone_check_syntax_errors_use_the_same_format_as_other_problems() {
    let d = tmp();
    let dir = d.path();
    fs::write(
        dir.join("bad.zone"),
        "$ORIGIN x.\n$TTL 1\n@ SOA a b 1 2 3 4 5\n@ NS a\na A 1.2.3\n",
    )
    .unwrap();
    fs::write(dir.join("trust.toml"), "").unwrap();
    let o = check(dir, "bad.zone");
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("bad.zone:5: error: "), "{}", stdout(&o));
}

// ---------------------------------------------------------------------------------------
// mimi zone export

#[test]
fn zone_export_generic_round_trips() {
    let d = tmp();
    let dir = d.path();
    root_zone(dir);
    let k = key(dir, "chat.example");
    ok(
        dir,
        &[
            "zone",
            "delegate",
            "root.zone",
            "--child",
            "e164.mimi.arpa.",
            "--ns",
            "ns1.e164.mimi.arpa.=127.53.0.2",
        ],
    );
    ok(dir, &["zone", "publish-key", "root.zone", "--key", &k]);
    ok(
        dir,
        &[
            "zone",
            "add",
            "root.zone",
            "--sii",
            "hugh@example.com",
            "--ssi",
            "mimi://chat.example/u/hugh",
            "--key",
            &k,
        ],
    );

    let native = ok(dir, &["zone", "export", "root.zone"]);
    assert_eq!(
        native,
        read(dir, "root.zone"),
        "the file is canonical already"
    );
    assert!(native.contains(" IN SSI 1 any "), "{native}");
    assert!(native.contains(" IN APKEY 1 ed25519 "), "{native}");

    let generic = ok(dir, &["zone", "export", "root.zone", "--generic"]);
    assert!(generic.contains(" TYPE65280 \\# "), "{generic}");
    assert!(generic.contains(" TYPE65281 \\# 50 "), "{generic}");
    assert!(!generic.contains(" SSI "), "{generic}");
    assert!(!generic.contains(" APKEY "), "{generic}");
    // Standard types stay readable.
    assert!(
        generic.contains("@ 3600 IN SOA ns1 hostmaster "),
        "{generic}"
    );
    assert!(generic.contains("e164 3600 IN NS ns1.e164\n"), "{generic}");

    fs::write(dir.join("generic.zone"), &generic).unwrap();
    assert_eq!(ok(dir, &["zone", "export", "generic.zone"]), native);
    assert_eq!(
        ok(dir, &["zone", "export", "generic.zone", "--generic"]),
        generic
    );

    // --out writes the file instead of standard output.
    let out = ok(
        dir,
        &[
            "zone",
            "export",
            "root.zone",
            "--generic",
            "--out",
            "out.zone",
        ],
    );
    assert!(out.is_empty(), "{out}");
    assert_eq!(read(dir, "out.zone"), generic);
}

#[test]
fn zone_export_puts_a_hand_written_zone_in_canonical_order() {
    let d = tmp();
    let dir = d.path();
    fs::write(
        dir.join("h.zone"),
        "$TTL 300\n$ORIGIN mimi.arpa.\n\
         b A 10.0.0.2\n\
         a A 10.0.0.1\n\
         @ NS ns1\n\
         @ SOA ns1 hostmaster ( 7 3600 600\n 1209600 300 ) ; comment\n\
         ns1 A 127.0.0.1\n",
    )
    .unwrap();
    let out = ok(dir, &["zone", "export", "h.zone"]);
    let body: Vec<&str> = out.lines().skip(2).collect();
    assert_eq!(
        body,
        [
            "@ 300 IN SOA ns1 hostmaster 7 3600 600 1209600 300",
            "@ 300 IN NS ns1",
            "a 300 IN A 10.0.0.1",
            "b 300 IN A 10.0.0.2",
            "ns1 300 IN A 127.0.0.1",
        ]
    );
}

// ---------------------------------------------------------------------------------------
// mimi zone import

#[test]
fn zone_import_csv() {
    let d = tmp();
    let dir = d.path();
    root_zone(dir);
    let k = key(dir, "chat.example");
    trust(dir, &k);
    // An existing mapping gets its seq bumped by the import.
    ok(
        dir,
        &[
            "zone",
            "add",
            "root.zone",
            "--sii",
            "+1 555 111 2222",
            "--ssi",
            "mimi://chat.example/u/old",
            "--key",
            &k,
        ],
    );
    fs::write(
        dir.join("m.csv"),
        "sii,ssi,context,priority,ttl\n\
         +1 555 111 2222,mimi://chat.example/u/alice,personal,10,300\n\
         +44 20 7946 0000,mimi://chat.example/u/bob,business,20,600\n\
         hugh@example.com,mimi://chat.example/u/hugh,,,\n",
    )
    .unwrap();
    let s = serial(dir, "root.zone");
    let out = ok(
        dir,
        &["zone", "import", "root.zone", "--csv", "m.csv", "--key", &k],
    );
    assert_eq!(out, "imported 3 mapping(s) into root.zone\n");
    assert!(serial(dir, "root.zone") > s);

    let items = list_json(dir, "root.zone");
    assert_eq!(items.len(), 3, "{items:?}");
    let by_ssi = |uri: &str| {
        items
            .iter()
            .find(|m| m["ssi"] == uri)
            .unwrap_or_else(|| panic!("{uri} not in {items:?}"))
    };
    let alice = by_ssi("mimi://chat.example/u/alice");
    assert_eq!(alice["phone"], "+15551112222");
    assert_eq!(alice["context"], "personal");
    assert_eq!(alice["ttl"], 300);
    assert_eq!(alice["seq"], 2);
    assert_eq!(alice["method"], "sms-otp");
    let bob = by_ssi("mimi://chat.example/u/bob");
    assert_eq!(bob["phone"], "+442079460000");
    assert_eq!(bob["context"], "business");
    assert_eq!(bob["priority"], 20);
    assert_eq!(bob["ttl"], 600);
    assert_eq!(bob["seq"], 1);
    let hugh = by_ssi("mimi://chat.example/u/hugh");
    assert_eq!(
        hugh["owner"],
        "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6.example.com.email.mimi.arpa."
    );
    assert_eq!(hugh["context"], "any");
    assert_eq!(hugh["priority"], 10);
    assert_eq!(hugh["ttl"], 3600);
    assert_eq!(hugh["method"], "email-link");

    let human = ok(dir, &["zone", "list", "root.zone"]);
    assert!(human.contains("+442079460000"), "{human}");
    assert!(human.contains("mimi://chat.example/u/hugh"), "{human}");

    let o = check(dir, "root.zone");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("3 mappings, 3 signatures verified"));
}

#[test]
fn zone_import_with_a_bad_row_names_it_and_leaves_the_zone_alone() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    let before = read(dir, "c.zone");
    let k = "chat.example.key";
    let import = |csv: &str| {
        fs::write(dir.join("bad.csv"), csv).unwrap();
        let (out, err) = fails(
            dir,
            &["zone", "import", "c.zone", "--csv", "bad.csv", "--key", k],
            2,
        );
        assert!(out.is_empty(), "{out}");
        assert_eq!(read(dir, "c.zone"), before);
        err
    };
    // The SSI host is not the key's provider.
    let err = import(
        "sii,ssi\n+15551112222,mimi://chat.example/u/a\n+15551113333,mimi://talk.example/u/b\n",
    );
    assert!(err.contains("bad.csv:3"), "{err}");
    assert!(err.contains("is not the provider"), "{err}");
    // A number outside the zone.
    let err = import(
        "sii,ssi,context,priority,ttl\n+15551112222,mimi://chat.example/u/a,any,1,1\n\
         +15551112223,mimi://chat.example/u/c,any,1,1\n+44 20 7946 0000,mimi://chat.example/u/b,any,1,1\n",
    );
    assert!(err.contains("bad.csv:4"), "{err}");
    assert!(err.contains("outside the zone"), "{err}");
    // An unparsable field.
    let err = import("sii,ssi,context,priority\n+15551112222,mimi://chat.example/u/a,any,high\n");
    assert!(err.contains("bad.csv:2"), "{err}");
    // An unknown context.
    let err = import("sii,ssi,context\n+15551112222,mimi://chat.example/u/a,family\n");
    assert!(err.contains("bad.csv:2"), "{err}");
    assert!(err.contains("family"), "{err}");
    // A wrong header.
    let err = import("phone,uri\n+15551112222,mimi://chat.example/u/a\n");
    assert!(err.contains("bad.csv:1"), "{err}");
    assert!(err.contains("header"), "{err}");
}

/// The reported line must be the row's line in the file, also after a blank line or a
/// quoted field spanning lines.
#[test]
fn zone_import_bad_row_line_counts_blank_lines() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    fs::write(
        dir.join("bad.csv"),
        "sii,ssi\n+15551112222,mimi://chat.example/u/a\n\n+15551113333,mimi://talk.example/u/b\n",
    )
    .unwrap();
    let (_, err) = fails(
        dir,
        &[
            "zone",
            "import",
            "c.zone",
            "--csv",
            "bad.csv",
            "--key",
            "chat.example.key",
        ],
        2,
    );
    assert!(err.contains("bad.csv:4:"), "{err}");
}

#[test]
fn zone_import_repeated_pair_keeps_the_last_row() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    fs::write(
        dir.join("m.csv"),
        "sii,ssi\n+15551112222,mimi://chat.example/u/first\n+1 555 111 2222,mimi://chat.example/u/last\n",
    )
    .unwrap();
    ok(
        dir,
        &[
            "zone",
            "import",
            "c.zone",
            "--csv",
            "m.csv",
            "--key",
            "chat.example.key",
        ],
    );
    let items = list_json(dir, "c.zone");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["ssi"], "mimi://chat.example/u/last");
    assert_eq!(code(&check(dir, "c.zone")), 0);
}

// ---------------------------------------------------------------------------------------
// Files

#[test]
fn rewritten_zone_keeps_its_permissions() {
    let d = tmp();
    let dir = d.path();
    carrier(dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("c.zone");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        add(
            dir,
            "+1 555 111 2222",
            "mimi://chat.example/u/a",
            "chat.example.key",
            &[],
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }
}

#[test]
fn key_dnssec_generate_and_ds_print_the_parents_records() {
    let d = tmp();
    let out = ok(
        d.path(),
        &[
            "key",
            "dnssec",
            "generate",
            "--zone",
            "e164.env.test",
            "--out",
            "zone.dnssec",
        ],
    );
    assert!(out.contains("flags      257"), "{out}");
    let tag: u16 = out
        .lines()
        .find_map(|l| l.strip_prefix("key tag"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let records = ok(d.path(), &["key", "dnssec", "ds", "zone.dnssec"]);
    let lines: Vec<&str> = records.lines().collect();
    assert_eq!(lines.len(), 2, "{records}");
    assert!(
        lines[0].starts_with("e164.env.test. IN DNSKEY 257 3 15 "),
        "{records}"
    );
    let ds: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        ds[..6],
        ["e164.env.test.", "IN", "DS", &tag.to_string(), "15", "2"]
    );
    assert_eq!(ds[6].len(), 64, "a SHA-256 digest in hex: {records}");
    // Never over an existing key; a damaged key file names its line.
    let (_, err) = fails(
        d.path(),
        &[
            "key",
            "dnssec",
            "generate",
            "--zone",
            "e164.env.test",
            "--out",
            "zone.dnssec",
        ],
        2,
    );
    assert!(err.contains("already exists"), "{err}");
    let text = read(d.path(), "zone.dnssec").replace("flags = 257", "flags = 7");
    fs::write(d.path().join("bad.dnssec"), text).unwrap();
    let (_, err) = fails(d.path(), &["key", "dnssec", "ds", "bad.dnssec"], 2);
    assert!(
        err.contains("bad.dnssec:5:") && err.contains("flags 7"),
        "{err}"
    );
}

/// `mimi man` writes a page per command, each a roff page naming its command; `mimi
/// completions` prints scripts that name every top-level command, and bash's loads.
#[test]
fn manual_pages_and_completions_come_from_the_cli_definition() {
    let dir = tmp();
    let out = ok(dir.path(), &["man", "--out", "man"]);
    assert!(out.contains("manual pages written"), "{out}");
    for (page, needle) in [
        ("mimi.1", "mimi"),
        ("mimi-dp-serve.1", "SIGHUP"),
        ("mimi-key-dnssec-rollover.1", "rollover"),
        ("mimi-zone-ds.1", "\\-\\-add"),
    ] {
        let text = read(dir.path(), &format!("man/{page}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}:\n{text}"
        );
        assert!(text.contains(needle), "{page} lacks {needle}");
    }
    assert_no_temp_files(&dir.path().join("man"));
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(dir.path(), &["completions", shell]);
        for command in ["lookup", "publish", "dp", "resolver", "zone", "demo"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let bash = ok(dir.path(), &["completions", "bash"]);
    fs::write(dir.path().join("mimi.bash"), &bash).unwrap();
    if let Ok(o) = Command::new("bash")
        .args(["-c", "source ./mimi.bash && complete -p mimi"])
        .current_dir(dir.path())
        .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("_mimi"));
    }
    let (_, err) = fails(dir.path(), &["completions", "tcsh"], 2);
    assert!(err.contains("tcsh"), "{err}");
}
