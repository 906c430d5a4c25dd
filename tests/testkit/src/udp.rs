//! What the UDP lessons' (1 and 2) tests share: start a chat peer on a free
//! port and read its address back, start two peers that know each other, a
//! plain UDP socket standing in for `nc -u`, and the checks both lessons
//! must pass (command-line errors, long lines, odd payloads).
//!
//! `alternating` says which lesson is under test: lesson 1 only receives
//! between two lines typed, so a check types an empty line ("presses
//! Enter") to let it pick up a datagram; lesson 2's receiver thread prints
//! it without any help.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;

use assert_cmd::Command as AssertCommand;
use predicates::prelude::*;

use crate::{DEADLINE, Running, command, find_socket_addr, free_udp_addr};

/// A short receive timeout keeps lesson 1's turns and lesson 2's shutdown
/// quick in tests.
pub const FAST: &[&str] = &["--recv-timeout-ms", "100"];

/// The prompt both lessons print before reading a line.
pub const PROMPT: &str = "Enter message ('quit' to exit): ";

/// Starts chat binary `bin` with `--bind bind --peer peer` and `extra`;
/// waits for its `bound to` line and returns it with the bound address.
pub fn start_peer(
    label: &str,
    bin: &str,
    bind: SocketAddr,
    peer: SocketAddr,
    extra: &[&str],
) -> (Running, SocketAddr) {
    let (bind, peer) = (bind.to_string(), peer.to_string());
    let mut args = vec!["--bind", bind.as_str(), "--peer", peer.as_str()];
    args.extend_from_slice(extra);
    let running = Running::start(label, command(bin, &args));
    let line = running.expect_stdout_line("bound to ");
    let addr = find_socket_addr(&line).unwrap_or_else(|| panic!("{label}: no address in {line:?}"));
    (running, addr)
}

/// Two peers that know each other: A (`bin_a`) binds a free port and sends
/// to a port reserved for B; B (`bin_b`) is started with the arguments of
/// the command A printed ("start the peer with: …"), which tests that line.
/// Returns A, A's address, B, B's address.
pub fn start_pair(
    bin_a: &str,
    bin_b: &str,
    ip: IpAddr,
    extra: &[&str],
) -> (Running, SocketAddr, Running, SocketAddr) {
    let b_addr = free_udp_addr(ip);
    let (a, a_addr) = start_peer("peer A", bin_a, SocketAddr::new(ip, 0), b_addr, extra);
    let line = a.expect_stdout_line("start the peer with: ");
    let printed = line
        .split_once("start the peer with: ")
        .map(|(_, command)| command)
        .unwrap_or_default();
    let mut words = printed.split_whitespace();
    let program = words.next().unwrap_or_default();
    assert!(
        program.ends_with(bin_a),
        "peer A printed an unexpected command: {printed:?}"
    );
    let args: Vec<&str> = words.collect();
    assert_eq!(
        args[..4],
        ["--bind", &b_addr.to_string(), "--peer", &a_addr.to_string()],
        "peer A's command for peer B binds B's address and sends to A's"
    );
    let b = Running::start("peer B", command(bin_b, &args));
    let line = b.expect_stdout_line("bound to ");
    assert_eq!(
        find_socket_addr(&line),
        Some(b_addr),
        "peer B binds the address A sends to"
    );
    (a, a_addr, b, b_addr)
}

/// A chat peer whose other side is a plain UDP socket in the test, as
/// `nc -u` would be.
pub struct SocketPeer {
    pub app: Running,
    /// Where the program receives.
    pub app_addr: SocketAddr,
    /// The test's socket: the program's configured peer.
    pub socket: UdpSocket,
}

impl SocketPeer {
    pub fn start(bin: &str, ip: IpAddr, extra: &[&str]) -> SocketPeer {
        let socket = bound_socket(ip);
        let (app, app_addr) = start_peer(
            bin,
            bin,
            SocketAddr::new(ip, 0),
            socket.local_addr().expect("local address"),
            extra,
        );
        app.expect_stdout(PROMPT);
        SocketPeer {
            app,
            app_addr,
            socket,
        }
    }

    /// The test socket's address, as the program prints a sender.
    pub fn socket_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local address")
    }

    /// Sends `bytes` from the test socket to the program.
    pub fn send(&self, bytes: &[u8]) {
        self.socket
            .send_to(bytes, self.app_addr)
            .expect("send a datagram to the program");
    }

    /// The next datagram the program sent, waiting at most [`DEADLINE`].
    pub fn receive(&self) -> Vec<u8> {
        receive(&self.socket)
    }

    /// Lets lesson 1 receive (it does between two typed lines); for lesson 2
    /// a no-op.
    pub fn nudge(&mut self, alternating: bool) {
        if alternating {
            self.app.type_line("");
        }
    }
}

