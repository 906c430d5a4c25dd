//! The peer over real UDP on loopback: two peers meet, punch and chat; and,
//! against a socket that plays the other peer exactly as the test says,
//! probes that must be ignored, keepalives, and the report when no path
//! answers. (Behind real NATs: tests/lab.rs.)
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::{PEER, PROMPT, Speaker, start_peer, start_rendezvous};
use lesson6_udp_hole_punching::protocol::{Cookie, Message, Token};
use nix::sys::signal::Signal;
use predicates::prelude::*;
use testkit::Running;

#[test]
fn two_peers_meet_punch_and_chat_on_loopback() {
    let (_server, rendezvous) = start_rendezvous(&[]);
    let (mut alice, alice_addr) = start_peer(rendezvous, "alice", "bob", &[]);
    alice.expect_stdout_line("waiting for bob to come to the rendezvous");
    let (mut bob, bob_addr) = start_peer(rendezvous, "bob", "alice", &[]);
    // No NAT on loopback: public and private endpoints are the same.
    alice.expect_stdout_line(&format!("bob is at public {bob_addr}, private {bob_addr}"));
    alice.expect_stdout_line(&format!(
        "path: private {bob_addr}: talking to bob directly"
    ));
    bob.expect_stdout_line(&format!("path: private {alice_addr}"));
    alice.expect_stdout(PROMPT);
    bob.expect_stdout(PROMPT);

    alice.type_line("hello bob, any spaces  and MSG words survive");
    bob.expect_stdout_line("[from alice] hello bob, any spaces  and MSG words survive");
    bob.type_line("hi alice");
    alice.expect_stdout_line("[from bob] hi alice");
    // A long line arrives whole, in one datagram.
    let long: String = (0..60_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    bob.type_line(&long);
    let line = alice.expect_stdout_line("[from bob] ");
    assert_eq!(line.split_once("[from bob] ").unwrap().1, long);

    // A line too long for one datagram is reported, not cut, and the chat
    // goes on.
    alice.type_line(&"x".repeat(65_490));
    let error = alice.expect_stderr_line("EMSGSIZE");
    assert!(
        error.contains(
            "at most 65,507 bytes over IPv4; the line has 65490 and the header 21 more; nothing was sent"
        ),
        "{error}"
    );
    alice.type_line("still here");
    bob.expect_stdout_line("[from alice] still here");

    alice.type_line("quit");
    assert!(alice.wait_exit().success(), "{}", alice.describe());
    bob.expect_stdout_line("alice left the chat; bye.");
    assert!(bob.wait_exit().success(), "{}", bob.describe());
}

#[test]
fn two_peers_meet_and_chat_over_ipv6() {
    let (_server, rendezvous) = {
        let server = Running::start(
            "rendezvous",
            testkit::command(common::RENDEZVOUS, &["--bind", "[::1]:0"]),
        );
        let line = server.expect_stdout_line("rendezvous listening on ");
        let addr = testkit::find_socket_addr(&line).unwrap();
        (server, addr)
    };
    let v6 = ["--bind", "[::1]:0"];
    let (alice, _) = start_peer(rendezvous, "alice", "bob", &v6);
    alice.expect_stdout_line("waiting for bob");
    let (mut bob, bob_addr) = start_peer(rendezvous, "bob", "alice", &v6);
    alice.expect_stdout_line(&format!("path: private {bob_addr}"));
    alice.expect_stdout(PROMPT);
    let mut alice = alice;
    alice.type_line("hello over IPv6");
    bob.expect_stdout_line("[from alice] hello over IPv6");
    // An IPv6 datagram holds 20 bytes more than an IPv4 one: 65,527.
    alice.type_line(&"x".repeat(65_507));
    let error = alice.expect_stderr_line("EMSGSIZE");
    assert!(
        error.contains("at most 65,527 bytes over IPv6; the line has 65507 and the header 21 more"),
        "{error}"
    );
    bob.close_stdin();
    assert!(bob.wait_exit().success(), "{}", bob.describe());
    alice.expect_stdout_line("bob left the chat; bye.");
}

/// Ctrl+C in the chat: the peer says BYE and exits 0; the other peer
/// prints that it left. (SIGINT is blocked and read from a signalfd.)
#[test]
fn ctrl_c_says_bye_and_the_other_peer_prints_that_it_left() {
    let (_server, rendezvous) = start_rendezvous(&[]);
    let (mut alice, _) = start_peer(rendezvous, "alice", "bob", &[]);
    alice.expect_stdout_line("waiting for bob");
    let (mut bob, _) = start_peer(rendezvous, "bob", "alice", &[]);
    alice.expect_stdout(PROMPT);
    bob.expect_stdout(PROMPT);
    alice.type_line("about to press Ctrl+C");
    bob.expect_stdout_line("[from alice] about to press Ctrl+C");
    let started = Instant::now();
    alice.signal(Signal::SIGINT);
    alice.expect_stdout_line("caught SIGINT, quitting...");
    let status = alice.wait_exit_within(Duration::from_secs(2));
    assert!(status.success(), "{}", alice.describe());
    bob.expect_stdout_line("alice left the chat; bye.");
    assert!(bob.wait_exit().success(), "{}", bob.describe());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// SIGTERM before the chat (here while waiting at the rendezvous) ends the
/// peer at once, with status 0: there is no peer to say BYE to yet.
#[test]
fn sigterm_while_waiting_ends_the_peer_at_once() {
    let (_server, rendezvous) = start_rendezvous(&[]);
    let (mut alice, _) = waiting_alice(rendezvous, &[]);
    alice.signal(Signal::SIGTERM);
    alice.expect_stdout_line("caught SIGTERM, quitting...");
    let status = alice.wait_exit_within(Duration::from_secs(2));
    assert!(status.success(), "{}", alice.describe());
}

/// poll may report a datagram that recvfrom then does not find (select(2),
/// BUGS): the peer's socket is non-blocking, so that is EAGAIN, never a
/// hang that would also stop its probes and timers.
#[test]
fn the_peers_socket_is_non_blocking() {
    let (_server, rendezvous) = start_rendezvous(&[]);
    let (alice, _) = waiting_alice(rendezvous, &[]);
    common::assert_sockets_non_blocking(&alice, 1);
}

/// A test socket plays bob: registered at the rendezvous, it controls
/// exactly what alice's probes meet.
struct FakeBob {
    socket: Speaker,
    token: Token,
}

impl FakeBob {
    /// Registers bob with `private` as his private endpoint and asks for
    /// alice, who must be waiting already; returns bob and the token.
    fn meet(rendezvous: SocketAddr, private: SocketAddr) -> FakeBob {
        let socket = Speaker::new();
        socket.send(
            &Message::Register {
                name: "bob".into(),
                private,
                cookie: None,
            },
            rendezvous,
        );
        let Message::Registered { cookie, .. } = socket.receive().0 else {
            panic!("bob was not registered");
        };
        socket.send(
            &Message::Connect {
                name: "bob".into(),
                peer: "alice".into(),
                cookie,
            },
            rendezvous,
        );
        let Message::Peer { token, .. } = socket.receive().0 else {
            panic!("bob was not introduced");
        };
        FakeBob { socket, token }
    }

    fn punch(&self, from: &str, token: Token) -> Message {
        Message::Punch {
            from: from.into(),
            to: "alice".into(),
            token,
        }
    }
}

fn waiting_alice(rendezvous: SocketAddr, extra: &[&str]) -> (Running, SocketAddr) {
    let (alice, addr) = start_peer(rendezvous, "alice", "bob", extra);
    alice.expect_stdout_line("waiting for bob");
    (alice, addr)
}

/// Both homes may use the same addresses, so the peer's private endpoint
/// can be one's own, or another address of this host; and anyone may send
/// a probe. Only the peer's probe, with the session's token, opens the chat.
#[test]
fn ignores_its_own_probe_and_a_strangers_probe() {
    let (_server, rendezvous) = start_rendezvous(&[]);
    // Bound to every address: alice's socket also receives what is sent
    // to 127.0.0.2, which bob reports as his private endpoint.
    let (alice, alice_addr) = waiting_alice(rendezvous, &["--bind", "0.0.0.0:0"]);
    let alice_addr = SocketAddr::new(testkit::LOCALHOST, alice_addr.port());
    let bob = FakeBob::meet(
        rendezvous,
        SocketAddr::new([127, 0, 0, 2].into(), alice_addr.port()),
    );
    // Sent to 127.0.0.2, it comes back from 127.0.0.1: the kernel picks
    // the source address; the name and token in it say whose it is.
    alice.expect_stdout_line(&format!(
        "ignored our own probe, back from {alice_addr}: bob's private endpoint is an address of this host"
    ));
    // alice's probes reach bob's public endpoint, named and with the token.
    let (probe, from) = bob.socket.receive();
    assert_eq!(from, alice_addr);
    assert_eq!(
        probe,
        Message::Punch {
            from: "alice".into(),
            to: "bob".into(),
            token: bob.token
        }
    );
    // A stranger with a wrong token, and one claiming to be bob.
    let stranger = Speaker::new();
    stranger.send(&bob.punch("mallory", bob.token), alice_addr);
    alice.expect_stderr_line(&format!(
        "ignored a PUNCH from {}: not from bob in this session",
        stranger.addr()
    ));
    stranger.send(&bob.punch("bob", Token(bob.token.0 ^ 1)), alice_addr);
    alice.expect_stderr_line("ignored a PUNCH");
    stranger.send_bytes(b"\x00\x01garbage", alice_addr);
    alice.expect_stderr_line("ignored a 9-byte datagram");
    assert!(!alice.stdout().contains("path:"), "{}", alice.describe());

    // bob's own probe: alice answers it and the public path wins.
    bob.socket.send(&bob.punch("bob", bob.token), alice_addr);
    alice.expect_stdout_line(&format!("path: public {}", bob.socket.addr()));
    let (ack, _) = bob.socket.receive_skipping_probes();
    assert_eq!(
        ack,
        Message::PunchAck {
            from: "alice".into(),
            to: "bob".into(),
            token: bob.token
        }
    );
    chat_drops_a_strangers_message(&alice, alice_addr, &bob, &stranger);
}

/// In the chat, a stranger's message is dropped with a warning, even with
/// the token; bob's arrives.
fn chat_drops_a_strangers_message(
    alice: &Running,
    alice_addr: SocketAddr,
    bob: &FakeBob,
    stranger: &Speaker,
) {
    alice.expect_stdout(PROMPT);
    stranger.send(
        &Message::Chat {
            token: bob.token,
            text: b"let me in".to_vec(),
        },
        alice_addr,
    );
    alice.expect_stderr_line(&format!(
        "dropped a 30-byte datagram from {}",
        stranger.addr()
    ));
    bob.socket.send(
        &Message::Chat {
            token: bob.token,
            text: b"caf\xE9".to_vec(),
        },
        alice_addr,
    );
    alice.expect_stdout_line("[from bob] caf\u{FFFD}");
    assert!(!alice.stdout().contains("let me in"));
}

/// A private endpoint equal to our own is not probed: it is ourselves.
#[test]
fn does_not_probe_a_private_endpoint_equal_to_its_own() {
    let (_server, rendezvous) = start_rendezvous(&[]);
    let (alice, alice_addr) = waiting_alice(rendezvous, &[]);
    let bob = FakeBob::meet(rendezvous, alice_addr);
    alice.expect_stdout_line(&format!(
        "probing bob at {} (public); its private endpoint {alice_addr} is our own",
        bob.socket.addr()
    ));
    bob.socket.receive();
    bob.socket.send(&bob.punch("bob", bob.token), alice_addr);
    alice.expect_stdout_line("path: public");
    assert!(
        !alice.stdout().contains("our own probe"),
        "{}",
        alice.describe()
    );
}

#[test]
fn sends_keepalives_only_when_asked_and_idle() {
    for (keepalive, expected) in [("150", true), ("0", false)] {
        let (_server, rendezvous) = start_rendezvous(&[]);
        let (alice, alice_addr) = waiting_alice(rendezvous, &["--keepalive-ms", keepalive]);
        let bob = FakeBob::meet(rendezvous, "127.0.0.1:9".parse().unwrap());
        // Once alice probes, she is punching and will answer bob's probe.
        assert!(matches!(bob.socket.receive().0, Message::Punch { .. }));
        bob.socket.send(&bob.punch("bob", bob.token), alice_addr);
        alice.expect_stdout_line("path: public");
        let (ack, _) = bob.socket.receive_skipping_probes();
        assert!(matches!(ack, Message::PunchAck { .. }));
        let heard = bob.socket.hears_anything_within(Duration::from_millis(600));
        if expected {
            assert_eq!(
                heard,
                Some(Message::Keepalive {
                    from: "alice".into(),
                    to: "bob".into(),
                    token: bob.token
                }),
                "--keepalive-ms {keepalive}"
            );
        } else {
            assert_eq!(heard, None, "--keepalive-ms 0 sends nothing");
        }
    }
}

/// Nobody answers the probes (on loopback: bob is a socket that stays
/// silent). The peer gives up within its bound and says why.
#[test]
fn reports_a_likely_symmetric_nat_when_no_path_answers() {
    let (_server, rendezvous) = start_rendezvous(&[]);
    let (mut alice, _) = waiting_alice(rendezvous, &["--punch-timeout-ms", "600"]);
    let started = Instant::now();
    let _bob = FakeBob::meet(rendezvous, "127.0.0.1:9".parse().unwrap());
    let status = alice.wait_exit();
    let took = started.elapsed();
    assert_eq!(status.code(), Some(1), "{}", alice.describe());
    assert!(took < Duration::from_secs(3), "gave up after {took:?}");
    let stderr = alice.stderr();
    assert!(
        stderr.contains("error: no answer from bob within 600 ms")
            && stderr.contains("symmetric NAT")
            && stderr.contains("relay"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A waiting peer registers again every second: a rendezvous that
/// restarts (and forgot everyone) learns about it again.
#[test]
fn a_waiting_peer_registers_again_with_a_restarted_rendezvous() {
    let (mut server, rendezvous) = start_rendezvous(&[]);
    let (mut alice, _) = waiting_alice(rendezvous, &[]);
    server.kill();
    let bind = rendezvous.to_string();
    let server = Running::start(
        "rendezvous again",
        testkit::command(common::RENDEZVOUS, &["--bind", &bind]),
    );
    server.expect_stdout_line("registered alice");
    let (mut bob, _) = start_peer(rendezvous, "bob", "alice", &[]);
    alice.expect_stdout_line("path: private");
    bob.expect_stdout_line("path: private");
    alice.close_stdin();
    assert!(alice.wait_exit().success(), "{}", alice.describe());
    bob.expect_stdout_line("alice left the chat");
    assert!(bob.wait_exit().success(), "{}", bob.describe());
}

/// The rendezvous writes the introduction to a waiting peer once, and UDP
/// may lose it. Here a test socket plays the rendezvous and "loses" it:
/// alice asks again within two seconds, and its answer introduces bob.
#[test]
fn a_waiting_peer_asks_again_every_second_and_gets_a_lost_introduction() {
    let fake = Speaker::new();
    let (mut alice, alice_addr) = start_peer(fake.addr(), "alice", "bob", &[]);
    let cookie = Cookie(42);
    let answer = |request: &Message| match request {
        Message::Register { .. } => Message::Registered {
            name: "alice".into(),
            public: alice_addr,
            cookie,
        },
        Message::Connect { .. } => Message::Waiting { peer: "bob".into() },
        other => panic!("alice sent {other:?}: expected REGISTER or CONNECT"),
    };
    for _ in 0..2 {
        let (request, from) = fake.receive();
        fake.send(&answer(&request), from);
    }
    alice.expect_stdout_line("waiting for bob");
    let waiting = Instant::now();
    let (request, from) = fake.receive();
    let asked_after = waiting.elapsed();
    assert!(
        matches!(request, Message::Register { cookie: Some(c), .. } if c == cookie)
            && asked_after < Duration::from_secs(2),
        "after WAITING (and a lost PEER), expected REGISTER with the cookie within 2 s; got {request:?} after {asked_after:?}"
    );
    fake.send(&answer(&request), from);
    let (request, from) = fake.receive();
    assert!(matches!(request, Message::Connect { .. }), "{request:?}");
    let bob = Speaker::new();
    let peer = Message::Peer {
        peer: "bob".into(),
        public: bob.addr(),
        private: bob.addr(),
        token: Token(7),
    };
    fake.send(&peer, from);
    alice.expect_stdout_line(&format!("bob is at public {}", bob.addr()));
    alice.kill();
}

#[test]
fn a_second_peer_with_a_taken_name_is_refused() {
    let (_server, rendezvous) = start_rendezvous(&[]);
    let (_alice, _) = waiting_alice(rendezvous, &[]);
    let (mut impostor, _) = start_peer(rendezvous, "alice", "carol", &[]);
    assert_eq!(
        impostor.wait_exit().code(),
        Some(1),
        "{}",
        impostor.describe()
    );
    assert_eq!(
        impostor.stderr(),
        "error: the rendezvous refused: the name alice is taken\n"
    );
}

#[test]
fn says_when_the_rendezvous_does_not_answer() {
    let silent = Speaker::new();
    let rendezvous = silent.addr().to_string();
    Command::new(testkit::bin(PEER))
        .args(["--bind", "127.0.0.1:0", "--rendezvous", &rendezvous])
        .args(["--name", "alice", "--peer-name", "bob", "--wait-ms", "300"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "error: no answer from the rendezvous at {rendezvous}"
        )));
}

#[test]
fn bad_command_lines_get_one_line_errors() {
    let usage_error = |args: &[&str], wanted: &str| {
        Command::new(testkit::bin(PEER))
            .args(args)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(wanted).and(predicate::str::contains("panicked").not()),
            );
    };
    usage_error(&["--name", "alice"], "--peer-name <NAME>");
    usage_error(
        &["--name", "al ice", "--peer-name", "bob"],
        "' ' is not allowed in a name",
    );
    usage_error(
        &["--name", &"x".repeat(33), "--peer-name", "bob"],
        "a name has 1 to 32 characters",
    );
    usage_error(
        &[
            "--name",
            "a",
            "--peer-name",
            "b",
            "--rendezvous",
            "localhost:1",
        ],
        "invalid value 'localhost:1'",
    );
    let runtime_error = |args: &[&str], wanted: &str| {
        let output = Command::new(testkit::bin(PEER))
            .args(args)
            .write_stdin("")
            .assert()
            .code(1)
            .stderr(predicate::str::contains(wanted))
            .get_output()
            .clone();
        assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);
    };
    runtime_error(
        &["--name", "alice", "--peer-name", "alice"],
        "a peer cannot chat with itself",
    );
    runtime_error(
        &[
            "--name",
            "a",
            "--peer-name",
            "b",
            "--rendezvous",
            "[::1]:55500",
        ],
        "must both be IPv4 or both IPv6",
    );
    let taken = Speaker::new();
    let addr = taken.addr().to_string();
    runtime_error(
        &["--name", "a", "--peer-name", "b", "--bind", &addr],
        &format!("cannot bind UDP socket to {addr}: EADDRINUSE"),
    );
}
