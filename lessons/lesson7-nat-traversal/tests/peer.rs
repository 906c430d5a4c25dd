//! The peers on loopback, where no NAT stands between them: the mapping
//! check finds nothing hard, the direct path wins, and the chat works.
//! The birthday punch and the relay need NATs: tests/lab.rs.
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use std::net::SocketAddr;

use common::{PEER, Played, Server, register_and_map, start_peer, start_rendezvous};
use lesson7_nat_traversal::protocol::{Message, Token};
use testkit::Running;

#[test]
fn on_loopback_the_direct_path_wins() {
    let server = start_rendezvous(&[]);
    let second = server.second.port().to_string();
    let extra = ["--second-port", second.as_str()];
    let (mut alice, alice_addr) = start_peer(server.addr, "alice", "bob", &extra);
    alice.expect_stdout_line("waiting for bob");
    let (mut bob, bob_addr) = start_peer(server.addr, "bob", "alice", &extra);
    bob.expect_stdout_line("our role: punch");
    alice.expect_stdout_line(&format!("path: direct {bob_addr} "));
    // MAPPED comes before PEER: the rendezvous introduces only mapped peers.
    let mapped = format!("the second port sees us at {alice_addr}: the same port");
    assert!(alice.stdout().contains(&mapped), "{}", alice.describe());
    bob.expect_stdout_line(&format!("path: direct {alice_addr} "));
    alice.type_line("hello bob");
    bob.expect_stdout_line("[from alice] hello bob");
    bob.type_line("quit");
    alice.expect_stdout_line("bob left the chat");
}

/// alice, a real peer waiting for bob at a real rendezvous, and bob played
/// by a test socket: both introduced, with their session's token.
fn alice_and_a_played_bob() -> (Server, Running, SocketAddr, Played, Token) {
    let server = start_rendezvous(&[]);
    let second = server.second.port().to_string();
    let extra = ["--second-port", second.as_str()];
    let (alice, alice_addr) = start_peer(server.addr, "alice", "bob", &extra);
    alice.expect_stdout_line("waiting for bob");
    let bob = register_and_map(&server, "bob", false);
    bob.connect("alice", &server);
    let (token, _) = bob.receive_peer();
    // A probe that came before alice's introduction would be ignored.
    alice.expect_stdout_line("bob is at public");
    (server, alice, alice_addr, bob, token)
}

/// A probe answered once may lose its answer, and its sender then moves on
/// to its next way. So the peer that answered repeats its answer until the
/// other shows it knows the path; an answer it gets, it answers with a
/// keepalive. Here a test socket plays bob and "loses" the first answer.
#[test]
fn an_answer_is_repeated_until_the_peer_shows_it_knows_the_path() {
    let (_server, mut alice, alice_addr, bob, token) = alice_and_a_played_bob();
    let (from, to) = ("bob".to_owned(), "alice".to_owned());
    bob.speaker
        .send(&Message::Punch { from, to, token }, alice_addr);
    alice.expect_stdout_line("path: direct");
    let answer = Message::PunchAck {
        from: "alice".into(),
        to: "bob".into(),
        token,
    };
    for count in ["first", "second"] {
        let (heard, _) = bob.speaker.receive_skipping_probes();
        assert_eq!(heard, answer, "bob expected alice's {count} answer");
    }
    let (from, to) = ("bob".to_owned(), "alice".to_owned());
    bob.speaker
        .send(&Message::PunchAck { from, to, token }, alice_addr);
    let keepalive = Message::Keepalive {
        from: "alice".into(),
        to: "bob".into(),
        token,
    };
    assert_eq!(bob.speaker.receive_skipping_probes().0, keepalive);
    let after = bob
        .speaker
        .hears_anything_within(Duration::from_millis(600));
    assert_eq!(
        after, None,
        "alice knows bob knows the path: no more answers"
    );
    alice.kill();
}

/// The birthday punch's probes are BIRTHDAY, not PUNCH: the peer that gets
/// one names the way that found it, even while its own direct punch is
/// still running.
#[test]
fn a_birthday_probe_is_named_a_birthday_meeting() {
    let (_server, mut alice, alice_addr, bob, token) = alice_and_a_played_bob();
    let (from, to) = ("bob".to_owned(), "alice".to_owned());
    bob.speaker
        .send(&Message::Birthday { from, to, token }, alice_addr);
    alice.expect_stdout_line(&format!("path: birthday {}", bob.speaker.addr()));
    let (heard, _) = bob.speaker.receive_skipping_probes();
    assert!(matches!(heard, Message::PunchAck { .. }), "{heard:?}");
    alice.kill();
}

#[test]
fn a_bad_port_range_is_a_usage_error() {
    for range in ["0-10", "5000-4000", "1024", "a-b"] {
        testkit::cli::usage_error(
            PEER,
            &["--name", "a", "--peer-name", "b", "--port-range", range],
            "is not LOW-HIGH",
        );
    }
}