/// A UDP socket on `ip`, port chosen by the kernel, whose receives give up
/// after [`DEADLINE`].
pub fn bound_socket(ip: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind a UDP socket");
    socket
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    socket
}

/// The next datagram on `socket`; fails the test after [`DEADLINE`].
pub fn receive(socket: &UdpSocket) -> Vec<u8> {
    let mut buffer = vec![0; 65_536];
    let (len, _) = socket
        .recv_from(&mut buffer)
        .expect("a datagram within the deadline");
    buffer.truncate(len);
    buffer
}

/// What a printed line holds after `[from IP:PORT] ` (the line may start
/// with a prompt that was on screen when the message came).
pub fn message<'a>(line: &'a str, from: &str) -> &'a str {
    line.split_once(from)
        .map_or_else(|| panic!("{line:?} holds no {from:?}"), |(_, text)| text)
}

/// The replacements that turn a captured run into the book's: A's and B's
/// random ports become the lessons' defaults, and the workspace's path goes
/// (the printed command reads `target/debug/…`).
pub fn book_replacements(a: SocketAddr, b: SocketAddr) -> Vec<(String, String)> {
    vec![
        (a.to_string(), "127.0.0.1:55566".into()),
        (b.to_string(), "127.0.0.1:55577".into()),
        (
            format!("{}/", crate::workspace_root().display()),
            String::new(),
        ),
    ]
}

// ---- checks both UDP lessons must pass ----

/// Two peers on `ip` exchange a message each way.
pub fn check_exchange(
    bin_a: &str,
    bin_b: &str,
    ip: IpAddr,
    a_alternates: bool,
    b_alternates: bool,
) {
    let (mut a, a_addr, mut b, b_addr) = start_pair(bin_a, bin_b, ip, FAST);
    a.expect_stdout(PROMPT);
    b.expect_stdout(PROMPT);
    a.type_line("hello from A");
    if b_alternates {
        b.type_line("");
    }
    b.expect_stdout_line(&format!("[from {a_addr}] hello from A"));
    b.type_line("hello from B");
    if a_alternates {
        a.type_line("");
    }
    a.expect_stdout_line(&format!("[from {b_addr}] hello from B"));
    for peer in [&mut a, &mut b] {
        peer.type_line("quit");
        assert!(peer.wait_exit().success(), "{}", peer.describe());
    }
}

