//! Everything but step 2 is lesson 3's: lesson 4's server still serves
//! clients at once, and a client that closes before its echo harms no one
//! else.

use std::net::SocketAddr;

use testkit::LOCALHOST;
use testkit::tcp::{assert_echo, client_closing_before_its_echo, connect, start_server};

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
        assert_echo(
            &busy,
            format!("busy client {i}, while {idle_addr} is idle\n").as_bytes(),
        );
    }
    assert_echo(&idle, b"late but here\n");
}

/// A client that closes before its echo: the server's second send fails
/// with EPIPE, which must not raise the SIGPIPE that kills a process.
#[test]
fn a_client_that_closes_before_its_echo_does_not_kill_it_with_sigpipe() {
    let (mut server, addr) = start_server(SERVER, SocketAddr::new(LOCALHOST, 0), &[]);
    client_closing_before_its_echo(&mut server, addr);
}
