//! Helpers for the integration tests: spawn sonde and peers on loopback, read their output.
#![allow(dead_code)]

pub mod stamp;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn sonde() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sonde"))
}

pub fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// A missing prerequisite: on a user's machine, print why the test is skipped; under CI, fail
/// (`.ci/run` provides every prerequisite, so a skip there would hide a bug). Returns `false`.
pub fn skip(reason: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{reason}: required when CI=true (.ci/run provides it)"
    );
    eprintln!("skipping: {reason}");
    false
}

/// Whether a third-party peer is installed (see [`skip`] when it is not).
pub fn have_peer(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        || skip(&format!("{program} is not installed"))
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child that leads its own process group; the whole group is killed when dropped.
pub struct KillGroupOnDrop(pub Child);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// A child process killed when dropped, with the address it announced.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub stdout: BufReader<ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` and waits for its "listening on ADDR" line.
/// The address after "listening on " in a server's banner; without one, the server is killed
/// (not left running behind the failed test) and the test fails.
fn address_in(banner: &str, server: &mut Child) -> String {
    let addr = banner
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split([';', ' ', ',', '\n']).next());
    match addr {
        Some(addr) => addr.to_string(),
        None => {
            let _ = server.kill();
            panic!("no address in {banner:?}");
        }
    }
}

pub fn spawn_listening(mut cmd: Command) -> Server {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn server");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read first line");
    let addr = address_in(&line, &mut child);
    Server {
        child,
        addr,
        stdout,
    }
}

/// `sonde echo` on `bind` (port 0 for any).
pub fn sonde_echo(bind: &str) -> Server {
    let mut cmd = sonde();
    cmd.args(["echo", "--bind", bind]);
    spawn_listening(cmd)
}

/// The misbehaving Python echo of tests/peers/odd_echo.py.
pub fn odd_echo(mode: &str) -> Server {
    let mut cmd = Command::new("python3");
    cmd.arg(peer_script("tests/peers/odd_echo.py")).arg(mode);
    spawn_listening(cmd)
}

/// A loopback port that was free a moment ago.
/// One scrape of a `--metrics` endpoint at `addr`: the whole response.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something at `addr` echoes a datagram back (for peers that print nothing).
pub fn wait_for_echo(addr: &str) {
    let local = if addr.starts_with('[') {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 16];
    while Instant::now() < deadline {
        let _ = socket.send_to(b"ready?", addr);
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if &buf[..n] == b"ready?" {
                return;
            }
        }
    }
    panic!("nothing echoes at {addr}");
}

pub fn run(args: &[&str]) -> Output {
    sonde().args(args).output().expect("run sonde")
}

/// Runs sonde with `--json` appended and returns the parsed summary; the run must succeed.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sonde {all:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

pub fn u(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

pub fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// `sonde echo --json --bind BIND ARGS`; with `--json` the banner (and the address in it)
/// comes on stderr, and stdout holds only the final counters.
pub fn json_echo(bind: &str, args: &[&str]) -> Server {
    json_server(&[&["echo", "--bind", bind][..], args].concat())
}

/// `sonde ARGS --json` for a service that says where it listens in its banner (`echo`,
/// `impair`), on stderr with `--json`.
pub fn json_server(args: &[&str]) -> Server {
    let mut child = sonde()
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sonde echo");
    let mut banner = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    stderr.read_line(&mut banner).unwrap();
    // Keep reading, so that the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let addr = address_in(&banner, &mut child);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    Server {
        child,
        addr,
        stdout,
    }
}

/// Stops a server with `sig` and returns its JSON counters; it must exit 0.
pub fn stop_json(server: &mut Server, sig: &str) -> serde_json::Value {
    signal(&server.child, sig);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut server.stdout, &mut rest).unwrap();
    assert!(
        server.child.wait().unwrap().success(),
        "exit status after {sig}"
    );
    let last = rest.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {rest}"))
}

