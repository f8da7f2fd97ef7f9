//! The app provider's side of live updates: TSIG interop with dig, kdig, nsupdate and
//! knsupdate (each against a tiny listener in the test that verifies with
//! `tsig::verify_request` and answers with `tsig::sign_response`), `mimi key tsig
//! generate`, UPDATE message building, and `mimi publish` / `mimi withdraw` against a mock
//! DP that checks every UPDATE the way the real one will (sections, classes, types, TSIG,
//! SSI signatures) and answers NOERROR or a refusal with an extended DNS error.
//!
//! End-to-end tests against the real DP (`mimi dp serve` with updates enabled) belong with
//! the DP's tests once its UPDATE side lands; `publish::publish(server, zone, tsig,
//! records)` is the call to make there.

mod external;

use external::have;

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, RData, RecordType};
use mimi_discovery::name::Name;
use mimi_discovery::publish::{self, Mapping, PublishError, Publisher, SignOptions};
use mimi_discovery::record::{Context, ProviderKey, Ssi, TrustStore, TYPE_SSI};
use mimi_discovery::tsig::{self, Algorithm, KeyFileFormat, TsigKey};
use tempfile::TempDir;

const ZONE: &str = "5.5.5.1.e164.mimi.arpa.";
const APEX: &str = "mimi.arpa.";
const OWNER_2222: &str = "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.";

fn n(s: &str) -> Name {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mimi(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mimi"))
        .current_dir(dir)
        .args(args)
        .env_remove("MIMI_APEX")
        .env_remove("MIMI_LOG")
        .output()
        .expect("run mimi")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

// ---------------------------------------------------------------------------------------
// Answers built on raw bytes, as a server would

/// A response to `query` (TSIG stripped): QR and AA set, the rest echoed.
fn echo_response(query: &[u8], rcode: u8) -> Vec<u8> {
    let mut r = tsig::unsigned_message(query).expect("parse query");
    r[2] |= 0x84; // QR, AA
    r[3] = (r[3] & 0xF0) | (rcode & 0x0F);
    r
}

/// How the test listener answers.
#[derive(Clone, Copy)]
enum Answer {
    /// Verify, then sign with the key that verified.
    Good,
    /// Verify, then sign with a wrong secret (the client must notice).
    WrongSecret,
}

/// A UDP listener on 127.0.0.1:0 answering `count` queries; returns its address and a
/// handle yielding the verification result of each query.
fn udp_listener(
    keys: Vec<TsigKey>,
    answer: Answer,
    count: usize,
) -> (
    SocketAddr,
    std::thread::JoinHandle<Vec<Result<tsig::Verified, tsig::TsigFailure>>>,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut results = Vec::new();
        let mut buf = vec![0u8; 65535];
        for _ in 0..count {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            let query = &buf[..len];
            let t = now();
            let verified = tsig::verify_request(query, &keys, t);
            let reply = match &verified {
                Ok(v) => {
                    let mut r = echo_response(query, 0);
                    let key = match answer {
                        Answer::Good => keys[v.key].clone(),
                        Answer::WrongSecret => {
                            TsigKey::new(v.key_name.clone(), Algorithm::HmacSha256, b"x".to_vec())
                                .unwrap()
                        }
                    };
                    tsig::sign_response(&mut r, &key, &v.request_mac, t, 0).unwrap();
                    r
                }
                Err(f) => {
                    let rcode = f.rcode().unwrap_or(5) as u8;
                    let mut r = echo_response(query, rcode);
                    f.append_answer_tsig(&mut r, &keys, t).unwrap();
                    r
                }
            };
            sock.send_to(&reply, from).unwrap();
            results.push(verified);
        }
        results
    });
    (addr, handle)
}

fn shared_key() -> TsigKey {
    TsigKey::generate(n("ap1.chat.example."))
}

fn y_arg(k: &TsigKey) -> String {
    format!("hmac-sha256:{}:{}", k.name, &*k.secret_base64())
}

fn dig(addr: SocketAddr, y: &str) -> Output {
    Command::new("dig")
        .args([
            &format!("@{}", addr.ip()),
            "-p",
            &addr.port().to_string(),
            "-y",
            y,
            "+norec",
            "+tries=1",
            "+time=5",
            "www.example.",
            "A",
        ])
        .output()
        .expect("run dig")
}

