//! scripts/mesh.sh with three hosts: every host pings the others with --metrics, one Prometheus
//! scrapes them all, one path is impaired, and the matrix from PromQL shows it and only it.
//! Root (namespaces) and Prometheus are needed; `down` leaves nothing behind.

mod common;

use common::*;
use std::collections::HashMap;
use std::process::Command;

/// The matrix `title` in mesh.sh's output, by (from, to).
fn matrix(out: &str, title: &str) -> HashMap<(String, String), String> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with(title)).skip(1);
    let columns: Vec<String> = lines
        .next()
        .unwrap_or_else(|| panic!("no {title} matrix in {out}"))
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut cells = HashMap::new();
    for line in lines.take_while(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let from = words.next().unwrap().to_string();
        for (to, value) in columns.iter().zip(words) {
            cells.insert((from.clone(), to.clone()), value.to_string());
        }
    }
    cells
}

fn percent(v: &str) -> f64 {
    v.trim_end_matches('%').parse().unwrap()
}

fn ms(v: &str) -> f64 {
    v.trim_end_matches("ms").parse().unwrap()
}

#[test]
fn a_three_host_mesh_shows_its_impaired_path_in_prometheus() {
    if !is_root() {
        skip("mesh.sh needs root (network namespaces)");
        return;
    }
    if !have_peer("prometheus") {
        skip("Prometheus is not installed (apt-get install prometheus)");
        return;
    }
    let mesh = format!("sonde-mt{}", std::process::id());
    let script = peer_script("scripts/mesh.sh");
    let mesh_sh = |args: &[&str]| {
        Command::new("bash")
            .arg(&script)
            .args(args)
            .env("SONDE", env!("CARGO_BIN_EXE_sonde"))
            .env("SONDE_MESH", &mesh)
            .output()
            .unwrap()
    };
    let out = mesh_sh(&[
        "run",
        "--hosts",
        "3",
        "--seconds",
        "10",
        "--impair",
        "1-2",
        "--loss",
        "20%",
        "--delay",
        "3ms",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    let loss = matrix(&text, "loss");
    let p50 = matrix(&text, "rtt p50");
    let key = |a: &str, b: &str| (a.to_string(), b.to_string());
    // The impaired path: about the loss set (20% of some 200 probes), and its delay.
    let impaired = percent(&loss[&key("h1", "h2")]);
    assert!(
        (8.0..=35.0).contains(&impaired),
        "h1 -> h2 loss {impaired}%: {text}"
    );
    assert!(ms(&p50[&key("h1", "h2")]) >= 3.0, "{text}");
    // Every other path: clean and fast.
    for from in ["h1", "h2", "h3"] {
        for to in ["h1", "h2", "h3"] {
            if from == to || (from, to) == ("h1", "h2") {
                continue;
            }
            assert!(
                percent(&loss[&key(from, to)]) < 2.0,
                "{from} -> {to}: {text}"
            );
            assert!(ms(&p50[&key(from, to)]) < 1.5, "{from} -> {to}: {text}");
        }
    }
    // Nothing left: no namespace, no state; and down again is harmless.
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains(&mesh),
        "namespaces left behind"
    );
    assert!(!std::path::Path::new(&format!("/run/{mesh}")).exists());
    assert!(mesh_sh(&["down"]).status.success());
    assert!(mesh_sh(&["down"]).status.success());
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
