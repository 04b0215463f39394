//! What real links need, checked on the wire: a reflector bound to a wildcard address answers
//! from the address it was asked at (on loopback across 127.0.0.0/8, and in namespaces where the
//! reflector's interface has a second address).

mod common;

use common::*;

/// An echo on the wildcard `bind` (port 0), limits off (it is reachable from the network, so
/// they would be on); returns it and its port.
fn wildcard_echo(bind: &str, extra: &[&str]) -> (Server, String) {
    let mut cmd = sonde();
    cmd.args(["echo", "--bind", bind])
        .args(["--limit-per-source", "off", "--limit-total", "off"])
        .args(extra);
    let echo = spawn_listening(cmd);
    let port = echo.addr.rsplit(':').next().unwrap().to_string();
    (echo, port)
}

#[test]
fn a_wildcard_echo_answers_from_each_loopback_address_it_is_asked_at() {
    let (_echo, port) = wildcard_echo("0.0.0.0:0", &[]);
    for (target, gso) in [
        ("127.0.0.2", "off"),
        ("127.0.0.3", "on"),
        ("127.1.2.3", "auto"),
    ] {
        let addr = format!("{target}:{port}");
        // A closed-loop window: replies come in batches, and with GSO in runs answered as runs.
        let s = run_json(&[
            "ping",
            &addr,
            "--inflight",
            "64",
            "-c",
            "20000",
            "--gso",
            gso,
        ]);
        assert_eq!(u(&s, "received"), 20_000, "{target}: {s}");
        assert_eq!(
            u(&s, "foreign"),
            0,
            "{target}: answered from elsewhere: {s}"
        );
        // One at a time too (the lone-reply path).
        let s = run_json(&["ping", &addr, "-c", "20", "-r", "200"]);
        assert_eq!((u(&s, "received"), u(&s, "foreign")), (20, 0), "{s}");
    }
}

#[test]
fn a_wildcard_stamp_reflector_and_an_ipv6_echo_answer_from_the_address_asked() {
    let (_stamp, port) = wildcard_echo("0.0.0.0:0", &["--wire", "stamp"]);
    let s = run_json(&[
        "ping",
        &format!("127.0.0.7:{port}"),
        "--wire",
        "stamp",
        "-c",
        "500",
        "-r",
        "5000",
    ]);
    assert_eq!((u(&s, "received"), u(&s, "foreign")), (500, 0), "{s}");
    let (_echo, port) = wildcard_echo("[::]:0", &[]);
    // IPv4 to an IPv6 wildcard arrives v4-mapped, and must go back from the same address.
    for target in ["[::1]", "127.0.0.8"] {
        let target = format!("{target}:{port}");
        let s = run_json(&["ping", &target, "--inflight", "16", "-c", "2000"]);
        assert_eq!(
            (u(&s, "received"), u(&s, "foreign")),
            (2000, 0),
            "{target}: {s}"
        );
    }
}

#[test]
fn a_reflector_answers_from_a_secondary_address_across_a_veth() {
    let Some(pair) = NetnsPair::create("secondary") else {
        return;
    };
    // The reflector's interface gets a second address, in another network: answers to the
    // pinger (198.18.0.1) would leave from the primary (198.18.0.2) if the routing chose.
    assert!(ip(&[
        "-n",
        &pair.b,
        "addr",
        "add",
        "198.18.1.2/24",
        "dev",
        "vb"
    ]));
    assert!(ip(&[
        "-n",
        &pair.a,
        "route",
        "add",
        "198.18.1.0/24",
        "dev",
        "va"
    ]));
    for wire in ["sonde", "stamp"] {
        let mut cmd = pair.exec(&pair.b);
        cmd.args(["echo", "--bind", "0.0.0.0:9999", "--wire", wire])
            .args(["--limit-per-source", "off", "--limit-total", "off"]);
        let _echo = spawn_listening(cmd);
        for target in ["198.18.1.2:9999", "198.18.0.2:9999"] {
            let out = pair
                .exec(&pair.a)
                .args([
                    "ping", target, "--wire", wire, "-c", "200", "-r", "2000", "--json",
                ])
                .output()
                .unwrap();
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(u(&s, "received"), 200, "{wire} to {target}: {s}");
            assert_eq!(u(&s, "foreign"), 0, "{wire} to {target}: {s}");
        }
    }
}