fn kdig(addr: SocketAddr, y: &str) -> Output {
    Command::new("kdig")
        .args([
            &format!("@{}", addr.ip()),
            "-p",
            &addr.port().to_string(),
            "-y",
            y,
            "+norec",
            "+retry=0",
            "+timeout=5",
            "www.example.",
            "A",
        ])
        .output()
        .expect("run kdig")
}

#[test]
fn dig_signs_what_we_verify_and_accepts_what_we_sign() {
    if !have("dig") {
        return;
    }
    let k = shared_key();
    let (addr, h) = udp_listener(vec![k.clone()], Answer::Good, 1);
    let out = dig(addr, &y_arg(&k));
    let results = h.join().unwrap();
    let all = text(&out);
    assert!(matches!(results.as_slice(), [Ok(_)]), "{results:?}\n{all}");
    assert!(out.status.success(), "{all}");
    assert!(all.contains("TSIG PSEUDOSECTION"), "{all}");
    assert!(all.contains("status: NOERROR"), "{all}");
    for bad in [
        "Couldn't verify",
        "verify failure",
        "expected a TSIG",
        "could not be validated",
    ] {
        assert!(!all.contains(bad), "{bad}: {all}");
    }

    // Negative control: an answer signed with another secret is noticed, so the check
    // above means something.
    let (addr, h) = udp_listener(vec![k.clone()], Answer::WrongSecret, 1);
    let out = dig(addr, &y_arg(&k));
    h.join().unwrap();
    let all = text(&out);
    assert!(
        all.contains("Couldn't verify") || all.contains("failure"),
        "dig accepted a bad TSIG: {all}"
    );
}

#[test]
fn dig_sees_our_badkey_and_badsig_answers() {
    if !have("dig") {
        return;
    }
    let k = shared_key();
    // The server knows another key: BADKEY, unsigned.
    let (addr, h) = udp_listener(vec![TsigKey::generate(n("other."))], Answer::Good, 1);
    let out = dig(addr, &y_arg(&k));
    let results = h.join().unwrap();
    assert!(
        matches!(results.as_slice(), [Err(tsig::TsigFailure::BadKey { .. })]),
        "{results:?}"
    );
    let all = text(&out);
    assert!(all.contains("NOTAUTH"), "{all}");
    assert!(all.contains("BADKEY"), "{all}");

    // Same name, another secret: BADSIG.
    let impostor = TsigKey::new(k.name.clone(), Algorithm::HmacSha256, b"guess".to_vec()).unwrap();
    let (addr, h) = udp_listener(vec![k.clone()], Answer::Good, 1);
    let out = dig(addr, &y_arg(&impostor));
    let results = h.join().unwrap();
    assert!(
        matches!(results.as_slice(), [Err(tsig::TsigFailure::BadSig { .. })]),
        "{results:?}"
    );
    let all = text(&out);
    assert!(all.contains("NOTAUTH") && all.contains("BADSIG"), "{all}");
}

#[test]
fn kdig_signs_what_we_verify_and_accepts_what_we_sign() {
    if !have("kdig") {
        return;
    }
    let k = shared_key();
    let (addr, h) = udp_listener(vec![k.clone()], Answer::Good, 1);
    let out = kdig(addr, &y_arg(&k));
    let results = h.join().unwrap();
    let all = text(&out);
    assert!(matches!(results.as_slice(), [Ok(_)]), "{results:?}\n{all}");
    assert!(out.status.success(), "{all}");
    assert!(all.contains("TSIG PSEUDOSECTION"), "{all}");
    assert!(all.contains("NOERROR"), "{all}");
    assert!(!all.contains("WARNING") && !all.contains("ERROR:"), "{all}");

    let (addr, h) = udp_listener(vec![k.clone()], Answer::WrongSecret, 1);
    let out = kdig(addr, &y_arg(&k));
    h.join().unwrap();
    let all = text(&out);
    assert!(
        all.contains("failed to verify TSIG") || all.contains("ERROR"),
        "kdig accepted a bad TSIG: {all}"
    );
}

// ---------------------------------------------------------------------------------------
// mimi key tsig generate

