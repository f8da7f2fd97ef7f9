//! `mimi demo --serve` as a new user runs it: after its checks the tree and a resolver stay
//! up, and every command it prints succeeds as printed (`mimi lookup` here and through the
//! resolver, dig and kdig over DNS, DNS over TLS and DNSSEC, `mimi publish` and the lookup
//! that finds it); SIGTERM stops it with exit 0. The demo uses its own 127.53.0.x
//! addresses at a free port.

mod external;

use external::have;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the demo if the test ends early.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_serve_keeps_the_tree_up_and_its_printed_commands_work() {
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_mimi"));
    let bin_dir = exe.parent().unwrap().to_path_buf();
    let mut demo = Demo(
        Command::new(&exe)
            .args(["demo", "--serve"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut commands = Vec::new();
    let mut output = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the demo did not get to serving:\n{output}"));
        output.push_str(&line);
        output.push('\n');
        if let Some(c) = line.strip_prefix("  $ ") {
            commands.push(c.to_string());
        }
        if line.starts_with("Stop it with Ctrl-C") {
            break;
        }
    }
    assert!(output.contains("The demo tree stays up"), "{output}");
    assert!(
        !output.contains("did not give the expected result"),
        "{output}"
    );
    assert!(commands.len() >= 11, "{output}");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for command in &commands {
        let tool = command.split_whitespace().next().unwrap();
        if matches!(tool, "dig" | "kdig" | "curl") && !have(tool) {
            continue;
        }
        let out = Command::new("sh")
            .args(["-c", command])
            .env("PATH", &path)
            .env("MIMI_LOG", "error")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "`{command}` failed:\n{text}");
        match tool {
            "mimi" if command.contains("lookup") && command.contains("8888") => {
                assert!(text.contains("chat.example/u/you"), "{command}:\n{text}")
            }
            "mimi" if command.contains("lookup") => {
                assert!(text.contains("chat.example/u/bob"), "{command}:\n{text}")
            }
            "mimi" if command.contains("zone-status") => {
                assert!(text.contains("serial"), "{command}:\n{text}")
            }
            "mimi" if command.contains(" stats") => {
                assert!(text.contains("lookups="), "{command}:\n{text}")
            }
            "dig" | "kdig" => assert!(text.contains("NOERROR"), "{command}:\n{text}"),
            "curl" => assert!(text.starts_with("mimi_"), "{command}:\n{text}"),
            _ => {}
        }
        eprintln!("ok: {command}");
        ran += 1;
    }
    assert!(ran >= 4, "only {ran} of the printed commands ran");
    let pid = demo.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stop = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = demo.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < stop, "the demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the demo exited with {status}");
}
