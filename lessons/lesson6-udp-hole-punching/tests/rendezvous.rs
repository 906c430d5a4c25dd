//! The rendezvous server over real UDP on loopback, driven by plain
//! sockets that play the peers: registration, introduction, garbage,
//! forgery (requests without their cookie), expiry, and a hundred peers at
//! once.
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{Speaker, start_rendezvous};
use lesson6_udp_hole_punching::protocol::{Cookie, Message, Token};

/// REGISTER (first, without a cookie, or a refresh with one); returns the
/// cookie of the REGISTERED answer.
fn register_with(
    speaker: &Speaker,
    name: &str,
    private: &str,
    cookie: Option<Cookie>,
    server: SocketAddr,
) -> Cookie {
    speaker.send(
        &Message::Register {
            name: name.into(),
            private: private.parse().unwrap(),
            cookie,
        },
        server,
    );
    match speaker.receive() {
        (
            Message::Registered {
                name: answered,
                public,
                cookie,
            },
            from,
        ) => {
            assert_eq!(
                (answered.as_str(), public, from),
                (name, speaker.addr(), server)
            );
            cookie
        }
        other => panic!("{}: expected REGISTERED, got {other:?}", speaker.addr()),
    }
}

/// A first REGISTER: the rendezvous answers with the address it saw.
fn register(speaker: &Speaker, name: &str, private: &str, server: SocketAddr) -> Cookie {
    register_with(speaker, name, private, None, server)
}

