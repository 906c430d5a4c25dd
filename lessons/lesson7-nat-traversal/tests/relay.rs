//! The relay in the rendezvous, over real UDP on loopback, with plain
//! sockets playing the peers and strangers: it forwards only between the
//! two peers of one pair, both of which asked; it caps the size and rate of
//! what it forwards; it forgets a pair that went idle.
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Speaker, meet, relayed, start_rendezvous};
use lesson7_nat_traversal::protocol::{Cookie, Message, Token};

const QUIET: Duration = Duration::from_millis(300);

fn chat(token: Token, text: &str) -> Message {
    Message::Chat {
        token,
        text: text.into(),
    }
}

#[test]
fn the_relay_forwards_a_pairs_messages_as_they_are() {
    let server = start_rendezvous(&[]);
    let (alice, bob, token) = relayed(&server);
    server.running.expect_stdout_line("relaying alice");
    alice
        .speaker
        .send(&chat(token, "hello through the relay"), server.addr);
    let (got, from) = bob.speaker.receive();
    assert_eq!(
        (got, from),
        (chat(token, "hello through the relay"), server.addr)
    );
    bob.speaker.send(
        &Message::Keepalive {
            from: "bob".into(),
            to: "alice".into(),
            token,
        },
        server.addr,
    );
    assert!(matches!(
        alice.speaker.receive().0,
        Message::Keepalive { .. }
    ));
}

#[test]
fn a_strangers_datagram_is_not_forwarded() {
    let server = start_rendezvous(&[]);
    let (alice, bob, token) = relayed(&server);
    let mallory = Speaker::new();
    // The pair's token, from an endpoint the relay did not see ask.
    mallory.send(&chat(token, "spoofed"), server.addr);
    server
        .running
        .expect_stderr_line("not from an endpoint of the pair with that token");
    // Another token.
    alice
        .speaker
        .send(&chat(Token(token.0 ^ 1), "wrong token"), server.addr);
    server
        .running
        .expect_stderr_line("no relayed pair has that token");
    assert_eq!(bob.speaker.hears_anything_within(QUIET), None);
    assert_eq!(
        mallory.hears_anything_within(QUIET),
        None,
        "nothing sent to a stranger"
    );
    // An ALLOCATE in alice's name from the stranger, with a guessed cookie.
    let forged = Message::Allocate {
        name: "alice".into(),
        peer: "bob".into(),
        token,
        cookie: Cookie(1),
    };
    mallory.send(&forged, server.addr);
    server
        .running
        .expect_stderr_line("ignored ALLOCATE alice bob from");
    assert_eq!(mallory.hears_anything_within(QUIET), None);
}

#[test]
fn nothing_is_forwarded_to_a_peer_that_did_not_ask() {
    let server = start_rendezvous(&[]);
    let (alice, bob, token, _) = meet(&server, (false, false));
    alice.allocate("bob", token, &server);
    assert_eq!(
        alice.speaker.receive().0,
        Message::Waiting { peer: "bob".into() }
    );
    alice.speaker.send(&chat(token, "too early"), server.addr);
    server
        .running
        .expect_stderr_line("both peers must ask for the relay first");
    assert_eq!(bob.speaker.hears_anything_within(QUIET), None);
    // A token that is not the pair's gets no allocation.
    alice.allocate("bob", Token(token.0 ^ 1), &server);
    server
        .running
        .expect_stderr_line("not the token of that pair");
}

#[test]
fn a_flood_is_capped_in_rate_and_size() {
    let server = start_rendezvous(&["--relay-rate", "20"]);
    let (alice, bob, token) = relayed(&server);
    let start = Instant::now();
    for n in 0..500 {
        alice
            .speaker
            .send(&chat(token, &format!("flood {n}")), server.addr);
    }
    server
        .running
        .expect_stderr_line("alice sends over 20 a second");
    let mut forwarded = 0;
    while bob.speaker.hears_anything_within(QUIET).is_some() {
        forwarded += 1;
    }
    // A burst of 20, then 20 a second while the relay handled the flood.
    // The relay handled the flood within this time, whatever its speed.
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = 20 + (20.0 * elapsed).ceil() as usize;
    assert!(
        forwarded >= 20 && forwarded <= allowed,
        "{forwarded} forwarded, at most {allowed}"
    );
    // Larger than the cap: dropped, never cut.
    std::thread::sleep(Duration::from_millis(200));
    alice
        .speaker
        .send(&chat(token, &"x".repeat(1300)), server.addr);
    server
        .running
        .expect_stderr_line("longer than any request or relayed message (1200 bytes)");
    assert_eq!(bob.speaker.hears_anything_within(QUIET), None);
    alice
        .speaker
        .send(&chat(token, "after the flood"), server.addr);
    assert_eq!(bob.speaker.receive().0, chat(token, "after the flood"));
    server
        .running
        .expect_stdout_line("of alice's messages over the rate");
}

#[test]
fn an_expired_pair_is_gone() {
    let server = start_rendezvous(&["--relay-idle-ms", "400"]);
    let (alice, bob, token) = relayed(&server);
    server
        .running
        .expect_stdout_line("relay for alice and bob expired: nothing to forward for 400 ms");
    alice.speaker.send(&chat(token, "too late"), server.addr);
    server
        .running
        .expect_stderr_line("no relayed pair has that token");
    assert_eq!(bob.speaker.hears_anything_within(QUIET), None);
}
