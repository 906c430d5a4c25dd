//! Lesson 5's chat over real UDP sockets on loopback: one thread that shows
//! a message the moment it arrives, while its user types nothing or is in
//! the middle of a line; it talks with itself, with lessons 1 and 2, and
//! with a plain socket as `nc -u` would.

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use common::CHAT;
use testkit::tcp::random_letters;
use testkit::udp::{PROMPT, SocketPeer, bound_socket, start_peer};
use testkit::{LOCALHOST, Running, free_udp_addr};

/// Lessons 1 and 2 wait this long per receive; short keeps lesson 1's turns
/// quick.
const FAST: &[&str] = &["--recv-timeout-ms", "100"];

/// Lesson 5's chat as peer A on a free port, and `bin_b` as peer B,
/// started with the arguments A printed ("start the peer with: …") plus
/// `b_extra`. Returns A, A's address, B, B's address.
fn start_pair(
    bin_b: &str,
    ip: IpAddr,
    b_extra: &[&str],
) -> (Running, SocketAddr, Running, SocketAddr) {
    let b_addr = free_udp_addr(ip);
    let (a, a_addr) = start_peer("peer A", CHAT, SocketAddr::new(ip, 0), b_addr, &[]);
    let line = a.expect_stdout_line("start the peer with: ");
    let printed = line.split_once("start the peer with: ").map(|(_, c)| c);
    let words: Vec<&str> = printed.unwrap_or_default().split_whitespace().collect();
    let (b_bind, b_peer) = (b_addr.to_string(), a_addr.to_string());
    assert_eq!(
        words,
        ["--bind", &b_bind, "--peer", &b_peer],
        "peer A prints the arguments that start peer B: {line}"
    );
    let (b, bound) = start_peer("peer B", bin_b, b_addr, a_addr, b_extra);
    assert_eq!(bound, b_addr);
    (a, a_addr, b, b_addr)
}

/// A message typed into one peer and the line the other prints for it.
fn say_and_see(from: &mut Running, from_addr: SocketAddr, to: &Running, text: &str) {
    from.type_line(text);
    to.expect_stdout_line(&format!("[from {from_addr}] {text}"));
}

fn quit(peer: &mut Running) {
    peer.type_line("quit");
    let status = peer.wait_exit();
    assert!(status.success(), "{status}\n{}", peer.describe());
}

#[test]
fn two_peers_chat_both_ways_without_pressing_enter() {
    let (mut a, a_addr, mut b, b_addr) = start_pair(CHAT, LOCALHOST, &[]);
    a.expect_stdout(PROMPT);
    b.expect_stdout(PROMPT);
    // Neither peer is typed into before the other's message shows.
    say_and_see(&mut a, a_addr, &b, "hello from A");
    say_and_see(&mut b, b_addr, &a, "hello from B");
    say_and_see(&mut a, a_addr, &b, "and again");
    quit(&mut a);
    quit(&mut b);
}

#[test]
fn two_peers_chat_over_ipv6() {
    let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let (mut a, a_addr, mut b, b_addr) = start_pair(CHAT, ip, &[]);
    say_and_see(&mut a, a_addr, &b, "over IPv6");
    say_and_see(&mut b, b_addr, &a, "back over IPv6");
    quit(&mut a);
    quit(&mut b);
}

#[test]
fn talks_with_a_lesson_2_peer_both_ways() {
    let (mut a, a_addr, mut b, b_addr) = start_pair("lesson2-chat", LOCALHOST, FAST);
    b.expect_stdout(testkit::udp::ready_text("lesson2-chat"));
    say_and_see(&mut a, a_addr, &b, "hello lesson 2");
    say_and_see(&mut b, b_addr, &a, "hello lesson 5");
    quit(&mut a);
    quit(&mut b);
}

#[test]
fn talks_with_a_lesson_1_peer_both_ways() {
    let (mut a, a_addr, mut b, b_addr) = start_pair("lesson1-chat", LOCALHOST, FAST);
    b.expect_stdout(PROMPT);
    // Lesson 1 only receives between two lines, so its user presses Enter;
    // lesson 5 shows lesson 1's message without any help.
    a.type_line("hello lesson 1");
    b.type_line("");
    b.expect_stdout_line(&format!("[from {a_addr}] hello lesson 1"));
    say_and_see(&mut b, b_addr, &a, "hello lesson 5");
    quit(&mut a);
    quit(&mut b);
}

/// What lesson 2 needed a thread for, in one thread: half a line is typed,
/// a datagram arrives and is shown at once, and the line, finished, is
/// sent whole. The other side is a plain UDP socket, as `nc -u` would be.
#[test]
fn a_message_shows_while_a_line_is_half_typed() {
    let mut chat = SocketPeer::start(CHAT, LOCALHOST, &[]);
    chat.app.type_bytes(b"half a li");
    chat.send(b"incoming!");
    assert_eq!(chat.printed_message(), "incoming!");
    chat.app.type_bytes(b"ne\n");
    assert_eq!(chat.receive(), b"half a line");
    quit(&mut chat.app);
}

