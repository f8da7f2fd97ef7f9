//! `mimi ctl` against live servers (`mimi dp serve` and `mimi resolver serve` with
//! `[control] socket`): status, zone-status, reload of one zone after its file changed,
//! stats, a refused command, flush, stop (the server exits 0 and removes its socket), and a
//! user without access to the socket (mode 0600) refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mimi_discovery::zone::WriteStyle;

const CONFIG_EXTRA: &str = "";
const BLOCK: u8 = 82;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 0;

/// A server process, killed if the test ends early.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_mimi")
}

fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(exe())
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn start(args: &[&str], socket: &Path) -> Server {
    let child = Command::new(exe())
        .args(args)
        .env("MIMI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "no control socket at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

fn stops(server: &mut Server, socket: &Path) {
    let o = ctl(socket, &["stop"]);
    assert!(o.status.success(), "{}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "the socket is removed");
}

#[test]
fn ctl_steers_a_live_dp_and_resolver_and_refuses_other_users() {
    let t = 1;
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let zone_name = "5.5.5.1.e164.mimi.arpa.";
    let (_, mut zone) = root_and_block(t, zone_name, &keys, "+1 555 111 2222", 600);
    let zone_file = dir.path().join("carrier.zone");
    zone.save(&zone_file, WriteStyle::Native).unwrap();
    std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
    let port = std::net::UdpSocket::bind((ip(t, 2), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("dp.toml"),
        format!(
            "listen = [\"{}:{port}\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{zone_name}\"\nfile = \"carrier.zone\"\n[control]\nsocket = \"dp.sock\"\n",
            ip(t, 2)
        ),
    )
    .unwrap();
    let socket = dir.path().join("dp.sock");
    let config = dir.path().join("dp.toml");
    let mut dp = start(
        &["dp", "serve", "--config", config.to_str().unwrap()],
        &socket,
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let o = ctl(&socket, &["status"]);
    assert!(
        o.status.success() && text(&o).contains("serving 1 zone(s)"),
        "{}",
        text(&o)
    );
    let o = ctl(&socket, &["--json", "zone-status", zone_name]);
    let status = json(&o);
    assert_eq!(status["data"]["serial"], 1);
    let records = status["data"]["records"].as_u64().unwrap();
    // The file changes; reloading that one zone serves it.
    let owner = owner("+1 555 111 2222");
    zone.put_ssi(
        owner.clone(),
        600,
        mapping(
            &keys.talk,
            &owner,
            "bob",
            mimi_discovery::record::Context::Any,
            20,
        ),
    );
    zone.bump_serial();
    zone.save(&zone_file, WriteStyle::Native).unwrap();
    let o = ctl(&socket, &["reload", zone_name]);
    assert!(o.status.success(), "{}", text(&o));
    let after = json(&ctl(&socket, &["--json", "zone-status", zone_name]));
    assert_eq!(after["data"]["serial"], 2);
    assert_eq!(after["data"]["records"].as_u64().unwrap(), records + 1);
    let stats = json(&ctl(&socket, &["--json", "stats"]));
    assert!(stats["data"]["queries"].is_u64(), "{stats}");
    // Refused commands exit 1 with the reason.
    let o = ctl(&socket, &["zone-status", "elsewhere.example."]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not served here"), "{}", text(&o));
    let o = ctl(&socket, &["flush"]);
    assert_eq!(o.status.code(), Some(1));
    // Another user cannot reach the socket (mode 0600); root can switch to one.
    if unsafe { libc::geteuid() } == 0 {
        let o = Command::new(exe())
            .args(["ctl", "--socket", socket.to_str().unwrap(), "status"])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("Permission denied"), "{}", text(&o));
    } else {
        eprintln!("SKIP: not root, so no other user to try the socket as (its mode is 0600)");
    }

    // The resolver, rooted at the DP (the block is all it needs for this number).
    let rsocket = dir.path().join("resolver.sock");
    let rport = std::net::UdpSocket::bind((ip(t, 53), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("resolver.toml"),
        format!(
            "apex = \"{zone_name}\"\nroots = [\"{}\"]\nport = {port}\ntrust = \"trust.toml\"\nlisten = [\"{}:{rport}\"]\n[control]\nsocket = \"resolver.sock\"\n",
            ip(t, 2),
            ip(t, 53)
        ),
    )
    .unwrap();
    let rconfig = dir.path().join("resolver.toml");
    let mut resolver = start(
        &["resolver", "serve", "--config", rconfig.to_str().unwrap()],
        &rsocket,
    );
    let o = ctl(&rsocket, &["status"]);
    assert!(
        o.status.success() && text(&o).contains("cache entries"),
        "{}",
        text(&o)
    );
    let o = ctl(&rsocket, &["flush"]);
    assert!(
        o.status.success() && text(&o).contains("cache flushed"),
        "{}",
        text(&o)
    );
    let o = ctl(&rsocket, &["flush", zone_name]);
    assert!(o.status.success(), "{}", text(&o));
    let stats = json(&ctl(&rsocket, &["--json", "stats"]));
    assert_eq!(stats["data"]["lookups"], 0);
    let o = ctl(&rsocket, &["reload"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    stops(&mut resolver, &rsocket);
    stops(&mut dp, &socket);
    // No server: exit 2.
    let o = ctl(&socket, &["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