fn connect(speaker: &Speaker, name: &str, peer: &str, cookie: Cookie, server: SocketAddr) {
    speaker.send(
        &Message::Connect {
            name: name.into(),
            peer: peer.into(),
            cookie,
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
    let alice_cookie = register(&alice, "alice", "192.168.1.2:55501", addr);
    connect(&alice, "alice", "bob", alice_cookie, addr);
    assert_eq!(alice.receive().0, Message::Waiting { peer: "bob".into() });
    server.expect_stdout_line("alice asks for bob: waiting");

    let bob_cookie = register(&bob, "bob", "192.168.1.3:55501", addr);
    assert_ne!(alice_cookie, bob_cookie, "each registration has its own");
    connect(&bob, "bob", "alice", bob_cookie, addr);
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
    connect(&alice, "alice", "bob", alice_cookie, addr);
    assert_eq!(receive_peer(&alice).3, token_a);
    assert_eq!(receive_peer(&bob).3, token_a);
}

#[test]
fn logs_and_ignores_garbage_oversized_and_forged_datagrams() {
    let (server, addr) = start_rendezvous(&[]);
    let (alice, mallory) = (Speaker::new(), Speaker::new());
    let cookie = register(&alice, "alice", "192.168.1.2:55501", addr);

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
    // Forged: a CONNECT in alice's name from another address, even with
    // her cookie.
    connect(&mallory, "alice", "mallory", cookie, addr);
    server.expect_stderr_line(&format!(
        "ignored CONNECT alice mallory from {}: alice is registered from {}",
        mallory.addr(),
        alice.addr()
    ));
    // A CONNECT for a name nobody registered.
    connect(&mallory, "nobody", "alice", Cookie(1), addr);
    server.expect_stderr_line("nobody is not registered");
    assert_eq!(
        mallory.hears_anything_within(std::time::Duration::from_millis(200)),
        None,
        "ignored datagrams get no answer"
    );

    // Still serving, and alice's wishes are her own.
    connect(&alice, "alice", "bob", cookie, addr);
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
            cookie: None,
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

/// A forger can send from alice's own address (tests/forgery.rs does it
/// through real NATs with a raw socket); here alice's own socket plays
/// it. Without her cookie, or with a wrong one, nothing changes.
#[test]
fn requests_without_their_cookie_change_nothing_even_from_the_right_address() {
    let (server, addr) = start_rendezvous(&[]);
    let (alice, bob) = (Speaker::new(), Speaker::new());
    let cookie = register(&alice, "alice", "192.168.1.2:55501", addr);
    let wrong = Cookie(cookie.0 ^ 1);
    println!(
        "sent, from alice's address: CONNECT alice bob with a wrong cookie; expected it logged and ignored"
    );
    connect(&alice, "alice", "bob", wrong, addr);
    server.expect_stderr_line(&format!(
        "ignored CONNECT alice bob from {}: wrong cookie for alice",
        alice.addr()
    ));
    assert_eq!(
        alice.hears_anything_within(std::time::Duration::from_millis(200)),
        None,
        "ignored requests get no answer"
    );
    println!(
        "sent, from alice's address: REGISTER alice 10.6.6.6:6666 without a cookie; expected her own REGISTERED again, and nothing changed"
    );
    let again = register(&alice, "alice", "10.6.6.6:6666", addr);
    assert_eq!(
        again, cookie,
        "the answer goes to alice's endpoint, which has the cookie"
    );
    server.expect_stderr_line(&format!(
        "answered REGISTER alice 10.6.6.6:6666 from {} again: no cookie, so nothing changed",
        alice.addr()
    ));
    // alice did not ask for bob, and her private endpoint is unchanged.
    let bob_cookie = register(&bob, "bob", "192.168.1.3:55501", addr);
    connect(&bob, "bob", "alice", bob_cookie, addr);
    assert!(matches!(bob.receive().0, Message::Waiting { .. }));
    connect(&alice, "alice", "bob", cookie, addr);
    let (_, _, private, _) = receive_peer(&bob);
    assert_eq!(private.to_string(), "192.168.1.2:55501");
}

/// UDP may lose REGISTERED: the peer, which has no cookie yet, sends the
/// same REGISTER again, and gets the same answer.
#[test]
fn a_register_repeated_without_its_cookie_gets_the_same_cookie() {
    let (server, addr) = start_rendezvous(&[]);
    let alice = Speaker::new();
    let cookie = register(&alice, "alice", "192.168.1.2:55501", addr);
    let again = register(&alice, "alice", "192.168.1.2:55501", addr);
    assert_eq!(
        again, cookie,
        "REGISTER alice again without a cookie (as if REGISTERED was lost): expected REGISTERED with the same cookie"
    );
    server.expect_stderr_line(&format!(
        "answered REGISTER alice 192.168.1.2:55501 from {} again: no cookie, so nothing changed",
        alice.addr()
    ));
}

/// A refresh with the cookie keeps the cookie and may change the private
/// endpoint (the peer's address changed).
#[test]
fn a_refresh_with_the_cookie_keeps_the_registration() {
    let (server, addr) = start_rendezvous(&[]);
    let alice = Speaker::new();
    let cookie = register(&alice, "alice", "192.168.1.2:55501", addr);
    let again = register_with(&alice, "alice", "192.168.1.7:55501", Some(cookie), addr);
    assert_eq!(
        again, cookie,
        "REGISTER alice again with her cookie: expected REGISTERED with the same cookie"
    );
    // The log line is written before the answer is sent, but reaches the
    // test through another pipe: wait for it before counting.
    server.expect_stdout_line("registered alice");
    assert_eq!(
        server.stdout().matches("registered alice").count(),
        1,
        "a refresh with the cookie is not a new registration\n{}",
        server.describe()
    );
    let bob = Speaker::new();
    let bob_cookie = register(&bob, "bob", "192.168.1.3:55501", addr);
    connect(&bob, "bob", "alice", bob_cookie, addr);
    bob.receive();
    connect(&alice, "alice", "bob", cookie, addr);
    assert_eq!(receive_peer(&bob).2.to_string(), "192.168.1.7:55501");
    // A stale cookie for a name the server does not know (it restarted,
    // or the name expired) is no secret to check: a new registration.
    let carol = Speaker::new();
    let fresh = register_with(&carol, "carol", "192.168.1.8:1", Some(Cookie(7)), addr);
    assert_ne!(fresh, Cookie(7));
}

/// Expiry forgets a wish too: a peer that left cannot be introduced.
#[test]
fn an_expired_peer_is_not_introduced() {
    let (server, addr) = start_rendezvous(&["--expire-ms", "300"]);
    let (alice, bob) = (Speaker::new(), Speaker::new());
    let cookie = register(&alice, "alice", "192.168.1.2:55501", addr);
    connect(&alice, "alice", "bob", cookie, addr);
    assert_eq!(alice.receive().0, Message::Waiting { peer: "bob".into() });
    server.expect_stdout_line("alice expired");
    let cookie = register(&bob, "bob", "192.168.1.3:55501", addr);
    connect(&bob, "bob", "alice", cookie, addr);
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
    let cookies: Vec<Cookie> = peers
        .iter()
        .enumerate()
        .map(|(i, peer)| register(peer, &format!("peer{i}"), &format!("10.0.{i}.2:4000"), addr))
        .collect();
    // Every one of the hundred is still known: each pair is introduced.
    for pair in 0..50 {
        let (a, b) = (2 * pair, 2 * pair + 1);
        connect(
            &peers[a],
            &format!("peer{a}"),
            &format!("peer{b}"),
            cookies[a],
            addr,
        );
        assert!(matches!(peers[a].receive().0, Message::Waiting { .. }));
        connect(
            &peers[b],
            &format!("peer{b}"),
            &format!("peer{a}"),
            cookies[b],
            addr,
        );
        for (me, other) in [(a, b), (b, a)] {
            let (name, public, private, _) = receive_peer(&peers[me]);
            assert_eq!(name, format!("peer{other}"));
            assert_eq!(public, peers[other].addr());
            assert_eq!(private.to_string(), format!("10.0.{other}.2:4000"));
        }
    }
    // The last log line, before counting: the log reaches the test
    // through another pipe than the answers.
    server.expect_stdout_line("introduced peer99 ");
    assert_eq!(
        server.stdout().matches("registered peer").count(),
        100,
        "registered 100 peers under 100 names: expected 100 \"registered\" lines\n{}",
        server.describe()
    );
    assert!(server.stderr().is_empty(), "{}", server.describe());
}

/// poll may report a datagram that recvfrom then does not find (select(2),
/// BUGS): the socket is non-blocking, so that is EAGAIN, never a hang.
#[test]
fn the_socket_is_non_blocking() {
    let (server, addr) = start_rendezvous(&[]);
    common::assert_sockets_non_blocking(&server, 1);
    // And it still serves.
    register(&Speaker::new(), "alice", "192.168.1.2:55501", addr);
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