/// A 60,000-byte line goes out as one datagram, and one comes in and is
/// printed whole.
pub fn check_long_line(bin: &str, alternating: bool) {
    let mut chat = SocketPeer::start(bin, crate::LOCALHOST, FAST);
    let line: String = (0..60_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    chat.app.type_line(&line);
    assert_eq!(
        chat.receive(),
        line.as_bytes(),
        "the whole line arrives as one datagram"
    );
    let incoming: String = (0..60_000)
        .map(|i| char::from(b'A' + (i % 26) as u8))
        .collect();
    chat.send(incoming.as_bytes());
    chat.nudge(alternating);
    let from = format!("[from {}] ", chat.socket_addr());
    assert_eq!(
        message(&chat.app.expect_stdout_line(&from), &from),
        incoming,
        "printed whole, not cut"
    );
}

/// Payloads that are not text: invalid UTF-8 prints lossily, an empty
/// datagram prints as an empty message.
pub fn check_odd_payloads(bin: &str, alternating: bool) {
    let mut chat = SocketPeer::start(bin, crate::LOCALHOST, FAST);
    let from = format!("[from {}] ", chat.socket_addr());
    chat.send(b"caf\xE9 au lait");
    chat.nudge(alternating);
    assert_eq!(
        message(&chat.app.expect_stdout_line(&from), &from),
        "caf\u{FFFD} au lait"
    );
    chat.send(b"");
    chat.nudge(alternating);
    assert_eq!(
        message(&chat.app.expect_stdout_line(&from), &from),
        "",
        "an empty datagram is an empty message"
    );
    chat.app.type_line("quit");
    assert!(chat.app.wait_exit().success());
}

/// A line too long for one datagram is reported (EMSGSIZE) and the chat
/// goes on; so does sending to a peer that is not running.
pub fn check_send_failures(bin: &str) {
    let mut chat = SocketPeer::start(bin, crate::LOCALHOST, FAST);
    chat.app.type_line(&"x".repeat(65_508));
    let error = chat.app.expect_stderr_line("EMSGSIZE");
    assert!(
        error.contains("65,507") && error.contains(&chat.socket_addr().to_string()),
        "{error}"
    );
    chat.app.type_line("still here");
    assert_eq!(
        chat.receive(),
        b"still here",
        "the chat goes on after EMSGSIZE"
    );

    // Nobody listens at the peer's port: the datagram leaves, UDP cannot
    // tell, and the program keeps chatting.
    let dead_peer = free_udp_addr(crate::LOCALHOST);
    let (mut lonely, _) = start_peer(
        "lonely",
        bin,
        SocketAddr::new(crate::LOCALHOST, 0),
        dead_peer,
        FAST,
    );
    for line in ["anyone there?", "hello?"] {
        lonely.expect_stdout(PROMPT);
        lonely.type_line(line);
    }
    lonely.expect_stdout(PROMPT);
    lonely.type_line("quit");
    assert!(lonely.wait_exit().success(), "{}", lonely.describe());
}

/// `quit` and the end of input each end the program with status 0.
pub fn check_quit_and_end_of_input(bin: &str) {
    let mut chat = SocketPeer::start(bin, crate::LOCALHOST, FAST);
    chat.app.type_line("quit");
    assert!(chat.app.wait_exit().success(), "{}", chat.app.describe());
    let mut chat = SocketPeer::start(bin, crate::LOCALHOST, FAST);
    chat.app.close_stdin();
    assert!(chat.app.wait_exit().success(), "{}", chat.app.describe());
}

/// Bad command lines: clap's usage error (status 2) for what cannot be
/// parsed, one `error:` line and status 1 for what the kernel refuses.
pub fn check_bad_input(bin: &str) {
    let usage_error = |args: &[&str], wanted: &str| {
        AssertCommand::new(crate::bin(bin))
            .args(args)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(wanted).and(predicate::str::contains("panicked").not()),
            );
    };
    usage_error(
        &["--bind", "127.0.0.1"],
        "invalid value '127.0.0.1' for '--bind <IP:PORT>'",
    );
    usage_error(
        &["--bind", "localhost:55566"],
        "invalid value 'localhost:55566'",
    );
    usage_error(
        &["--peer", "127.0.0.1:70000"],
        "invalid value '127.0.0.1:70000' for '--peer <IP:PORT>'",
    );
    usage_error(&["--peer", "256.0.0.1:5"], "invalid value '256.0.0.1:5'");
    usage_error(
        &["--recv-timeout-ms", "0"],
        "invalid value '0' for '--recv-timeout-ms <MS>'",
    );
    usage_error(
        &["--bind", "127.0.0.1:0", "--peer", "[::1]:55577"],
        "must both be IPv4 or both IPv6",
    );

    let bind_error = |args: &[&str], as_nobody: bool, wanted: &[&str]| {
        let mut command = command(bin, args);
        if as_nobody {
            command.uid(65534).gid(65534);
        }
        let mut assert = AssertCommand::from_std(command)
            .write_stdin("")
            .assert()
            .code(1);
        for wanted in wanted {
            assert = assert.stderr(predicate::str::contains(*wanted));
        }
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    };
    // The port is taken by another socket.
    let taken = bound_socket(crate::LOCALHOST);
    let taken = taken
        .local_addr()
        .map(|addr| (taken, addr))
        .expect("local address");
    let addr = taken.1.to_string();
    bind_error(
        &["--bind", &addr],
        false,
        &[&format!("cannot bind UDP socket to {addr}"), "EADDRINUSE"],
    );
    // An address that belongs to no interface of this machine (TEST-NET-1,
    // reserved for documentation): bind fails locally, nothing is sent.
    bind_error(
        &["--bind", "192.0.2.1:55566"],
        false,
        &["cannot bind UDP socket to 192.0.2.1:55566", "EADDRNOTAVAIL"],
    );
    // Ports below 1024 need privileges; root has them, so as root the
    // program runs as user nobody. Port 1 is never bound: the permission
    // check comes first.
    let root = nix::unistd::geteuid().is_root();
    bind_error(
        &["--bind", "127.0.0.1:1"],
        root,
        &["cannot bind UDP socket to 127.0.0.1:1", "EACCES"],
    );
}
