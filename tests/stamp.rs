//! STAMP (RFC 8762): sonde's Session-Sender and Session-Reflector against each other, against
//! hostile datagrams, and against stamp-suite, an implementation no one here wrote.

mod common;

use common::stamp::*;
use common::*;
use std::net::UdpSocket;
use std::time::Duration;

#[test]
fn sonde_sender_and_reflector_split_the_round_trip() {
    let (reflector, addr) = sonde_reflector(&["--stateful"]);
    let s = run_json(&["ping", &addr, "--wire", "stamp", "-c", "500", "-r", "5000"]);
    assert_eq!((u(&s, "sent"), u(&s, "received")), (500, 500), "{s}");
    assert_eq!(u(&s, "mismatched") + u(&s, "foreign"), 0, "{s}");
    // Dwell comes off the round trip; the two one-way delays then add up to about it (one
    // host, one clock).
    let dwell = f(&s["reflector_dwell"], "p50_us");
    assert!(dwell > 0.0, "{s}");
    let forward = f(&s["forward"]["delay"], "mean_us");
    let backward = f(&s["backward"]["delay"], "mean_us");
    let rtt = f(&s["rtt"], "mean_us");
    assert!(
        ((forward + backward) - rtt).abs() < 0.2 * rtt + 2.0,
        "forward {forward} + backward {backward} vs rtt {rtt}"
    );
    assert_eq!(
        u(&s["forward"], "below_zero") + u(&s["backward"], "below_zero"),
        0
    );
    // Each side's clock said for itself; the delays are true delays only when both are.
    let sides = &s["clock_synchronized"];
    let both = sides["sender"].as_bool().unwrap() && sides["reflector"].as_bool().unwrap();
    assert_eq!(
        s["forward"]["clocks_synchronized"].as_bool(),
        Some(both),
        "{s}"
    );
    let echo = counters(reflector);
    assert_eq!(u(&echo, "datagrams"), 500);
    assert_eq!(
        u(&echo, "bytes_out"),
        u(&echo, "bytes"),
        "as long as asked, never longer"
    );
}

