//! scripts/netem.sh for real: the lab (namespaces + veth, 198.18.0.0/15), loss applied with
//! netem where the kernel has it and nftables where it has not, the sonde impair fallback, and the
//! loss sweep. Needs root, iproute2 and nftables: skipped with a reason on a user's machine,
//! required under CI=true. Every lab a test makes, it removes.

mod common;

use common::*;
use std::process::{Command, Output};

fn script() -> String {
    peer_script("scripts/netem.sh").display().to_string()
}

/// A lab of this test's own (unique name), torn down when dropped.
struct Lab {
    name: String,
}

impl Lab {
    fn up(tag: &str) -> Option<Lab> {
        if !(have_peer("ip") && have_peer("nft") && have_peer("tc")) {
            return None;
        }
        if !is_root() {
            skip("the lab needs root");
            return None;
        }
        let lab = Lab {
            name: format!("sl{}{tag}", std::process::id() % 100_000),
        };
        let out = lab.netem(&["lab", "up"]);
        assert!(out.status.success(), "lab up: {}", text(&out));
        Some(lab)
    }

    fn netem(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(script())
            .args(args)
            .env("SONDE_LAB", &self.name)
            .env("SONDE", env!("CARGO_BIN_EXE_sonde"))
            .output()
            .unwrap()
    }

    fn ns(&self, side: &str) -> String {
        format!("{}-{side}", self.name)
    }