#[test]
fn a_60000_byte_datagram_arrives_whole_both_ways() {
    let mut chat = SocketPeer::start(CHAT, LOCALHOST, &[]);
    let outgoing = random_letters(1, 60_000);
    chat.app.type_bytes(&[outgoing.as_slice(), b"\n"].concat());
    let sent = chat.receive();
    assert!(
        sent == outgoing,
        "typed a line of 60,000 letters: expected one datagram of 60,000 bytes, the same letters; got {} bytes",
        sent.len()
    );
    let incoming = random_letters(2, 60_000);
    chat.send(&incoming);
    let printed = chat.printed_message();
    assert!(
        printed.as_bytes() == incoming.as_slice(),
        "sent the chat one datagram of 60,000 letters: expected them printed whole after \"[from …] \"; got {} bytes (a receive buffer shorter than the datagram cuts it)",
        printed.len()
    );
}

/// The largest UDP payload is 65,507 bytes over IPv4 (65,535 minus the
/// 20-byte IPv4 and 8-byte UDP headers) and 65,527 over IPv6 (its payload
/// length leaves out the 40-byte IPv6 header): the largest line goes out
/// whole, one byte more is refused with EMSGSIZE and the number for that
/// family, and the chat goes on.
#[test]
fn the_largest_datagram_is_65507_bytes_over_ipv4_and_65527_over_ipv6() {
    for (ip, largest, said) in [
        (LOCALHOST, 65_507, "at most 65,507 bytes over IPv4"),
        (
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            65_527,
            "at most 65,527 bytes over IPv6",
        ),
    ] {
        let mut chat = SocketPeer::start(CHAT, ip, &[]);
        let line = random_letters(3, largest);
        chat.app.type_bytes(&[line.as_slice(), b"\n"].concat());
        assert_eq!(chat.receive().len(), largest, "{said}: sent whole");
        chat.app.type_bytes(&[line.as_slice(), b"x\n"].concat());
        let error = chat.app.expect_stderr_line("EMSGSIZE");
        assert!(error.contains(said), "{error}");
        chat.app.type_line("still here");
        assert_eq!(chat.receive(), b"still here", "the chat goes on");
        quit(&mut chat.app);
    }
}

/// Lesson 2's peer filter, kept: a stranger's datagram is dropped with a
/// warning, unless `--accept-any`.
#[test]
fn drops_datagrams_from_a_third_socket_unless_accept_any() {
    let peer = bound_socket(LOCALHOST);
    let stranger = bound_socket(LOCALHOST);
    let (peer_addr, stranger_addr) = (peer.local_addr().unwrap(), stranger.local_addr().unwrap());
    let any_port = SocketAddr::new(LOCALHOST, 0);

    let (strict, strict_addr) = start_peer("strict", CHAT, any_port, peer_addr, &[]);
    stranger.send_to(b"intruder", strict_addr).unwrap();
    let warning = strict.expect_stderr_line("dropped");
    assert!(
        warning.contains(&format!(
            "8-byte datagram from {stranger_addr}: not the peer {peer_addr}"
        )),
        "{warning}"
    );
    peer.send_to(b"from the peer", strict_addr).unwrap();
    strict.expect_stdout_line("from the peer");
    assert!(
        !strict.stdout().contains("intruder"),
        "{}",
        strict.describe()
    );

    let (open, open_addr) = start_peer("open", CHAT, any_port, peer_addr, &["--accept-any"]);
    stranger
        .send_to(b"hello from a stranger", open_addr)
        .unwrap();
    open.expect_stdout_line(&format!("[from {stranger_addr}] hello from a stranger"));
}

/// A real chat between two lesson 5 peers, stored for the book.
#[test]
fn book_session() {
    let (mut a, a_addr, mut b, b_addr) = start_pair(CHAT, LOCALHOST, &[]);
    a.expect_stdout(PROMPT);
    b.expect_stdout(PROMPT);
    a.type_line("hi, this is A");
    b.expect_stdout_line("hi, this is A");
    b.expect_stdout(PROMPT);
    b.type_line("hello A! One thread, and I saw you at once");
    a.expect_stdout_line("saw you at once");
    a.expect_stdout(PROMPT);
    a.type_line("quit");
    assert!(a.wait_exit().success(), "{}", a.describe());
    b.close_stdin();
    assert!(b.wait_exit().success(), "{}", b.describe());
    testkit::udp::check_book_session("lesson5", (&a, a_addr), (&b, b_addr));
}