/// Sends SIGINT (or another signal) to a child, as Ctrl-C would.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Sends `sig` to a child whose stdout is piped and reads that to its end: what the child
/// printed, and how it exited.
pub fn signal_and_read(child: &mut Child, sig: &str) -> (String, std::process::ExitStatus) {
    signal(child, sig);
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("stdout piped");
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    (out, child.wait().unwrap())
}

/// A network namespace of the test's own, its loopback up and nothing else (no other link, no
/// route off the host), removed with everything in it (links, qdiscs, nftables) when dropped.
pub struct Netns(pub String);

impl Netns {
    /// `None` skips where this machine cannot make one (not root, no iproute2): a failure under
    /// CI=true.
    pub fn create(tag: &str) -> Option<Self> {
        if !have_peer("ip") {
            return None;
        }
        let name = format!("sonde-{tag}-{}", std::process::id());
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &name]) {
            skip("cannot create a network namespace (not root?)");
            return None;
        }
        let ns = Netns(name);
        assert!(ip(&["-n", &ns.0, "link", "set", "lo", "up"]));
        Some(ns)
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Writes a key file readable by its owner only, as `--key-file` wants it.
pub fn write_private(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Two network namespaces of the test's own joined by a veth pair (198.18.0.1 and .2); both
/// removed when dropped.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
}

impl NetnsPair {
    pub fn create(tag: &str) -> Option<Self> {
        if !have_peer("ip") {
            return None;
        }
        let pid = std::process::id();
        let pair = Self {
            a: format!("sonde-{tag}-a-{pid}"),
            b: format!("sonde-{tag}-b-{pid}"),
        };
        if !ip(&["netns", "add", &pair.a]) {
            skip("cannot create a network namespace (not root?)");
            return None;
        }
        let ok = ip(&["netns", "add", &pair.b])
            && ip(&[
                "link", "add", "va", "netns", &pair.a, "type", "veth", "peer", "name", "vb",
                "netns", &pair.b,
            ])
            && ip(&["-n", &pair.a, "addr", "add", "198.18.0.1/30", "dev", "va"])
            && ip(&["-n", &pair.b, "addr", "add", "198.18.0.2/30", "dev", "vb"])
            && ip(&["-n", &pair.a, "link", "set", "va", "up"])
            && ip(&["-n", &pair.b, "link", "set", "vb", "up"])
            && ip(&["-n", &pair.b, "link", "set", "lo", "up"]);
        assert!(ok, "setting up the namespaces failed");
        Some(pair)
    }

    /// sonde run inside namespace `ns`.
    pub fn exec(&self, ns: &str) -> Command {
        sonde_in(ns)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
    }
}

/// sonde run inside network namespace `ns`.
pub fn sonde_in(ns: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_sonde")]);
    cmd
}

/// `ip ARGS`, quietly: whether it succeeded.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Three namespaces of the test's own in a line, `a` — `r` — `b`, `r` routing between them:
/// IPv4 198.18.0.1 — .2 | .5 — 198.18.0.6 and IPv6 2001:2:0:1::1 — ::2 | 2001:2:0:2::1 — ::2
/// (RFC 5180's benchmarking prefix). All three removed when dropped.
pub struct RoutedPath {
    pub a: String,
    pub r: String,
    pub b: String,
}

impl RoutedPath {
    pub const B4: &'static str = "198.18.0.6";
    pub const B6: &'static str = "2001:2:0:2::2";