#[test]
fn the_reflector_answers_nothing_but_test_packets_of_its_mode() {
    let dir = temp_dir("hostile");
    let key = key_file(&dir);
    let (reflector, addr) = sonde_reflector(&["--key-file", &key]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Too short, unauthenticated (44 bytes, and 112 with no valid HMAC), garbage.
    for datagram in [
        vec![0u8; 10],
        vec![0u8; 44],
        vec![0u8; 112],
        vec![0xff; 300],
    ] {
        client.send_to(&datagram, &addr).unwrap();
    }
    let mut buf = [0u8; 512];
    assert!(
        client.recv_from(&mut buf).is_err(),
        "something was answered"
    );
    // Signed probes are answered.
    let s = run_json(&[
        "ping",
        &addr,
        "--wire",
        "stamp",
        "--key-file",
        &key,
        "-c",
        "50",
        "-r",
        "1000",
    ]);
    assert_eq!(u(&s, "received"), 50, "{s}");
    assert_eq!(s["size_bytes"], 112);
    let echo = counters(reflector);
    assert_eq!(u(&echo, "datagrams"), 54);
    // The two of 112 bytes and more fail the HMAC; the two shorter are no test packets.
    assert_eq!(u(&echo["refused"], "auth_failed"), 2, "{echo}");
    assert_eq!(u(&echo, "not_answered"), 2, "{echo}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_stamp_target_without_a_port_is_port_862_and_other_formats_need_one() {
    let out = run(&["ping", "127.0.0.1", "-c", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"));
    // Nothing listens on 862 here: the run says where it sent, and ends.
    let out = run(&[
        "ping",
        "127.0.0.1",
        "--wire",
        "stamp",
        "-c",
        "1",
        "-t",
        "100ms",
        "--json",
    ]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["target"], "127.0.0.1:862");
}

// ---- against stamp-suite (installed by .ci/run) ----

fn sonde_against_suite(extra_suite: &[&str], extra_sonde: &[&str]) {
    let Some((_suite, addr)) = suite_reflector(extra_suite) else {
        return;
    };
    let mut args = vec!["ping", &addr, "--wire", "stamp", "-c", "300", "-r", "1000"];
    args.extend_from_slice(extra_sonde);
    let s = run_json(&args);
    assert_eq!((u(&s, "sent"), u(&s, "received")), (300, 300), "{s}");
    assert_eq!(u(&s, "mismatched") + u(&s, "foreign"), 0, "{s}");
    assert_eq!(u(&s["reflector_dwell"], "count"), 300, "{s}");
    assert_eq!(u(&s["forward"]["delay"], "count"), 300, "{s}");
}

#[test]
fn sonde_measures_a_stateless_stamp_suite_reflector() {
    sonde_against_suite(&[], &[]);
}

#[test]
fn sonde_measures_a_stateful_stamp_suite_reflector_with_ptp_stamps() {
    sonde_against_suite(&["--stateful-reflector"], &["--stamp-clock", "ptp"]);
}

#[test]
fn sonde_measures_an_authenticated_stamp_suite_reflector() {
    if !have_peer("stamp-suite") {
        return;
    }
    let dir = temp_dir("suite-auth");
    let key = key_file(&dir);
    sonde_against_suite(&["-A", "A", "--hmac-key-file", &key], &["--key-file", &key]);
    std::fs::remove_dir_all(dir).unwrap();
}

fn suite_against_sonde(reflector_flags: &[&str], suite_flags: &[&str], stateful: bool) {
    if stamp_suite().is_none() {
        return;
    }
    let (reflector, addr) = sonde_reflector(reflector_flags);
    let s = suite_sender(&addr, 200, suite_flags);
    assert_eq!(s["packets_sent"], 200, "{s}");
    assert_eq!(s["packets_received"], 200, "{s}");
    assert_eq!(s["packets_lost"], 0, "{s}");
    assert_eq!(s["owd"]["samples"], 200, "one-way samples for each: {s}");
    if stateful {
        assert_eq!(s["measurements"]["last_reflector_sequence"], 199, "{s}");
    }
    let echo = counters(reflector);
    assert_eq!(u(&echo, "datagrams"), 200, "{echo}");
}

#[test]
fn stamp_suite_measures_sonde_stateless_and_stateful() {
    suite_against_sonde(&[], &[], false);
    suite_against_sonde(&["--stateful"], &[], true);
}

#[test]
fn stamp_suite_measures_sonde_authenticated() {
    if stamp_suite().is_none() {
        return;
    }
    let dir = temp_dir("sonde-auth");
    let key = key_file(&dir);
    suite_against_sonde(
        &["--key-file", &key, "--stateful"],
        &["-A", "A", "--hmac-key-file", &key],
        true,
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn forward_loss_is_told_from_backward_by_a_counting_reflector() {
    let s = through_impair(
        &["--stateful"],
        &["--loss", "10%", "--direction", "up"],
        &TEN_PERCENT_RUN,
    );
    let forward = assert_ten_percent_lost(&s, "forward", "backward");
    // Probes lost after the last answered one are in neither direction.
    assert!(u(&s, "lost") - forward <= 10, "{s}");
    // Then the other way: the reflector counts every probe, and its answers go missing. Its
    // sequence numbers then equal ours, as a stateless reflector's do: only its Direct
    // Measurement counters can say the loss was all on the way back.
    let down = ["--loss", "10%", "--direction", "down"];
    let s = through_impair(&["--stateful"], &down, &TEN_PERCENT_RUN);
    assert!(s["backward"]["lost"].is_null(), "never a guess: {s}");
    let direct = [&["--stamp-tlv", "direct"][..], &TEN_PERCENT_RUN].concat();
    let s = through_impair(&["--stateful"], &down, &direct);
    assert_ten_percent_lost(&s, "backward", "forward");
}

#[test]
fn one_way_delays_show_which_way_is_slow() {
    let s = through_impair(
        &["--stateful"],
        &["--delay", "5ms", "--direction", "up"],
        &["-c", "200", "-r", "1000"],
    );
    assert_eq!(u(&s, "received"), 200, "{s}");
    assert!(f(&s["forward"]["delay"], "min_us") >= 5_000.0, "{s}");
    assert!(f(&s["backward"]["delay"], "p50_us") < 1_000.0, "{s}");
    // A reflector that lost nothing forward cannot say which way the losses went: there were
    // none, so both are 0.
    assert_eq!(u(&s["forward"], "lost"), 0);
}

#[test]
fn a_stateless_reflector_leaves_the_loss_split_unknown() {
    let s = through_impair(
        &[],
        &["--loss", "10%", "--direction", "up"],
        &["-c", "1000", "-r", "5000", "-t", "200ms"],
    );
    assert!(u(&s, "lost") > 0, "{s}");
    assert!(s["forward"]["lost"].is_null(), "never a guess: {s}");
    assert!(s["backward"]["lost"].is_null(), "{s}");
}

#[test]
fn bad_stamp_flags_name_the_flag_and_exit_2() {
    for (args, flag) in [
        (&["echo", "--stateful"][..], "--stateful"),
        (
            &[
                "ping",
                "127.0.0.1:9",
                "--wire",
                "stamp",
                "--stamp-clock",
                "gps",
            ],
            "--stamp-clock",
        ),
        (
            &[
                "ping",
                "127.0.0.1:9",
                "--wire",
                "stamp",
                "--size",
                "43",
                "-c",
                "1",
            ],
            "--size",
        ),
        (
            &["echo", "--wire", "stamp", "--key-file", "/nonexistent/key"],
            "--key-file",
        ),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