#[test]
fn key_tsig_generate_writes_a_file_nsupdate_uses() {
    let dir = TempDir::new().unwrap();
    let out = mimi(
        dir.path(),
        &[
            "key",
            "tsig",
            "generate",
            "--name",
            "ap1.chat.example",
            "--out",
            "ap1.tsig",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(stdout.contains("name       ap1.chat.example."), "{stdout}");
    assert!(stdout.contains("algorithm  hmac-sha256"), "{stdout}");
    assert!(stdout.contains("ap1.tsig"), "{stdout}");
    assert!(stdout.contains("nsupdate -k ap1.tsig"), "{stdout}");
    let path = dir.path().join("ap1.tsig");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(file.contains("key \"ap1.chat.example.\" {"), "{file}");
    assert!(file.contains("algorithm hmac-sha256;"), "{file}");
    let key = TsigKey::load(&path).unwrap();
    assert_eq!(key.name, n("ap1.chat.example."));
    assert_eq!(key.secret().len(), 32);

    // Never overwrites.
    let again = mimi(
        dir.path(),
        &[
            "key", "tsig", "generate", "--name", "x.", "--out", "ap1.tsig",
        ],
    );
    assert_eq!(code(&again), 2);
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    assert_eq!(TsigKey::load(&path).unwrap().secret(), key.secret());
    // No temporary left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // A bad name is named.
    let bad = mimi(
        dir.path(),
        &[
            "key", "tsig", "generate", "--name", "a..b", "--out", "b.tsig",
        ],
    );
    assert_eq!(code(&bad), 2);
    assert!(text(&bad).contains("--name"), "{}", text(&bad));

    if !have("nsupdate") {
        return;
    }
    // nsupdate reads the file and signs an UPDATE that verify_request accepts; it checks
    // our signed answer (exit 0 only if it verified).
    let (addr, h) = udp_listener(vec![key.clone()], Answer::Good, 1);
    let script = format!(
        "server {} {}\nzone example.\nupdate add x.example. 300 A 192.0.2.1\nsend\n",
        addr.ip(),
        addr.port()
    );
    let out = run_with_input("nsupdate", &["-k", path.to_str().unwrap()], &script);
    let results = h.join().unwrap();
    let all = text(&out);
    assert!(matches!(results.as_slice(), [Ok(_)]), "{results:?}\n{all}");
    assert!(out.status.success(), "{all}");
    assert!(
        !all.contains("error") && !all.contains("could not"),
        "{all}"
    );
}

#[test]
fn key_tsig_generate_knot_format_is_read_by_knsupdate() {
    if !have("knsupdate") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let out = mimi(
        dir.path(),
        &[
            "key",
            "tsig",
            "generate",
            "--name",
            "ap1.chat.example.",
            "--out",
            "ap1.knot",
            "--format",
            "knot",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("knsupdate -k ap1.knot"));
    let path = dir.path().join("ap1.knot");
    let key = TsigKey::load(&path).unwrap();
    let (addr, h) = udp_listener(vec![key], Answer::Good, 1);
    let script = format!(
        "server {} {}\nzone example.\nupdate add x.example. 300 A 192.0.2.1\nsend\nquit\n",
        addr.ip(),
        addr.port()
    );
    let out = run_with_input("knsupdate", &["-k", path.to_str().unwrap()], &script);
    let results = h.join().unwrap();
    let all = text(&out);
    assert!(matches!(results.as_slice(), [Ok(_)]), "{results:?}\n{all}");
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("ERROR") && !all.contains("WARNING"), "{all}");
}

fn run_with_input(tool: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

// ---------------------------------------------------------------------------------------
// UPDATE messages

fn provider_key() -> ProviderKey {
    ProviderKey::generate(n("chat.example."))
}

fn signed(sii: &str, user: &str, key: &ProviderKey) -> publish::SignedMapping {
    let m = Mapping::new(sii, format!("mimi://chat.example/u/{user}"));
    publish::sign_mapping(&m, &n(ZONE), &n(APEX), key, &SignOptions::now()).unwrap()
}

#[test]
fn update_message_has_the_rfc_2136_shape_and_verifies() {
    let key = provider_key();
    let tsig_key = shared_key();
    let records = [
        signed("+1 555 111 2222", "alice", &key),
        signed("+1 555 111 3333", "bob", &key),
    ];
    let (bytes, mac) =
        publish::signed_update(&n(ZONE), &records, &tsig_key, 0x4242, now()).unwrap();

    let v = tsig::verify_request(&bytes, std::slice::from_ref(&tsig_key), now()).unwrap();
    assert_eq!(v.request_mac, mac);
    assert_eq!(v.key_name, tsig_key.name);

    let msg = Message::from_vec(&bytes).unwrap();
    assert_eq!(msg.metadata.id, 0x4242);
    assert_eq!(msg.metadata.op_code, OpCode::Update);
    assert_eq!(msg.metadata.message_type, MessageType::Query);
    // Zone section: the origin, SOA, IN.
    assert_eq!(msg.queries.len(), 1);
    let zone = &msg.queries[0];
    assert_eq!(Name::from_hickory(zone.name()).unwrap(), n(ZONE));
    assert_eq!(zone.query_type(), RecordType::SOA);
    assert_eq!(zone.query_class(), DNSClass::IN);
    // No prerequisites.
    assert!(msg.answers.is_empty());
    // Update section: the SSI records, class IN, type 65280, the TTL, RDATA = Ssi::to_wire.
    assert_eq!(msg.authorities.len(), 2);
    for (r, want) in msg.authorities.iter().zip(&records) {
        assert_eq!(Name::from_hickory(&r.name).unwrap(), want.owner);
        assert_eq!(r.dns_class, DNSClass::IN);
        assert_eq!(u16::from(r.record_type()), TYPE_SSI);
        assert_eq!(r.ttl, 3600);
        let RData::Unknown { rdata, .. } = &r.data else {
            panic!("not an unknown-type RDATA: {r:?}")
        };
        assert_eq!(rdata.anything, want.ssi.to_wire());
        let ssi = Ssi::from_wire(&rdata.anything).unwrap();
        ssi.verify(&want.owner, &key.verifying_key()).unwrap();
    }
    // EDNS with a 1232-byte payload, then the TSIG last.
    let edns = msg.edns.as_ref().expect("OPT record");
    assert_eq!(edns.max_payload(), 1232);
    let t = tsig::find_tsig(&bytes).unwrap().unwrap();
    assert_eq!(t.original_id, 0x4242);
    assert_eq!(t.fudge, 300);
    assert_eq!(t.error, 0);
    assert!(t.other.is_empty());
}

#[test]
fn signing_checks_zone_provider_and_sets_times() {
    let key = provider_key();
    let zone = n(ZONE);
    let apex = n(APEX);
    let mut opts = SignOptions::at(1_780_000_000_123);
    let s = publish::sign_mapping(
        &Mapping::new("+1 555 111 2222", "mimi://chat.example/u/alice"),
        &zone,
        &apex,
        &key,
        &opts,
    )
    .unwrap();
    assert_eq!(s.owner, n(OWNER_2222));
    assert_eq!(s.ssi.seq, 1_780_000_000_123);
    assert_eq!(s.ssi.not_before, 1_780_000_000);
    assert_eq!(s.ssi.verified_at, 1_780_000_000);
    assert_eq!(s.ssi.not_after, 1_780_000_000 + 30 * 86400);
    assert_eq!(s.ssi.method.as_str(), "sms-otp");
    assert!(!s.ssi.withdrawn);
    let mut trust = TrustStore::new();
    trust.add(key.provider.clone(), key.verifying_key());
    mimi_discovery::record::verify_against(&s.ssi, &s.owner, &trust, 1_780_000_001).unwrap();

    // Outside the zone, another provider's URI, a bad identifier: refused before sending.
    let err = |m: Mapping| {
        publish::sign_mapping(&m, &zone, &apex, &key, &opts)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(Mapping::new("+44 20 7946 0000", "mimi://chat.example/u/a"))
            .contains("outside the zone")
    );
    assert!(
        err(Mapping::new("+1 555 111 2222", "mimi://talk.example/u/a")).contains("chat.example")
    );
    assert!(
        err(Mapping::new("not a number", "mimi://chat.example/u/a")).contains("invalid identifier")
    );

    // A tombstone: bit 7, the default URI under the provider, signed, seq as given.
    opts.withdrawn = true;
    opts.seq = Some(99);
    let mut m = Mapping::new("+1 555 111 2222", "x");
    m.ssi = None;
    let t = publish::sign_mapping(&m, &zone, &apex, &key, &opts).unwrap();
    assert!(t.ssi.withdrawn);
    assert_eq!(t.ssi.flags() & 0x80, 0x80);
    assert_eq!(t.ssi.uri, "mimi://chat.example/withdrawn");
    assert_eq!(t.ssi.seq, 99);
    mimi_discovery::record::verify_against(&t.ssi, &t.owner, &trust, 1_780_000_001).unwrap();
}

#[test]
fn csv_rows_keep_their_lines() {
    let text = b"sii,ssi,context,priority,ttl\n+1 555 111 2222,mimi://chat.example/u/a,business,5,60\n\n+1 555 111 3333,mimi://chat.example/u/b\n";
    let rows = publish::parse_csv(text, "m.csv", &Mapping::new("", "")).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, 2);
    assert_eq!(rows[0].1.context, Context::Business);
    assert_eq!((rows[0].1.priority, rows[0].1.ttl), (5, 60));
    assert_eq!(rows[1].0, 4);
    assert_eq!(rows[1].1.context, Context::Any);
    let e = publish::parse_csv(b"ssi,sii\n", "m.csv", &Mapping::new("", ""))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("m.csv:1:"), "{e}");
    let e = publish::parse_csv(
        b"sii,ssi,context\n+1 555 111 2222,mimi://chat.example/u/a,work\n",
        "m.csv",
        &Mapping::new("", ""),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("m.csv:2:") && e.contains("work"), "{e}");
}

// ---------------------------------------------------------------------------------------
// A mock DP: checks each UPDATE as the real one will and answers per a policy

/// One UPDATE the mock received (TSIG verified) and what it answered.
#[derive(Debug, Clone)]
struct Seen {
    zone: Name,
    prerequisites: usize,
    records: Vec<(Name, Ssi)>,
    rcode: u16,
}

type Policy = Arc<dyn Fn(&[(Name, Ssi)]) -> Result<(), (ResponseCode, String)> + Send + Sync>;

struct MockDp {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl MockDp {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<(Name, Ssi)> {
        self.seen()
            .into_iter()
            .filter(|s| s.rcode == 0)
            .flat_map(|s| s.records)
            .collect()
    }
}

fn mock_dp(keys: Vec<TsigKey>, provider: ProviderKey, policy: Policy) -> MockDp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let keys = Arc::new(keys);
    let provider = Arc::new(provider);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (keys, seen, provider, policy) = (
                keys.clone(),
                seen2.clone(),
                provider.clone(),
                policy.clone(),
            );
            std::thread::spawn(move || loop {
                let mut len = [0u8; 2];
                if conn.read_exact(&mut len).is_err() {
                    return;
                }
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut msg).is_err() {
                    return;
                }
                let reply = mock_answer(&msg, &keys, &provider, &policy, &seen);
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                if conn.write_all(&framed).is_err() {
                    return;
                }
            });
        }
    });
    MockDp { addr, seen }
}

