//! Lesson 1 over real UDP sockets on loopback: two peers, a plain socket
//! standing in for `nc -u`, and the run the book shows.

use std::net::{IpAddr, Ipv6Addr};

use testkit::udp::{self, PROMPT};
use testkit::{LOCALHOST, check_generated, normalize};

const BIN: &str = "lesson1-udp-alternating";

#[test]
fn two_peers_exchange_messages_both_ways() {
    udp::check_exchange(BIN, BIN, LOCALHOST, true, true);
}

#[test]
fn two_peers_exchange_messages_over_ipv6() {
    udp::check_exchange(BIN, BIN, IpAddr::V6(Ipv6Addr::LOCALHOST), true, true);
}

#[test]
fn talks_with_a_lesson_2_peer() {
    udp::check_exchange(BIN, "lesson2-udp-threaded", LOCALHOST, true, false);
}

#[test]
fn a_60000_byte_line_arrives_whole_both_ways() {
    udp::check_long_line(BIN, true);
}

#[test]
fn prints_invalid_utf8_lossily_and_empty_datagrams_as_empty() {
    udp::check_odd_payloads(BIN, true);
}

#[test]
fn send_failures_are_reported_and_the_chat_goes_on() {
    udp::check_send_failures(BIN);
}

#[test]
fn quit_and_end_of_input_exit_zero() {
    udp::check_quit_and_end_of_input(BIN);
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
    let mut replacements = udp::book_replacements(a_addr, b_addr);
    replacements.push(("--bind 127.0.0.1:0".into(), "--bind 127.0.0.1:55566".into()));
    check_generated(
        "lesson1-peer-a.txt",
        &normalize(&a.transcript(), &replacements),
    );
    check_generated(
        "lesson1-peer-b.txt",
        &normalize(&b.transcript(), &replacements),
    );
}
