//! A role of one's own: the RFC 863 discard service, which counts what it receives and answers
//! nothing, run by sonde's engine without touching the engine.
//!
//!     cargo run --example discard -- 127.0.0.1:9009 [N]    # until Ctrl-C, or N datagrams
use mio::{event::Event, net::UdpSocket, Interest, Registry, Token};
use sonde::{error::Error, Engine, Role, Wake};
use std::{io, net::SocketAddr, time::Instant};

struct Discard {
    socket: UdpSocket,
    buf: Vec<u8>,
    datagrams: u64,
    bytes: u64,
    /// Stop after this many datagrams (a client-like end), or run until stopped.
    limit: Option<u64>,
    stopped: bool,
}

impl Role for Discard {
    fn register(&mut self, registry: &Registry, first: Token) -> io::Result<()> {
        registry.register(&mut self.socket, first, Interest::READABLE)
    }

    fn ready(&mut self, _index: usize, _event: &Event) -> Result<(), Error> {
        // Drain until the socket would block: readiness is edge-triggered.
        while let Ok((len, _from)) = self.socket.recv_from(&mut self.buf) {
            self.datagrams += 1;
            self.bytes += len as u64;
        }
        Ok(())
    }

    fn advance(&mut self, _now: Instant) -> Result<Wake, Error> {
        Ok(Wake::IDLE) // nothing to do for time's sake
    }

    fn stop(&mut self, _now: Instant, _hard: bool) {
        self.stopped = true;
    }

    fn is_client(&self) -> bool {
        self.limit.is_some()
    }

    fn is_done(&self) -> bool {
        self.stopped || self.limit.is_some_and(|n| self.datagrams >= n)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:9009").parse()?;
    let limit = args.next().map(|n| n.parse()).transpose()?;
    let socket = UdpSocket::bind(addr)?;
    println!("discard: listening on {}", socket.local_addr()?);
    let mut role = Discard {
        socket,
        buf: vec![0; 65_536],
        datagrams: 0,
        bytes: 0,
        limit,
        stopped: false,
    };
    let mut engine = Engine::new()?;
    engine.stop_on_signals()?;
    engine.run(&mut [&mut role])?;
    println!(
        "discard: {} datagrams, {} bytes",
        role.datagrams, role.bytes
    );
    Ok(())
}
