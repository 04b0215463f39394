//! A role of one's own (examples/discard.rs, RFC 863 discard) runs on sonde's engine, with no
//! change to the engine: it counts what it receives, answers nothing, and stops on its own or on
//! SIGTERM.

mod common;

use common::*;
use std::io::Read;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn discard() -> Command {
    // Cargo builds the examples beside the binary (target/<profile>/examples) for the tests.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sonde"));
    let example = bin.parent().unwrap().join("examples").join("discard");
    assert!(example.exists(), "{} is not built", example.display());
    Command::new(example)
}

#[test]
fn the_discard_role_counts_and_answers_nothing() {
    let mut cmd = discard();
    cmd.args(["127.0.0.1:0", "50"]);
    let mut server = spawn_listening(cmd);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for i in 0..50u8 {
        client.send_to(&[i; 100], &server.addr).unwrap();
    }
    // It ends by itself after 50 datagrams, as a client-like role.
    let status = server.child.wait().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    server.stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("50 datagrams, 5000 bytes"), "{rest:?}");
    let mut buf = [0u8; 200];
    assert!(client.recv_from(&mut buf).is_err(), "discard answered");
}

#[test]
fn the_discard_role_stops_on_sigterm_and_prints_its_count() {
    let mut cmd = discard();
    cmd.arg("127.0.0.1:0");
    let mut server = spawn_listening(cmd);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        client.send_to(b"hello", &server.addr).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    signal(&server.child, "TERM");
    let status = server.child.wait().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    server.stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("3 datagrams, 15 bytes"), "{rest:?}");
}
