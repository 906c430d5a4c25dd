//! Lesson 1 over real UDP sockets on loopback: two peers, a plain socket
//! standing in for `nc -u`, and the run the book shows.
//!
//! Lesson 1 receives only between two typed lines, so wherever a test
//! expects a message to show, it first presses Enter (types an empty line).

use std::net::{IpAddr, Ipv6Addr};

use testkit::LOCALHOST;
use testkit::udp::{self, FAST, PROMPT, SocketPeer};

const BIN: &str = "lesson1-chat";

/// Two peers on `ip` exchange a message each way; `other` is peer B's
/// program, and `other_alternates` whether it also needs an Enter.
fn exchange(ip: IpAddr, other: &str, other_alternates: bool) {
    let (mut a, a_addr, mut b, b_addr) = udp::start_pair(BIN, other, ip, FAST);
    a.expect_stdout(PROMPT);
    b.expect_stdout(udp::ready_text(other));
    a.type_line("hello from A");
    if other_alternates {
        b.type_line("");
    }
    b.expect_stdout_line(&format!("[from {a_addr}] hello from A"));
    b.type_line("hello from B");
    a.type_line(""); // Enter: now A receives.
    a.expect_stdout_line(&format!("[from {b_addr}] hello from B"));
    for peer in [&mut a, &mut b] {
        peer.type_line("quit");
        assert!(peer.wait_exit().success(), "{}", peer.describe());
    }
}

#[test]
fn two_peers_exchange_messages_both_ways() {
    exchange(LOCALHOST, BIN, true);
}

#[test]
fn two_peers_exchange_messages_over_ipv6() {
    exchange(IpAddr::V6(Ipv6Addr::LOCALHOST), BIN, true);
}

#[test]
fn talks_with_a_lesson_2_peer() {
    exchange(LOCALHOST, "lesson2-chat", false);
}

/// A 60,000-byte line goes out as one datagram, and one comes in and is
/// printed whole: the buffer holds any UDP payload.
#[test]
fn a_60000_byte_line_arrives_whole_both_ways() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    let line = udp::random_line(1, 60_000);
    chat.app.type_line(&line);
    udp::assert_same_bytes(
        "typed a 60,000-byte line: the test's socket receives it as one datagram",
        line.as_bytes(),
        &chat.receive(),
    );
    chat.app
        .expect_stdout_line(&format!("[sent {} bytes]", line.len()));
    let incoming = udp::random_line(2, 60_000);
    chat.send(incoming.as_bytes());
    chat.app.type_line("");
    udp::assert_same_bytes(
        "sent the program a 60,000-byte datagram: it prints the whole message after [from …]",
        incoming.as_bytes(),
        chat.printed_message().as_bytes(),
    );
}

/// Payloads that are not text: invalid UTF-8 prints lossily, an empty
/// datagram prints as an empty message (the original drops it).
#[test]
fn prints_invalid_utf8_lossily_and_empty_datagrams_as_empty() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    chat.send(b"caf\xE9 au lait");
    chat.app.type_line("");
    udp::assert_same_bytes(
        "sent the datagram b\"caf\\xE9 au lait\" (not UTF-8): the byte that is not UTF-8 prints as U+FFFD",
        "caf\u{FFFD} au lait".as_bytes(),
        chat.printed_message().as_bytes(),
    );
    chat.send(b"");
    chat.app.type_line("");
    assert_eq!(
        chat.printed_message(),
        "",
        "an empty datagram is an empty message"
    );
    chat.app.type_line("quit");
    assert!(chat.app.wait_exit().success());
}

/// A line too long for one datagram is reported (EMSGSIZE) and the chat
/// goes on; so does sending to a peer that is not running, which an
/// unconnected UDP socket cannot even notice.
#[test]
fn send_failures_are_reported_and_the_chat_goes_on() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    chat.app.type_line(&"x".repeat(65_508));
    let error = chat.app.expect_stderr_line("EMSGSIZE");
    assert!(
        error.contains("65,507") && error.contains(&chat.socket_addr().to_string()),
        "{error}"
    );
    chat.app.type_line("still here");
    udp::assert_same_bytes(
        "typed a 65,508-byte line (EMSGSIZE), then \"still here\": the chat goes on and sends it",
        b"still here",
        &chat.receive(),
    );

    let mut lonely = udp::start_alone(BIN, LOCALHOST, FAST);
    for line in ["anyone there?", "hello?"] {
        udp::send_line(&mut lonely, line);
    }
    lonely.type_line("quit");
    assert!(lonely.wait_exit().success(), "{}", lonely.describe());
    assert_eq!(lonely.stderr(), "", "nothing to report: UDP cannot tell");
}

/// The original's loop tests end of input before it sends, so a last line
/// without a newline is lost; here it is sent, and then the input ends.
#[test]
fn a_last_line_without_a_newline_is_sent() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    chat.app.type_bytes(b"last words");
    chat.app.close_stdin();
    udp::assert_same_bytes(
        "typed \"last words\" without a newline, then closed stdin: it is still sent",
        b"last words",
        &chat.receive(),
    );
    assert!(chat.app.wait_exit().success(), "{}", chat.app.describe());
}

#[test]
fn quit_and_end_of_input_exit_zero() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    chat.app.type_line("quit");
    assert!(chat.app.wait_exit().success(), "{}", chat.app.describe());
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    chat.app.close_stdin();
    assert!(chat.app.wait_exit().success(), "{}", chat.app.describe());
}

/// A real chat with the default one-second timeout, stored for the book:
/// each peer only shows a message after its user presses Enter.
#[test]
fn book_session() {
    let (mut a, a_addr, mut b, b_addr) = udp::start_pair(BIN, BIN, LOCALHOST, &[]);
    a.expect_stdout(PROMPT);
    b.expect_stdout(PROMPT);
    a.type_line("hi, this is A");
    a.expect_stdout("[sent 13 bytes]");
    a.expect_stdout(PROMPT);
    b.type_line("");
    b.expect_stdout_line("hi, this is A");
    b.expect_stdout(PROMPT);
    b.type_line("hello A! I only saw you after pressing Enter");
    b.expect_stdout("[sent 44 bytes]");
    b.expect_stdout(PROMPT);
    a.type_line("");
    a.expect_stdout_line("only saw you");
    a.expect_stdout(PROMPT);
    for peer in [&mut a, &mut b] {
        peer.type_line("quit");
        assert!(peer.wait_exit().success(), "{}", peer.describe());
    }
    udp::check_book_session("lesson1", (&a, a_addr), (&b, b_addr));
}
