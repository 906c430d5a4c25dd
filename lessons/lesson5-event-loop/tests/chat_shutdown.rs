//! Every way lesson 5's chat ends — `quit`, end of input, SIGTERM, Ctrl+C —
//! exits 0 at once. The signals come in through the poll set (a signalfd),
//! so one that arrives before the program starts waiting is not missed:
//! lesson 2's check-then-read race is gone.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{CHAT, PROMPT, start_chat, udp_socket};
use nix::sys::signal::Signal;
use testkit::{LOCALHOST, Running};

/// Lesson 2 needed up to one receive timeout (a second) to stop; lesson 5
/// has nothing to wait for. The bound leaves room for a loaded machine.
const WITHIN: Duration = Duration::from_millis(1500);

fn start() -> Running {
    let peer = udp_socket(LOCALHOST).local_addr().expect("local address");
    start_chat(CHAT, CHAT, SocketAddr::new(LOCALHOST, 0), peer, &[]).0
}

/// Waits for the exit, at most [`WITHIN`]; checks status 0 and the goodbye.
fn assert_clean_exit(chat: &mut Running, said: &str) {
    let started = Instant::now();
    let status = chat.wait_exit_within(WITHIN);
    assert!(status.success(), "{status}\n{}", chat.describe());
    let stdout = chat.stdout();
    assert!(
        stdout.contains(said) && stdout.ends_with("Socket closed. Bye.\n"),
        "{}",
        chat.describe()
    );
    eprintln!("exited {:?} after the request", started.elapsed());
}

#[test]
fn ctrl_c_while_a_line_is_half_typed_exits_at_once() {
    let mut chat = start();
    chat.expect_stdout(PROMPT);
    chat.type_bytes(b"half a li");
    chat.signal(Signal::SIGINT);
    assert_clean_exit(&mut chat, "caught SIGINT, quitting...");
}

#[test]
fn sigterm_exits_at_once() {
    let mut chat = start();
    chat.expect_stdout(PROMPT);
    chat.signal(Signal::SIGTERM);
    assert_clean_exit(&mut chat, "caught SIGTERM, quitting...");
}

/// The signal is sent as soon as the program says it is bound, before it
/// reached poll: lesson 2's window, where a flag was checked and then a
/// read started. Blocked from the start, the signal waits as pending, and
/// the first poll returns at once for the signalfd.
#[test]
fn a_signal_sent_before_the_wait_starts_is_not_missed() {
    let mut chat = start();
    chat.signal(Signal::SIGINT);
    assert_clean_exit(&mut chat, "caught SIGINT, quitting...");
}

#[test]
fn quit_and_end_of_input_exit_zero() {
    let mut chat = start();
    chat.expect_stdout(PROMPT);
    chat.type_line("quit");
    assert_clean_exit(&mut chat, "quitting...");
    let mut chat = start();
    chat.expect_stdout(PROMPT);
    chat.close_stdin();
    assert_clean_exit(&mut chat, "end of input, quitting...");
}

/// A last line without a newline is still sent at the end of input.
#[test]
fn a_last_line_without_newline_is_sent_at_end_of_input() {
    let socket = udp_socket(LOCALHOST);
    let (mut chat, _) = start_chat(
        CHAT,
        CHAT,
        SocketAddr::new(LOCALHOST, 0),
        socket.local_addr().unwrap(),
        &[],
    );
    chat.type_bytes(b"no newline");
    chat.close_stdin();
    assert_eq!(common::receive(&socket), b"no newline");
    assert_clean_exit(&mut chat, "end of input, quitting...");
}
