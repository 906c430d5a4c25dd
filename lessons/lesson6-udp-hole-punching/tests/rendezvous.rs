//! The rendezvous server over real UDP on loopback, driven by plain
//! sockets that play the peers: registration, introduction, garbage,
//! forgery, expiry, and a hundred peers at once.
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{Speaker, start_rendezvous};
use lesson6_udp_hole_punching::protocol::{Message, Token};

fn register(speaker: &Speaker, name: &str, private: &str, server: SocketAddr) {
    speaker.send(
        &Message::Register {
            name: name.into(),
            private: private.parse().unwrap(),
        },
        server,
    );
    assert_eq!(
        speaker.receive(),
        (
            Message::Registered {
                name: name.into(),
                public: speaker.addr()
            },
            server
        ),
        "the rendezvous answers with the address it saw"
    );
}

fn connect(speaker: &Speaker, name: &str, peer: &str, server: SocketAddr) {
    speaker.send(
        &Message::Connect {
            name: name.into(),
            peer: peer.into(),
        },
        server,
    );
}

/// The PEER message `speaker` receives: (peer, public, private, token).
fn receive_peer(speaker: &Speaker) -> (String, SocketAddr, SocketAddr, Token) {
    match speaker.receive().0 {
        Message::Peer {
            peer,
            public,
            private,
            token,
        } => (peer, public, private, token),
        other => panic!("{}: expected PEER, got {other:?}", speaker.addr()),
    }
}

#[test]
fn introduces_two_peers_that_ask_for_each_other() {
    let (server, addr) = start_rendezvous(&[]);
    let (alice, bob) = (Speaker::new(), Speaker::new());
    register(&alice, "alice", "192.168.1.2:55501", addr);
    connect(&alice, "alice", "bob", addr);
    assert_eq!(alice.receive().0, Message::Waiting { peer: "bob".into() });
    server.expect_stdout_line("alice asks for bob: waiting");

    register(&bob, "bob", "192.168.1.3:55501", addr);
    connect(&bob, "bob", "alice", addr);
    let (name, public, private, token_a) = receive_peer(&alice);
    assert_eq!(
        (name.as_str(), public, private.to_string().as_str()),
        ("bob", bob.addr(), "192.168.1.3:55501"),
        "alice learns bob's public endpoint as seen and his private one as reported"
    );
    let (name, public, private, token_b) = receive_peer(&bob);
    assert_eq!(
        (name.as_str(), public, private.to_string().as_str()),
        ("alice", alice.addr(), "192.168.1.2:55501")
    );
    assert_eq!(token_a, token_b, "both get the same session token");
    server.expect_stdout_line("introduced bob");

    // A repeated CONNECT (its answer was lost) gets the same token again.
    connect(&alice, "alice", "bob", addr);
    assert_eq!(receive_peer(&alice).3, token_a);
    assert_eq!(receive_peer(&bob).3, token_a);
}

#[test]
fn logs_and_ignores_garbage_oversized_and_forged_datagrams() {
    let (server, addr) = start_rendezvous(&[]);
    let (alice, mallory) = (Speaker::new(), Speaker::new());
    register(&alice, "alice", "192.168.1.2:55501", addr);

    mallory.send_bytes(b"HELLO?", addr);
    server.expect_stderr_line("unknown message kind \"HELLO?\"");
    mallory.send_bytes(b"REGISTER m\xffllory 10.0.0.1:5", addr);
    server.expect_stderr_line("not UTF-8 text");
    mallory.send_bytes(b"", addr);
    server.expect_stderr_line("ignored a 0-byte datagram");
    mallory.send_bytes(&[b'A'; 60_000], addr);
    let line = server.expect_stderr_line("ignored a 60000-byte datagram");
    assert!(
        line.contains("longer than any request (512 bytes)"),
        "{line}"
    );
    // Messages that are not requests.
    mallory.send(
        &Message::Punch {
            from: "mallory".into(),
            to: "alice".into(),
            token: Token(1),
        },
        addr,
    );
    server.expect_stderr_line("ignored a PUNCH message");
    // Forged: a CONNECT in alice's name from another address.
    connect(&mallory, "alice", "mallory", addr);
    let line = server.expect_stderr_line("forged");
    assert!(
        line.contains(&format!("from {}", mallory.addr()))
            && line.contains(&format!("alice is registered from {}", alice.addr())),
        "{line}"
    );
    // A CONNECT for a name nobody registered.
    connect(&mallory, "nobody", "alice", addr);
    server.expect_stderr_line("nobody is not registered");
    assert_eq!(
        mallory.hears_anything_within(std::time::Duration::from_millis(200)),
        None,
        "ignored datagrams get no answer"
    );

    // Still serving, and alice's wishes are her own.
    connect(&alice, "alice", "bob", addr);
    assert_eq!(alice.receive().0, Message::Waiting { peer: "bob".into() });
    assert!(!server.stdout().contains("alice asks for mallory"));
}

