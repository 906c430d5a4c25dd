//! Everything but step 2 is lesson 3's: lesson 4's server still serves
//! clients at once, and a client that leaves mid-echo harms no one else.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use testkit::LOCALHOST;
use testkit::tcp::{VanishingClient, assert_echo, connect, random_bytes, start_server};

const SERVER: &str = "lesson4-server";

#[test]
fn serves_an_idle_client_and_busy_ones_at_once_like_lesson_3() {
    let (server, addr) = start_server(SERVER, SocketAddr::new(LOCALHOST, 0), &[]);
    let idle = connect(addr);
    let idle_addr = idle.local_addr().unwrap();
    server.expect_stdout_line(&format!("client {idle_addr} connected"));
    // Served one at a time, the busy clients would wait behind the idle one.
    for i in 0..3 {
        let busy = connect(addr);
        assert_echo(&busy, format!("busy client {i}, while {idle_addr} is idle\n").as_bytes());
    }
    assert_echo(&idle, b"late but here\n");
}

#[test]
fn a_client_vanishing_mid_echo_leaves_it_serving_like_lesson_3() {
    let (server, addr) = start_server(SERVER, SocketAddr::new(LOCALHOST, 0), &[]);
    // A mebibyte sent, its echo never read, then a close that resets the
    // connection: the server's send fails (EPIPE or ECONNRESET), and must
    // not raise the SIGPIPE that kills a process.
    let rude = VanishingClient::start(addr, random_bytes(7, 1024 * 1024));
    let rude_addr = rude.local_addr();
    server.expect_stdout_line(&format!("client {rude_addr} connected"));
    thread::sleep(Duration::from_millis(50));
    rude.vanish();
    let error = server.expect_stderr_line(&format!("client {rude_addr}"));
    assert!(
        error.contains("ECONNRESET") || error.contains("EPIPE"),
        "client {rude_addr} reset its connection mid-echo: expected the server to log \
         ECONNRESET or EPIPE for it, got {error:?}"
    );
    let polite = connect(addr);
    assert_echo(&polite, b"are you still there?\n");
}