fn mock_answer(
    msg: &[u8],
    keys: &[TsigKey],
    provider: &ProviderKey,
    policy: &Policy,
    seen: &Mutex<Vec<Seen>>,
) -> Vec<u8> {
    let t = now();
    let request = Message::from_vec(&tsig::unsigned_message(msg).unwrap()).unwrap();
    let build = |rcode: ResponseCode, ede: Option<String>| {
        let mut r = Message::response(request.metadata.id, OpCode::Update);
        r.metadata.response_code = rcode;
        r.add_queries(request.queries.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        if let Some(text) = ede {
            let mut data = 0u16.to_be_bytes().to_vec();
            data.extend_from_slice(text.as_bytes());
            edns.options_mut().insert(EdnsOption::Unknown(15, data));
        }
        r.set_edns(edns);
        r.to_vec().unwrap()
    };
    let v = match tsig::verify_request(msg, keys, t) {
        Ok(v) => v,
        Err(f) => {
            let mut r = build(
                <ResponseCode as From<u16>>::from(f.rcode().unwrap_or(5)),
                Some(f.to_string()),
            );
            f.append_answer_tsig(&mut r, keys, t).unwrap();
            return r;
        }
    };
    // The checks the DP makes on the shape.
    assert_eq!(request.metadata.op_code, OpCode::Update);
    assert_eq!(request.queries.len(), 1);
    assert_eq!(request.queries[0].query_type(), RecordType::SOA);
    assert_eq!(request.queries[0].query_class(), DNSClass::IN);
    let records: Vec<(Name, Ssi)> = request
        .authorities
        .iter()
        .map(|r| {
            assert_eq!(r.dns_class, DNSClass::IN);
            let RData::Unknown { code, rdata } = &r.data else {
                panic!("{r:?}")
            };
            assert_eq!(u16::from(*code), TYPE_SSI);
            let owner = Name::from_hickory(&r.name).unwrap();
            let ssi = Ssi::from_wire(&rdata.anything).unwrap();
            ssi.verify(&owner, &provider.verifying_key()).unwrap();
            (owner, ssi)
        })
        .collect();
    let outcome = policy(&records);
    let (rcode, ede) = match outcome {
        Ok(()) => (ResponseCode::NoError, None),
        Err((rcode, text)) => (rcode, Some(text)),
    };
    seen.lock().unwrap().push(Seen {
        zone: Name::from_hickory(request.queries[0].name()).unwrap(),
        prerequisites: request.answers.len(),
        records,
        rcode: u16::from(rcode),
    });
    let mut r = build(rcode, ede);
    tsig::sign_response(&mut r, &keys[v.key], &v.request_mac, t, 0).unwrap();
    r
}

fn accept_all() -> Policy {
    Arc::new(|_| Ok(()))
}

/// Refuses any UPDATE holding a record whose URI contains "/bad", naming it, as the DP
/// does.
fn refuse_bad() -> Policy {
    Arc::new(|records| {
        for (owner, ssi) in records {
            if ssi.uri.contains("/bad") {
                return Err((
                    ResponseCode::Refused,
                    format!("{owner} SSI seq {}: policy refuses {}", ssi.seq, ssi.uri),
                ));
            }
        }
        Ok(())
    })
}

struct Files {
    dir: TempDir,
    tsig: TsigKey,
    key: ProviderKey,
}

fn files() -> Files {
    let dir = TempDir::new().unwrap();
    let tsig = shared_key();
    tsig.save_new(dir.path().join("ap.tsig"), KeyFileFormat::Bind)
        .unwrap();
    let key = provider_key();
    key.save_new(dir.path().join("chat.key")).unwrap();
    Files { dir, tsig, key }
}

fn publish_args<'a>(dp: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "publish", "--dp", dp, "--zone", ZONE, "--tsig", "ap.tsig", "--key", "chat.key",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn publish_and_withdraw_against_a_mock_dp() {
    let f = files();
    let dp = mock_dp(vec![f.tsig.clone()], clone_key(&f.key), accept_all());
    let addr = dp.addr.to_string();
    let out = mimi(
        f.dir.path(),
        &publish_args(
            &addr,
            &[
                "--sii",
                "+1 555 111 2222",
                "--ssi",
                "mimi://chat.example/u/alice",
                "--context",
                "personal",
                "--priority",
                "5",
                "--ttl",
                "600",
                "--valid-days",
                "30",
            ],
        ),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(stdout.contains(OWNER_2222), "{stdout}");
    assert!(stdout.contains("mimi://chat.example/u/alice"), "{stdout}");
    assert!(stdout.contains("seq "), "{stdout}");
    let seen = dp.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].zone, n(ZONE));
    assert_eq!(seen[0].prerequisites, 0);
    let (owner, ssi) = &seen[0].records[0];
    assert_eq!(*owner, n(OWNER_2222));
    assert_eq!(ssi.context, Context::Personal);
    assert_eq!(ssi.priority, 5);
    assert!(
        ssi.seq > 1_700_000_000_000,
        "seq is the time in ms: {}",
        ssi.seq
    );
    assert_eq!(ssi.not_after - ssi.not_before, 30 * 86400);

    let out = mimi(
        f.dir.path(),
        &[
            "withdraw",
            "--dp",
            &addr,
            "--zone",
            ZONE,
            "--tsig",
            "ap.tsig",
            "--key",
            "chat.key",
            "--sii",
            "+1 555 111 2222",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(stdout.contains("withdrew"), "{stdout}");
    let seen = dp.seen();
    assert_eq!(seen.len(), 2);
    let (owner2, tomb) = &seen[1].records[0];
    assert_eq!(owner2, owner);
    assert!(tomb.withdrawn);
    assert!(
        tomb.seq > ssi.seq,
        "tombstone seq {} <= {}",
        tomb.seq,
        ssi.seq
    );
    assert_eq!(tomb.uri, "mimi://chat.example/withdrawn");
}

#[test]
fn a_refusal_prints_the_rcode_and_the_dps_reason() {
    let f = files();
    let dp = mock_dp(vec![f.tsig.clone()], clone_key(&f.key), refuse_bad());
    let addr = dp.addr.to_string();
    let out = mimi(
        f.dir.path(),
        &publish_args(
            &addr,
            &[
                "--sii",
                "+1 555 111 2222",
                "--ssi",
                "mimi://chat.example/bad/x",
            ],
        ),
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("REFUSED"), "{stderr}");
    assert!(
        stderr.contains(&format!("{OWNER_2222} SSI seq")),
        "{stderr}"
    );
    assert!(
        stderr.contains("policy refuses mimi://chat.example/bad/x"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_tsig_key_is_notauth_badkey() {
    let f = files();
    let dp = mock_dp(
        vec![TsigKey::generate(n("someone.else."))],
        clone_key(&f.key),
        accept_all(),
    );
    let addr = dp.addr.to_string();
    let out = mimi(
        f.dir.path(),
        &publish_args(
            &addr,
            &[
                "--sii",
                "+1 555 111 2222",
                "--ssi",
                "mimi://chat.example/u/a",
            ],
        ),
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains("NOTAUTH") && stderr.contains("BADKEY"),
        "{stderr}"
    );
    assert!(dp.seen().is_empty());
}

#[test]
fn csv_batches_retry_around_refused_records() {
    let f = files();
    let dp = mock_dp(vec![f.tsig.clone()], clone_key(&f.key), refuse_bad());
    let addr = dp.addr.to_string();
    let mut csv = String::from("sii,ssi,context,priority,ttl\n");
    let bad_lines = [5usize, 17, 18];
    for i in 0..25 {
        let line = i + 2;
        let path = if bad_lines.contains(&line) {
            "bad"
        } else {
            "u"
        };
        csv.push_str(&format!(
            "+1 555 111 {:04},mimi://chat.example/{path}/{i},any,10,300\n",
            1000 + i
        ));
    }
    std::fs::write(f.dir.path().join("m.csv"), csv).unwrap();
    let out = mimi(
        f.dir.path(),
        &publish_args(&addr, &["--csv", "m.csv", "--batch", "10"]),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(code(&out), 1, "{stdout}{stderr}");
    assert!(stdout.contains("published 22 of 25"), "{stdout}");
    assert!(stdout.contains("3 refused"), "{stdout}");
    for line in bad_lines {
        assert!(
            stderr.contains(&format!("m.csv:{line}: ")),
            "line {line}: {stderr}"
        );
    }
    assert_eq!(stderr.matches("REFUSED").count(), 3, "{stderr}");
    // Every good record applied exactly once; no bad one.
    let accepted = dp.accepted();
    assert_eq!(accepted.len(), 22);
    let mut owners: HashMap<Name, usize> = HashMap::new();
    for (o, s) in &accepted {
        assert!(!s.uri.contains("/bad"));
        *owners.entry(o.clone()).or_default() += 1;
    }
    assert!(owners.values().all(|&c| c == 1));
    // Clean halves and batches go whole: 5..10 and 20..25 were one UPDATE each.
    assert!(dp
        .seen()
        .iter()
        .any(|s| s.rcode == 0 && s.records.len() == 5));

    // All accepted: exit 0.
    let good: String = std::iter::once("sii,ssi\n".to_string())
        .chain((0..7).map(|i| format!("+1 555 111 {:04},mimi://chat.example/u/{i}\n", 5000 + i)))
        .collect();
    std::fs::write(f.dir.path().join("good.csv"), good).unwrap();
    let out = mimi(
        f.dir.path(),
        &publish_args(&addr, &["--csv", "good.csv", "--batch", "3"]),
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("published 7 of 7"));
}

#[test]
fn csv_with_a_bad_row_sends_nothing() {
    let f = files();
    let dp = mock_dp(vec![f.tsig.clone()], clone_key(&f.key), accept_all());
    let addr = dp.addr.to_string();
    std::fs::write(
        f.dir.path().join("m.csv"),
        "sii,ssi\n+1 555 111 2222,mimi://chat.example/u/a\n+44 20 7946 0000,mimi://chat.example/u/b\n",
    )
    .unwrap();
    let out = mimi(f.dir.path(), &publish_args(&addr, &["--csv", "m.csv"]));
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("m.csv:3"), "{}", text(&out));
    assert!(dp.seen().is_empty());

    std::fs::write(
        f.dir.path().join("dup.csv"),
        "sii,ssi\n+1 555 111 2222,mimi://chat.example/u/a\n+15551112222,mimi://chat.example/u/b\n",
    )
    .unwrap();
    let out = mimi(f.dir.path(), &publish_args(&addr, &["--csv", "dup.csv"]));
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        text(&out).contains("dup.csv:3") && text(&out).contains("line 2"),
        "{}",
        text(&out)
    );
}

#[test]
fn cli_argument_errors_are_clear() {
    let f = files();
    let d = f.dir.path();
    // --ssi missing.
    let out = mimi(d, &publish_args("127.0.0.1", &["--sii", "+1 555 111 2222"]));
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("--ssi"), "{}", text(&out));
    // --csv with --sii.
    let out = mimi(
        d,
        &publish_args("127.0.0.1", &["--csv", "m.csv", "--sii", "+1 555 111 2222"]),
    );
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("cannot be used with"), "{}", text(&out));
    // A bad --dp.
    let out = mimi(
        d,
        &publish_args(
            "127.0.0.1:99999",
            &[
                "--sii",
                "+1 555 111 2222",
                "--ssi",
                "mimi://chat.example/u/a",
            ],
        ),
    );
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("--dp"), "{}", text(&out));
    // A missing TSIG file is named.
    let out = mimi(
        d,
        &[
            "publish",
            "--dp",
            "127.0.0.1",
            "--zone",
            ZONE,
            "--tsig",
            "nope.tsig",
            "--key",
            "chat.key",
            "--sii",
            "+1 555 111 2222",
            "--ssi",
            "mimi://chat.example/u/a",
        ],
    );
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("nope.tsig"), "{}", text(&out));
    // A provider key given as the TSIG key: the syntax error names file and line.
    let out = mimi(
        d,
        &[
            "publish",
            "--dp",
            "127.0.0.1",
            "--zone",
            ZONE,
            "--tsig",
            "chat.key",
            "--key",
            "chat.key",
            "--sii",
            "+1 555 111 2222",
            "--ssi",
            "mimi://chat.example/u/a",
        ],
    );
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("chat.key:3:"), "{}", text(&out));
    // An identifier outside the zone.
    let out = mimi(
        d,
        &publish_args(
            "127.0.0.1",
            &[
                "--sii",
                "+44 20 7946 0000",
                "--ssi",
                "mimi://chat.example/u/a",
            ],
        ),
    );
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("outside the zone"), "{}", text(&out));
}