    /// The path with the MTU of the `r` — `b` link as seen from `r` (`rb`) and from `b` (`br`):
    /// a smaller `br` is a black hole (veth drops what its receiver's MTU cannot take, without
    /// a word), a smaller `rb` a router that answers "fragmentation needed" / "packet too big".
    pub fn create(tag: &str, rb_mtu: u32, br_mtu: u32) -> Option<Self> {
        if !have_peer("ip") {
            return None;
        }
        let pid = std::process::id();
        let path = Self {
            a: format!("sonde-{tag}-a-{pid}"),
            r: format!("sonde-{tag}-r-{pid}"),
            b: format!("sonde-{tag}-b-{pid}"),
        };
        if !ip(&["netns", "add", &path.a]) {
            skip("cannot create a network namespace (not root?)");
            return None;
        }
        let (a, r, b) = (path.a.as_str(), path.r.as_str(), path.b.as_str());
        let (rb, br) = (format!("mtu {rb_mtu}"), format!("mtu {br_mtu}"));
        let steps = [
            format!("netns add {r}"),
            format!("netns add {b}"),
            format!("link add ar netns {a} type veth peer name ra netns {r}"),
            format!("link add rb netns {r} type veth peer name br netns {b}"),
            format!("-n {a} addr add 198.18.0.1/30 dev ar"),
            format!("-n {r} addr add 198.18.0.2/30 dev ra"),
            format!("-n {r} addr add 198.18.0.5/30 dev rb"),
            format!("-n {b} addr add 198.18.0.6/30 dev br"),
            format!("-n {a} addr add 2001:2:0:1::1/64 dev ar nodad"),
            format!("-n {r} addr add 2001:2:0:1::2/64 dev ra nodad"),
            format!("-n {r} addr add 2001:2:0:2::1/64 dev rb nodad"),
            format!("-n {b} addr add 2001:2:0:2::2/64 dev br nodad"),
            format!("-n {r} link set dev rb {rb}"),
            format!("-n {b} link set dev br {br}"),
            format!("-n {a} link set dev ar up"),
            format!("-n {r} link set dev ra up"),
            format!("-n {r} link set dev rb up"),
            format!("-n {b} link set dev br up"),
            format!("-n {a} link set dev lo up"),
            format!("-n {r} link set dev lo up"),
            format!("-n {b} link set dev lo up"),
            format!("-n {a} route add default via 198.18.0.2"),
            format!("-n {b} route add default via 198.18.0.5"),
            format!("-n {a} -6 route add default via 2001:2:0:1::2"),
            format!("-n {b} -6 route add default via 2001:2:0:2::1"),
        ];
        for step in &steps {
            let args: Vec<&str> = step.split_whitespace().collect();
            assert!(ip(&args), "setting up the path failed at `ip {step}`");
        }
        let forwarding = Command::new("ip")
            .args(["netns", "exec", r, "sysctl", "-qw"])
            .args(["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(forwarding, "turning on forwarding in {r} failed");
        Some(path)
    }

    /// sonde run inside namespace `ns`.
    pub fn exec(&self, ns: &str) -> Command {
        sonde_in(ns)
    }

    /// A wildcard `sonde echo` in `b` on port 9999 (both families), limits off, answering `a`
    /// over both families (neighbours resolved, routes up) before it is handed over.
    pub fn echo_in_b(&self) -> Server {
        let mut cmd = self.exec(&self.b);
        cmd.args(["echo", "--bind", "[::]:9999"]).args([
            "--limit-per-source",
            "off",
            "--limit-total",
            "off",
        ]);
        let echo = spawn_listening(cmd);
        for target in ["198.18.0.6:9999", "[2001:2:0:2::2]:9999"] {
            let answered = (0..50).any(|_| {
                let probe = ["ping", target, "-c", "1", "-t", "100ms"];
                let (s, _) = self.json_from_a(&probe);
                s["received"] == 1
            });
            assert!(answered, "{target} does not answer across the path");
        }
        echo
    }

    /// `sonde ARGS --json` run in `a`: the summary, and the exit status.
    pub fn json_from_a(&self, args: &[&str]) -> (serde_json::Value, Option<i32>) {
        let out = self
            .exec(&self.a)
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(&text).unwrap_or_else(|e| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            panic!("sonde {args:?}: {e}: {text} {stderr}")
        });
        (value, out.status.code())
    }
}

impl Drop for RoutedPath {
    fn drop(&mut self) {
        for ns in [&self.a, &self.r, &self.b] {
            ip(&["netns", "del", ns]);
        }
    }
}