#[test]
fn a_taken_name_is_refused_until_its_registration_expires() {
    let (server, addr) = start_rendezvous(&["--expire-ms", "400"]);
    let (first, second) = (Speaker::new(), Speaker::new());
    register(&first, "alice", "192.168.1.2:55501", addr);
    second.send(
        &Message::Register {
            name: "alice".into(),
            private: "192.168.1.9:55501".parse().unwrap(),
        },
        addr,
    );
    assert_eq!(
        second.receive().0,
        Message::Error {
            reason: "the name alice is taken".into()
        }
    );
    server.expect_stderr_line(&format!("refused REGISTER alice from {}", second.addr()));
    // Nobody refreshes it: the server forgets it, even while idle.
    server.expect_stdout_line("alice expired: no request from it for 400 ms");
    register(&second, "alice", "192.168.1.9:55501", addr);
}

/// Expiry forgets a wish too: a peer that left cannot be introduced.
#[test]
fn an_expired_peer_is_not_introduced() {
    let (server, addr) = start_rendezvous(&["--expire-ms", "300"]);
    let (alice, bob) = (Speaker::new(), Speaker::new());
    register(&alice, "alice", "192.168.1.2:55501", addr);
    connect(&alice, "alice", "bob", addr);
    assert_eq!(alice.receive().0, Message::Waiting { peer: "bob".into() });
    server.expect_stdout_line("alice expired");
    register(&bob, "bob", "192.168.1.3:55501", addr);
    connect(&bob, "bob", "alice", addr);
    assert_eq!(
        bob.receive().0,
        Message::Waiting {
            peer: "alice".into()
        }
    );
}

#[test]
fn serves_a_hundred_registered_peers_at_once() {
    let (server, addr) = start_rendezvous(&[]);
    let peers: Vec<Speaker> = (0..100).map(|_| Speaker::new()).collect();
    for (i, peer) in peers.iter().enumerate() {
        register(peer, &format!("peer{i}"), &format!("10.0.{i}.2:4000"), addr);
    }
    // Every one of the hundred is still known: each pair is introduced.
    for pair in 0..50 {
        let (a, b) = (2 * pair, 2 * pair + 1);
        connect(&peers[a], &format!("peer{a}"), &format!("peer{b}"), addr);
        assert!(matches!(peers[a].receive().0, Message::Waiting { .. }));
        connect(&peers[b], &format!("peer{b}"), &format!("peer{a}"), addr);
        for (me, other) in [(a, b), (b, a)] {
            let (name, public, private, _) = receive_peer(&peers[me]);
            assert_eq!(name, format!("peer{other}"));
            assert_eq!(public, peers[other].addr());
            assert_eq!(private.to_string(), format!("10.0.{other}.2:4000"));
        }
    }
    assert_eq!(server.stdout().matches("registered peer").count(), 100);
    assert!(server.stderr().is_empty(), "{}", server.describe());
}

#[test]
fn bad_command_lines_get_one_line_errors() {
    use assert_cmd::Command;
    use predicates::prelude::*;
    Command::new(testkit::bin(common::RENDEZVOUS))
        .args(["--bind", "127.0.0.1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value '127.0.0.1'"));
    Command::new(testkit::bin(common::RENDEZVOUS))
        .args(["--expire-ms", "0"])
        .assert()
        .code(2);
    let taken = Speaker::new();
    let addr = taken.addr().to_string();
    let output = Command::new(testkit::bin(common::RENDEZVOUS))
        .args(["--bind", &addr])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "cannot bind UDP socket to {addr}: EADDRINUSE"
        )))
        .get_output()
        .clone();
    assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);
}