#[test]
fn an_unreachable_dp_is_exit_2() {
    let f = files();
    // A port nobody listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = mimi(
        f.dir.path(),
        &publish_args(
            &addr,
            &[
                "--sii",
                "+1 555 111 2222",
                "--ssi",
                "mimi://chat.example/u/a",
            ],
        ),
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains(&addr), "{}", text(&out));
}

#[tokio::test]
async fn library_publish_reports_refusals_with_the_extended_error() {
    let f = files();
    let dp = mock_dp(vec![f.tsig.clone()], clone_key(&f.key), refuse_bad());
    let good = signed("+1 555 111 2222", "alice", &f.key);
    let published = publish::publish(dp.addr, &n(ZONE), &f.tsig, std::slice::from_ref(&good))
        .await
        .unwrap();
    assert_eq!(published.records[0].owner, good.owner);
    assert_eq!(published.records[0].seq, good.ssi.seq);

    let bad = signed("+1 555 111 3333", "../bad/x", &f.key);
    let mut p = Publisher::new(dp.addr, n(ZONE), f.tsig.clone());
    match p.send(&[bad]).await {
        Err(PublishError::Refused(r)) => {
            assert_eq!(r.rcode, publish::RCODE_REFUSED);
            assert!(r.tsig.is_none(), "the refusal verified: {r}");
            assert_eq!(r.extended.len(), 1);
            assert!(r.extended[0].text.contains("policy refuses"), "{r}");
        }
        other => panic!("{other:?}"),
    }
    // The connection is reused for the next UPDATE.
    let again = signed("+1 555 111 4444", "carol", &f.key);
    p.send(&[again]).await.unwrap();
}

fn clone_key(k: &ProviderKey) -> ProviderKey {
    ProviderKey {
        provider: k.provider.clone(),
        signing: k.signing.clone(),
    }
}
