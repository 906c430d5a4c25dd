//! Every way lesson 2 ends — `quit`, end of input, SIGTERM, and Ctrl+C
//! while it waits for a typed line — stops both threads and exits 0 within
//! two seconds.

mod common;

use std::time::Duration;

use common::wait_until_blocked_in;

use nix::sys::signal::Signal;
use testkit::udp::{FAST, RECEIVER_STARTED, SocketPeer};
use testkit::{LOCALHOST, Running, check_generated, normalize};

const BIN: &str = "lesson2-chat";
const WITHIN: Duration = Duration::from_secs(2);

/// After `what` was done to `app`: both threads stop, say so, and the
/// program exits 0, all within [`WITHIN`].
fn assert_clean_exit(app: &mut Running, what: &str) {
    let expected = format!(
        "{what}; expected \"[receiver] stopped.\", \"[main] receiver thread joined.\" and status 0 within {WITHIN:?}"
    );
    let Some(status) = app.try_wait_exit_within(WITHIN) else {
        panic!(
            "{expected}: still running then (killed it)\n{}",
            app.describe()
        );
    };
    assert!(status.success(), "{expected}: {status}\n{}", app.describe());
    let stdout = app.stdout();
    assert!(
        stdout.contains("[receiver] stopped.") && stdout.contains("receiver thread joined"),
        "{expected}: it exited without them\n{}",
        app.describe()
    );
}

#[test]
fn quit_ends_both_threads() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    chat.app.type_line("quit");
    assert_clean_exit(&mut chat.app, "typed quit");
}

#[test]
fn end_of_input_ends_both_threads() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    chat.app.close_stdin();
    assert_clean_exit(&mut chat.app, "closed its stdin (end of input)");
}

#[test]
fn sigterm_ends_both_threads() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    wait_until_blocked_in(chat.app.pid(), Some(BIN), "pipe_read");
    chat.app.signal(Signal::SIGTERM);
    assert_clean_exit(
        &mut chat.app,
        "sent SIGTERM while it waited in read(0) for a line",
    );
    assert!(
        chat.app.stdout().contains("caught SIGTERM"),
        "{}",
        chat.app.describe()
    );
}

/// The original needs one more Enter after Ctrl+C: its read is restarted.
/// Here the read is interrupted, with nothing typed and stdin left open.
#[test]
fn ctrl_c_while_waiting_for_a_line_ends_both_threads() {
    let mut chat = SocketPeer::start(BIN, LOCALHOST, FAST);
    // Ctrl+C once the main thread waits in read(0), as a learner presses it.
    wait_until_blocked_in(chat.app.pid(), Some(BIN), "pipe_read");
    chat.app.signal(Signal::SIGINT);
    assert_clean_exit(
        &mut chat.app,
        "sent SIGINT (Ctrl+C) while it waited in read(0) for a line",
    );
    assert!(
        chat.app.stdout().contains("caught SIGINT"),
        "{}",
        chat.app.describe()
    );
}

/// Ctrl+C with the default one-second receive timeout, stored for the book.
#[test]
fn book_session_ctrl_c() {
    let socket = testkit::udp::bound_socket(LOCALHOST);
    let peer = socket.local_addr().unwrap();
    let (mut app, addr) =
        testkit::udp::start_peer("peer A", BIN, "127.0.0.1:0".parse().unwrap(), peer, &[]);
    app.expect_stdout(RECEIVER_STARTED);
    app.signal(Signal::SIGINT);
    assert_clean_exit(&mut app, "sent SIGINT (Ctrl+C)");
    let mut replacements = testkit::udp::book_replacements(addr, peer);
    replacements.push(("--bind 127.0.0.1:0".into(), "--bind 127.0.0.1:55566".into()));
    check_generated(
        "lesson2-ctrl-c.txt",
        &normalize(&app.transcript(), &replacements),
    );
}
