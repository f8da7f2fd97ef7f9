//! Tools this project did not write, as the tests use them.

use std::process::{Command, Stdio};

/// True when `tool` runs. Otherwise a loud SKIP under `cargo test`, and a failure under CI,
/// which installs every tool the tests use (`.ci/run`).
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing under CI, which installs it"
        );
        eprintln!("SKIP: {tool} is not installed; this check against it did not run");
    }
    ok
}
