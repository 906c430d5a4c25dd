//! What lesson 7 adds to the rendezvous, over real UDP on loopback, with
//! plain sockets playing the peers: the mapping check on the second port
//! and the roles it gives, and the bad input it ignores. Lesson 6's tests
//! cover what lesson 7 keeps as it was (registration, cookies, expiry).
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Speaker, meet, register_and_map, start_rendezvous};
use lesson7_nat_traversal::protocol::{Cookie, Message, Role};

const QUIET: Duration = Duration::from_millis(300);

#[test]
fn the_second_port_tells_each_peer_its_role() {
    let server = start_rendezvous(&[]);
    let (.., roles) = meet(&server, (false, false));
    assert_eq!(roles, (Role::Punch, Role::Punch), "two easy NATs: punch");

    // A second pair: the same names again need a fresh server.
    let server = start_rendezvous(&[]);
    let (.., roles) = meet(&server, (true, false));
    assert_eq!(
        roles,
        (Role::Spray, Role::Scan),
        "alice hard: she sprays, bob scans"
    );
    server.running.expect_stdout_line("alice's mapping: ");
    let line = server.running.expect_stdout_line("introduced ");
    assert!(line.contains("spray") && line.contains("scan"), "{line}");

    let server = start_rendezvous(&[]);
    let (.., roles) = meet(&server, (true, true));
    assert_eq!(
        roles,
        (Role::Relay, Role::Relay),
        "two hard NATs: the relay"
    );
}

#[test]
fn no_introduction_before_both_mappings_are_known() {
    let server = start_rendezvous(&[]);
    let alice = register_and_map(&server, "alice", false);
    // bob registers but his MAPPING never arrives.
    let bob = Speaker::new();
    let private = bob.addr();
    bob.send(
        &Message::Register {
            name: "bob".into(),
            private,
            cookie: None,
        },
        server.addr,
    );
    let Message::Registered { cookie, .. } = bob.receive().0 else {
        panic!("no REGISTERED");
    };
    alice.connect("bob", &server);
    assert_eq!(
        alice.speaker.receive().0,
        Message::Waiting { peer: "bob".into() }
    );
    bob.send(
        &Message::Connect {
            name: "bob".into(),
            peer: "alice".into(),
            cookie,
        },
        server.addr,
    );
    server
        .running
        .expect_stdout_line("waiting for bob's MAPPING");
    assert_eq!(
        bob.hears_anything_within(QUIET),
        None,
        "no PEER yet, no WAITING either"
    );
    // It comes: the next CONNECT is answered.
    bob.send(
        &Message::Mapping {
            name: "bob".into(),
            cookie,
        },
        server.second,
    );
    assert!(matches!(bob.receive().0, Message::Mapped { .. }));
    bob.send(
        &Message::Connect {
            name: "bob".into(),
            peer: "alice".into(),
            cookie,
        },
        server.addr,
    );
    assert!(matches!(
        bob.receive().0,
        Message::Peer {
            role: Role::Punch,
            ..
        }
    ));
}

#[test]
fn the_second_port_ignores_all_but_a_checked_mapping() {
    let server = start_rendezvous(&[]);
    let alice = register_and_map(&server, "alice", false);
    let mallory = Speaker::new();
    let second = server.second;
    let forged = Message::Mapping {
        name: "alice".into(),
        cookie: Cookie(alice.cookie.0 ^ 1),
    };
    mallory.send(&forged, second);
    server
        .running
        .expect_stderr_line("ignored MAPPING alice from");
    mallory.send(
        &Message::Mapping {
            name: "nobody".into(),
            cookie: Cookie(1),
        },
        second,
    );
    server
        .running
        .expect_stderr_line("ignored MAPPING nobody from");
    let register = Message::Register {
        name: "mallory".into(),
        private: mallory.addr(),
        cookie: None,
    };
    mallory.send(&register, second);
    server.running.expect_stderr_line("only MAPPING goes there");
    mallory.send_bytes(b"MAPPING \xff", second);
    server
        .running
        .expect_stderr_line("on the second port: not UTF-8");
    assert_eq!(
        mallory.hears_anything_within(QUIET),
        None,
        "no answer to any of those"
    );
    // And a MAPPING to the first port is no request.
    alice.speaker.send(
        &Message::Mapping {
            name: "alice".into(),
            cookie: alice.cookie,
        },
        server.addr,
    );
    server
        .running
        .expect_stderr_line("ignored a MAPPING message");
}

#[test]
fn answers_sent_to_the_rendezvous_are_logged_and_ignored() {
    let server = start_rendezvous(&[]);
    let mallory = Speaker::new();
    let answers = [
        Message::Mapped {
            name: "alice".into(),
            public: mallory.addr(),
        },
        Message::Allocated {
            peer: "bob".into(),
            token: lesson7_nat_traversal::protocol::Token(1),
            max: 1200,
        },
    ];
    for answer in answers {
        mallory.send(&answer, server.addr);
        let kind = answer.kind();
        server.running.expect_stderr_line(&format!(
            "ignored a {kind} message from {}: not a request",
            mallory.addr()
        ));
    }
    assert_eq!(mallory.hears_anything_within(QUIET), None);
}
