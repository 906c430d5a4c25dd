//! Lesson 2 over real UDP sockets on loopback: two peers, a plain socket
//! standing in for `nc -u`, the peer filter, and the run the book shows.

use std::net::{IpAddr, Ipv6Addr};

use testkit::udp::{self, FAST, PROMPT, SocketPeer};
use testkit::{LOCALHOST, check_generated, normalize};

const BIN: &str = "lesson2-udp-threaded";

/// The receiver thread prints a message while its user types nothing.
#[test]
fn two_peers_exchange_messages_without_pressing_enter() {
    udp::check_exchange(BIN, BIN, LOCALHOST, false, false);
}

#[test]
fn two_peers_exchange_messages_over_ipv6() {
    udp::check_exchange(BIN, BIN, IpAddr::V6(Ipv6Addr::LOCALHOST), false, false);
}

#[test]
fn talks_with_a_lesson_1_peer() {
    udp::check_exchange(BIN, "lesson1-udp-alternating", LOCALHOST, false, true);
}

#[test]
fn a_60000_byte_line_arrives_whole_both_ways() {
    udp::check_long_line(BIN, false);
}

#[test]
fn prints_invalid_utf8_lossily_and_empty_datagrams_as_empty() {
    udp::check_odd_payloads(BIN, false);
}

#[test]
fn send_failures_are_reported_and_the_chat_goes_on() {
    udp::check_send_failures(BIN);
}

/// The original's TODO: a datagram from anyone but the peer is dropped,
/// with a warning naming the sender.
#[test]
fn drops_datagrams_from_a_third_socket() {
    let chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    let stranger = udp::bound_socket(LOCALHOST);
    stranger.send_to(b"intruder", chat.app_addr).unwrap();
    let warning = chat.app.expect_stderr_line("dropped");
    let stranger_addr = stranger.local_addr().unwrap();
    assert!(
        warning.contains(&format!("8-byte datagram from {stranger_addr}")),
        "{warning}"
    );
    assert!(
        warning.contains(&format!("not the peer {}", chat.socket_addr())),
        "{warning}"
    );
    // The peer's next message shows; the stranger's never did.
    chat.send(b"from the peer");
    chat.app.expect_stdout_line("from the peer");
    assert!(
        !chat.app.stdout().contains("intruder"),
        "{}",
        chat.app.describe()
    );
}

#[test]
fn accept_any_shows_datagrams_from_a_third_socket() {
    let mut args = FAST.to_vec();
    args.push("--accept-any");
    let chat = SocketPeer::start(BIN, LOCALHOST, &args);
    let stranger = udp::bound_socket(LOCALHOST);
    stranger
        .send_to(b"hello from a stranger", chat.app_addr)
        .unwrap();
    let from = format!("[from {}] ", stranger.local_addr().unwrap());
    assert_eq!(
        udp::message(&chat.app.expect_stdout_line(&from), &from),
        "hello from a stranger"
    );
    assert!(
        !chat.app.stderr().contains("dropped"),
        "{}",
        chat.app.describe()
    );
}

/// A real chat with the default one-second timeout, stored for the book:
/// messages show the moment they arrive.
#[test]
fn book_session() {
    let (mut a, a_addr, mut b, b_addr) = udp::start_pair(BIN, BIN, LOCALHOST, &[]);
    a.expect_stdout(PROMPT);
    b.expect_stdout(PROMPT);
    a.type_line("hi, this is A");
    a.expect_stdout(PROMPT);
    b.expect_stdout_line("hi, this is A");
    b.expect_stdout(PROMPT);
    b.type_line("hello A! This time I saw you at once");
    b.expect_stdout(PROMPT);
    a.expect_stdout_line("saw you at once");
    a.expect_stdout(PROMPT);
    a.type_line("quit");
    assert!(a.wait_exit().success(), "{}", a.describe());
    b.close_stdin();
    assert!(b.wait_exit().success(), "{}", b.describe());
    let mut replacements = udp::book_replacements(a_addr, b_addr);
    replacements.push(("--bind 127.0.0.1:0".into(), "--bind 127.0.0.1:55566".into()));
    check_generated(
        "lesson2-peer-a.txt",
        &normalize(&a.transcript(), &replacements),
    );
    check_generated(
        "lesson2-peer-b.txt",
        &normalize(&b.transcript(), &replacements),
    );
}
