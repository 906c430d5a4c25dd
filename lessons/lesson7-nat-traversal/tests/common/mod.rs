//! Plumbing for lesson 7's tests: start the rendezvous and peers on
//! loopback, a plain UDP socket that speaks the protocol, to play a peer
//! (or a stranger) the test controls exactly, and two such peers met.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use lesson7_nat_traversal::protocol::{self, Cookie, Message, Role, Token};
use testkit::{LOCALHOST, Running, command, find_socket_addr};

pub const RENDEZVOUS: &str = "lesson7-rendezvous";
pub const PEER: &str = "lesson7-peer";
pub const PROMPT: &str = "Enter message ('quit' to exit): ";

/// The rendezvous, its address, and its second port's address.
pub struct Server {
    pub running: Running,
    pub addr: SocketAddr,
    pub second: SocketAddr,
}

/// Starts the rendezvous on a free loopback port with `extra` arguments.
pub fn start_rendezvous(extra: &[&str]) -> Server {
    let mut args = vec!["--bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let running = Running::start("rendezvous", command(RENDEZVOUS, &args));
    let line = running.expect_stdout_line("rendezvous listening on ");
    let addr = find_socket_addr(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
    let line = running.expect_stdout_line("mapping check on ");
    let second = find_socket_addr(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
    Server {
        running,
        addr,
        second,
    }
}

/// A peer played by the test: its socket, name, and cookie.
pub struct Played {
    pub speaker: Speaker,
    pub name: String,
    pub cookie: Cookie,
}

/// Registers `name` from a new socket and has the second port check its
/// mapping; `hard`: from another socket, as a NAT that gives each
/// destination its own port would show it.
pub fn register_and_map(server: &Server, name: &str, hard: bool) -> Played {
    let speaker = Speaker::new();
    let private = speaker.addr();
    speaker.send(
        &Message::Register {
            name: name.into(),
            private,
            cookie: None,
        },
        server.addr,
    );
    let Message::Registered { cookie, .. } = speaker.receive().0 else {
        panic!("{name}: no REGISTERED");
    };
    let other = Speaker::new();
    let from = if hard { &other } else { &speaker };
    from.send(
        &Message::Mapping {
            name: name.into(),
            cookie,
        },
        server.second,
    );
    let (answer, _) = from.receive();
    assert_eq!(
        answer,
        Message::Mapped {
            name: name.into(),
            public: from.addr()
        }
    );
    Played {
        speaker,
        name: name.into(),
        cookie,
    }
}

impl Played {
    pub fn connect(&self, peer: &str, server: &Server) {
        let (name, cookie) = (self.name.clone(), self.cookie);
        self.speaker.send(
            &Message::Connect {
                name,
                peer: peer.into(),
                cookie,
            },
            server.addr,
        );
    }

    /// The PEER answer: the session's token and our role.
    pub fn receive_peer(&self) -> (Token, Role) {
        loop {
            match self.speaker.receive().0 {
                Message::Peer { token, role, .. } => return (token, role),
                Message::Waiting { .. } => {}
                other => panic!("{}: expected PEER, got {other:?}", self.name),
            }
        }
    }

    pub fn allocate(&self, peer: &str, token: Token, server: &Server) {
        let request = Message::Allocate {
            name: self.name.clone(),
            peer: peer.into(),
            token,
            cookie: self.cookie,
        };
        self.speaker.send(&request, server.addr);
    }
}

/// alice and bob, registered, mapped (`hard`: whose NAT is hard), and
/// introduced; with their token and roles.
pub fn meet(server: &Server, hard: (bool, bool)) -> (Played, Played, Token, (Role, Role)) {
    let alice = register_and_map(server, "alice", hard.0);
    let bob = register_and_map(server, "bob", hard.1);
    alice.connect("bob", server);
    assert_eq!(
        alice.speaker.receive().0,
        Message::Waiting { peer: "bob".into() }
    );
    bob.connect("alice", server);
    let (token, role_a) = alice.receive_peer();
    let (token_b, role_b) = bob.receive_peer();
    assert_eq!(token, token_b);
    (alice, bob, token, (role_a, role_b))
}

/// alice and bob (easy NATs) with a relay allocated for both.
pub fn relayed(server: &Server) -> (Played, Played, Token) {
    let (alice, bob, token, _) = meet(server, (false, false));
    alice.allocate("bob", token, server);
    assert_eq!(
        alice.speaker.receive().0,
        Message::Waiting { peer: "bob".into() }
    );
    bob.allocate("alice", token, server);
    let max = protocol::RELAY_MAX;
    assert_eq!(
        bob.speaker.receive().0,
        Message::Allocated {
            peer: "alice".into(),
            token,
            max
        }
    );
    (alice, bob, token)
}

/// Starts a peer named `name` that wants `peer`, bound to a free loopback
/// port; returns it with its bound address.
pub fn start_peer(
    rendezvous: SocketAddr,
    name: &str,
    peer: &str,
    extra: &[&str],
) -> (Running, SocketAddr) {
    let rendezvous = rendezvous.to_string();
    let mut args = vec![];
    if !extra.contains(&"--bind") {
        args.extend(["--bind", "127.0.0.1:0"]);
    }
    args.extend([
        "--rendezvous",
        &rendezvous,
        "--name",
        name,
        "--peer-name",
        peer,
    ]);
    args.extend_from_slice(extra);
    let running = Running::start(name, command(PEER, &args));
    let line = running.expect_stdout_line("bound to ");
    let addr = find_socket_addr(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
    (running, addr)
}

/// A UDP socket on loopback that sends and receives protocol messages.
pub struct Speaker {
    pub socket: UdpSocket,
}

impl Speaker {
    pub fn new() -> Speaker {
        let socket = UdpSocket::bind(SocketAddr::new(LOCALHOST, 0)).expect("bind a UDP socket");
        socket
            .set_read_timeout(Some(testkit::DEADLINE))
            .expect("set a read timeout");
        Speaker { socket }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local address")
    }

    pub fn send(&self, message: &Message, to: SocketAddr) {
        self.send_bytes(&message.encode(), to);
    }

    pub fn send_bytes(&self, bytes: &[u8], to: SocketAddr) {
        self.socket.send_to(bytes, to).expect("send a datagram");
    }

    /// The next message and its sender; fails after [`testkit::DEADLINE`].
    pub fn receive(&self) -> (Message, SocketAddr) {
        let mut buffer = vec![0u8; 65_536];
        let (len, from) = self
            .socket
            .recv_from(&mut buffer)
            .unwrap_or_else(|err| panic!("{}: no datagram: {err}", self.addr()));
        let message = protocol::parse(&buffer[..len])
            .unwrap_or_else(|err| panic!("{}: bad datagram from {from}: {err}", self.addr()));
        (message, from)
    }

    /// The next message other than PUNCH (probes repeat while punching).
    pub fn receive_skipping_probes(&self) -> (Message, SocketAddr) {
        loop {
            let received = self.receive();
            if !matches!(received.0, Message::Punch { .. }) {
                return received;
            }
        }
    }

    /// Whether any datagram arrives within `wait`.
    pub fn hears_anything_within(&self, wait: Duration) -> Option<Message> {
        self.socket
            .set_read_timeout(Some(wait))
            .expect("set a read timeout");
        let mut buffer = vec![0u8; 65_536];
        let got = self
            .socket
            .recv_from(&mut buffer)
            .ok()
            .and_then(|(len, _)| protocol::parse(&buffer[..len]).ok());
        self.socket
            .set_read_timeout(Some(testkit::DEADLINE))
            .expect("set a read timeout");
        got
    }
}

/// The `flags:` of every socket descriptor process `pid` holds, as
/// /proc/PID/fdinfo shows them (octal: O_NONBLOCK is 04000).
pub fn socket_flags(pid: nix::unistd::Pid) -> Vec<(String, i32)> {
    let mut sockets = Vec::new();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd");
    for entry in fds.map(|entry| entry.expect("a /proc/PID/fd entry")) {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let fd = entry.file_name().to_string_lossy().into_owned();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
            .expect("read /proc/PID/fdinfo/FD");
        let flags = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .and_then(|flags| i32::from_str_radix(flags.trim(), 8).ok())
            .unwrap_or_else(|| panic!("no flags in fdinfo {fd}: {info}"));
        sockets.push((fd, flags));
    }
    sockets
}

/// Asserts that every socket `running` holds is non-blocking, and that it
/// holds `count` of them.
pub fn assert_sockets_non_blocking(running: &Running, count: usize) {
    let sockets = socket_flags(running.pid());
    assert_eq!(sockets.len(), count, "{sockets:?}\n{}", running.describe());
    for (fd, flags) in sockets {
        assert_ne!(
            flags & nix::libc::O_NONBLOCK,
            0,
            "socket descriptor {fd} of {} is blocking (flags {flags:o})",
            running.command_line()
        );
    }
}