    /// sonde echo in namespace b, on the lab's echo address.
    fn echo(&self) -> Server {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns("b"), env!("CARGO_BIN_EXE_sonde")]);
        cmd.args(["echo", "--bind", "198.18.0.2:9999"]);
        spawn_listening(cmd)
    }

    /// sonde ping from namespace a; returns the JSON summary.
    fn ping(&self, target: &str, extra: &[&str]) -> serde_json::Value {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns("a"), env!("CARGO_BIN_EXE_sonde")])
            .args(["ping", target, "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "ping: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.netem(&["lab", "down"]);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ns_list() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// Whether this kernel has sch_netem, as the script itself detects it.
fn netem_detected(lab: &Lab) -> (bool, String) {
    let out = lab.netem(&["apply", "--lab-one-way", "--loss", "1%", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    let missing = stderr.contains("netem: not available in this kernel");
    assert!(missing || stderr.contains("root netem loss 1%"), "{stderr}");
    (!missing, stderr)
}

#[test]
fn help_and_shellcheck() {
    let out = Command::new("bash")
        .arg(script())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let usage = String::from_utf8_lossy(&out.stdout);
    for word in [
        "lab up|down|status",
        "apply",
        "clear",
        "show",
        "sweep",
        "--loss-model",
    ] {
        assert!(usage.contains(word), "usage lacks {word}");
    }
    let out = Command::new("bash")
        .arg(script())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let bench = Command::new("bash")
        .arg(peer_script("scripts/bench-peers.sh"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(bench.status.success());
    assert!(String::from_utf8_lossy(&bench.stdout).contains("--quick"));
    if have_peer("shellcheck") {
        let scripts = [
            script(),
            peer_script("scripts/mesh.sh").display().to_string(),
            peer_script("scripts/lib.sh").display().to_string(),
            peer_script("scripts/bench-peers.sh").display().to_string(),
            peer_script("scripts/scale.sh").display().to_string(),
            peer_script(".ci/run").display().to_string(),
        ];
        // -x: follow what the scripts source (lib.sh), checking it in their context too.
        let out = Command::new("shellcheck")
            .arg("-x")
            .args(&scripts)
            .output()
            .unwrap();
        assert!(out.status.success(), "shellcheck: {}", text(&out));
    }
}

#[test]
fn lab_loss_is_applied_measured_and_cleared() {
    let Some(lab) = Lab::up("l") else { return };
    assert!(ns_list().contains(&lab.ns("a")));
    // Up twice is fine.
    assert!(lab.netem(&["lab", "up"]).status.success());
    let (netem, _) = netem_detected(&lab);
    let _echo = lab.echo();
    let out = lab.netem(&["apply", "--lab", "--loss", "20%"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(if netem {
            "netem loss 20%"
        } else {
            "numgen random"
        }),
        "{stderr}"
    );
    let shown = lab.netem(&["show", "--lab"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains(if netem { "netem" } else { "drop" }));
    let n = 4000u64;
    let s = lab.ping("198.18.0.2:9999", &["--count", "4000", "--rate", "4000"]);
    // Dropped on the wire, not refused to the sender: nothing counts as not sent.
    assert_eq!(u(&s, "not_sent"), 0, "{s}");
    let measured = u(&s, "lost") as f64 / n as f64;
    let expected = 1.0 - 0.8f64 * 0.8;
    let ci = 3.29 * (expected * (1.0 - expected) / n as f64).sqrt();
    assert!(
        (measured - expected).abs() <= ci,
        "measured {measured}, expected {expected}: {s}"
    );
    let out = lab.netem(&["clear", "--lab"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = lab.ping("198.18.0.2:9999", &["--count", "1000", "--rate", "4000"]);
    assert_eq!(u(&s, "lost"), 0, "cleared: {s}");
    let down = lab.netem(&["lab", "down"]);
    assert!(down.status.success());
    assert!(
        !ns_list().contains(&lab.ns("a")),
        "down removes the namespaces"
    );
    assert!(
        lab.netem(&["lab", "down"]).status.success(),
        "down is safe twice"
    );
}

#[test]
fn delay_uses_netem_or_says_why_not_and_falls_back_to_sonde_impair() {
    let Some(lab) = Lab::up("d") else { return };
    let (netem, stderr) = netem_detected(&lab);
    let _echo = lab.echo();
    let out = lab.netem(&["apply", "--lab", "--delay", "5ms"]);
    assert!(out.status.success(), "{}", text(&out));
    let target = if netem {
        "198.18.0.2:9999"
    } else {
        eprintln!(
            "netem path skipped: {}",
            stderr.lines().next().unwrap_or("")
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("applied by sonde impair"), "{said}");
        "198.18.0.2:9998"
    };
    let s = lab.ping(target, &["--count", "200", "--rate", "200"]);
    assert_eq!(u(&s, "received"), 200, "{s}");
    assert!(f(&s["rtt"], "min_us") >= 10_000.0, "{s}");
    assert!(lab.netem(&["clear", "--lab"]).status.success());
    let s = lab.ping("198.18.0.2:9999", &["--count", "100", "--rate", "1000"]);
    assert!(f(&s["rtt"], "p50_us") < 5_000.0, "delay cleared: {s}");
}

#[test]
fn rate_limit_throttles_the_lab_link() {
    let Some(lab) = Lab::up("t") else { return };
    let _echo = lab.echo();
    // 250/s of 1000-byte probes is 2 Mbit/s: a 1 Mbit/s link carries about half.
    let out = lab.netem(&["apply", "--lab-one-way", "--rate", "1mbit"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&lab.netem(&["show", "--lab"]).stdout).into_owned();
    assert!(shown.contains("rate 1Mbit"), "{shown}");
    let s = lab.ping(
        "198.18.0.2:9999",
        &["--count", "750", "--rate", "250", "--size", "1000"],
    );
    let loss = f(&s, "loss_pct");
    assert!((30.0..=65.0).contains(&loss), "loss {loss}%: {s}");
    // The bottleneck drops on the wire: the sender's own kernel refuses nothing.
    assert_eq!(u(&s, "not_sent"), 0, "{s}");
    assert!(lab.netem(&["clear", "--lab"]).status.success());
    let s = lab.ping(
        "198.18.0.2:9999",
        &["--count", "500", "--rate", "250", "--size", "1000"],
    );
    assert_eq!(u(&s, "lost"), 0, "cleared: {s}");
}

#[test]
fn without_netem_a_device_delay_is_refused_and_nothing_applied() {
    let Some(lab) = Lab::up("r") else { return };
    let (netem, _) = netem_detected(&lab);
    if netem {
        eprintln!("skipping: this kernel has netem, so nothing is refused");
        return;
    }
    let before = Command::new("tc")
        .args(["qdisc", "show", "dev", "lo"])
        .output()
        .unwrap();
    let out = lab.netem(&["apply", "--dev", "lo", "--delay", "5ms", "--loss", "5%"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing applied"));
    let after = Command::new("tc")
        .args(["qdisc", "show", "dev", "lo"])
        .output()
        .unwrap();
    assert_eq!(before.stdout, after.stdout);
    let nft = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&nft.stdout).contains("sonde_netem"));
}

fn check_sweep(dir: &std::path::Path, via: &str, loss_pct: f64, count: u64) {
    let csv = std::fs::read_to_string(dir.join("loss-sweep.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(csv.starts_with("via,configured_loss_pct,payload_bytes,sent,received"));
    let lossy = rows.iter().find(|r| r[1] == loss_pct.to_string()).unwrap();
    assert_eq!(lossy[0], via);
    let measured: f64 = lossy[5].parse().unwrap();
    let p = loss_pct / 100.0;
    let ci = 100.0 * 3.29 * (p * (1.0 - p) / count as f64).sqrt();
    assert!(
        (measured - loss_pct).abs() <= ci,
        "{via}: measured {measured}% for {loss_pct}%"
    );
    let svg = dir.join("loss-sweep.svg");
    let check = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); \
             ns = '{http://www.w3.org/2000/svg}'; \
             assert len(r.findall(ns + 'polyline')) == 1; \
             t = ' '.join(x.text or '' for x in r.iter(ns + 'text')); \
             assert 'configured loss' in t and 'measured loss' in t and '64 B' in t, t",
        ])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(check.status.success(), "svg: {}", text(&check));
}

#[test]
fn sweep_via_impair_needs_no_root() {
    if !have_peer("python3") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sonde-sweep-i{}", std::process::id()));
    let out = Command::new("bash")
        .arg(script())
        .args([
            "sweep", "--via", "impair", "--losses", "0 10", "--sizes", "64",
        ])
        .args(["--count", "3000", "--rate", "3000", "--out"])
        .arg(&dir)
        .env("SONDE", env!("CARGO_BIN_EXE_sonde"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    check_sweep(&dir, "impair", 10.0, 3000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sweep_through_the_lab_with_kernel_loss() {
    let Some(lab) = Lab::up("s") else { return };
    // The sweep brings its own echo; it reuses the lab that is up and leaves it up.
    let (netem, _) = netem_detected(&lab);
    let via = if netem { "netem" } else { "nft" };
    let dir = std::env::temp_dir().join(format!("sonde-sweep-k{}", std::process::id()));
    let out = lab.netem(&[
        "sweep",
        "--via",
        via,
        "--losses",
        "0 10",
        "--sizes",
        "64",
        "--count",
        "3000",
        "--rate",
        "3000",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    check_sweep(&dir, via, 10.0, 3000);
    assert!(
        ns_list().contains(&lab.ns("a")),
        "a lab it did not make stays up"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
