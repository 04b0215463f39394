//! STAMP helpers: sonde's reflector, stamp-suite on either side, key files.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `sonde echo --wire stamp` with `extra` flags, JSON counters at the end; returns it and its
/// address (read from the banner, which goes to stderr with --json).
pub fn sonde_reflector(extra: &[&str]) -> (Server, String) {
    sonde_reflector_on("127.0.0.1:0", extra)
}

/// The same, bound to `bind`.
pub fn sonde_reflector_on(bind: &str, extra: &[&str]) -> (Server, String) {
    let reflector = json_echo(bind, &[&["--wire", "stamp"][..], extra].concat());
    let addr = reflector.addr.clone();
    (reflector, addr)
}

/// Stops a reflector as Ctrl-C would and returns its JSON counters.
pub fn counters(mut reflector: Server) -> serde_json::Value {
    stop_json(&mut reflector, "INT")
}

/// A key file both tools read as the same raw bytes (not hex text, which stamp-suite would
/// decode), readable by its owner only (stamp-suite refuses anything looser).
pub fn key_file(dir: &std::path::Path) -> String {
    let path = dir.join("stamp.key");
    std::fs::write(&path, b"sonde+stamp-suite shared key!").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    path.to_string_lossy().into_owned()
}

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sonde-stamp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn stamp_suite() -> Option<Command> {
    have_peer("stamp-suite").then(|| Command::new("stamp-suite"))
}

/// stamp-suite as a reflector on a free port, with `extra` flags.
pub fn suite_reflector(extra: &[&str]) -> Option<(KillOnDrop, String)> {
    let mut cmd = stamp_suite()?;
    let port = free_port().to_string();
    let child = cmd
        .args(["-i", "-S", "127.0.0.1", "-o", &port])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    Some((KillOnDrop(child), format!("127.0.0.1:{port}")))
}

/// stamp-suite sending `count` packets to `addr`: its last JSON line, the summary.
pub fn suite_sender(addr: &str, count: u32, extra: &[&str]) -> serde_json::Value {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let out = stamp_suite()
        .expect("checked by the caller")
        .args([
            "-r",
            ip,
            "-p",
            port,
            "-c",
            &count.to_string(),
            "-d",
            "1ms",
            "-L",
            "1",
        ])
        .args(["--output-format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let last = last.unwrap_or_else(|| {
        panic!(
            "no JSON from stamp-suite: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(last).unwrap()
}

/// `sonde impair` between sonde's sender and a sonde reflector, impairing as asked.
pub fn through_impair(reflector: &[&str], impair: &[&str], ping: &[&str]) -> serde_json::Value {
    let (reflector, addr) = sonde_reflector(reflector);
    let mut cmd = sonde();
    cmd.args([
        "impair",
        "--listen",
        "127.0.0.1:0",
        "--forward",
        &addr,
        "--seed",
        "7",
    ])
    .args(impair);
    let relay = spawn_listening(cmd);
    let mut args = vec!["ping", &relay.addr, "--wire", "stamp"];
    args.extend_from_slice(ping);
    let s = run_json(&args);
    drop(relay);
    drop(reflector);
    s
}

/// A run long enough for a 10% loss to be told from chance: 5 000 probes at 5 000/s.
pub const TEN_PERCENT_RUN: [&str; 6] = ["-c", "5000", "-r", "5000", "-t", "200ms"];

/// `lossy` (`forward` or `backward`) lost within the 99.9% binomial interval of 10% of 5 000
/// (500 ± 70), its `loss_pct` likewise, and `clean` lost nothing. Returns `lossy`'s count.
pub fn assert_ten_percent_lost(s: &serde_json::Value, lossy: &str, clean: &str) -> u64 {
    let lost = u(&s[lossy], "lost");
    assert!((430..=570).contains(&lost), "{lossy}: {s}");
    let pct = f(&s[lossy], "loss_pct");
    assert!((8.6..=11.4).contains(&pct), "{lossy}: {s}");
    assert_eq!(u(&s[clean], "lost"), 0, "{clean}: {s}");
    lost
}
