//! Captures a session for the book (docs/src/generated/lesson5-server.txt
//! and lesson5-client.txt): two clients served by one thread; the first
//! ends its input and gets its last echo after the half-close; Ctrl+C stops
//! the server, and the second client, idle, notices at once. Random ports
//! are replaced by the defaults a reader would see.

mod common;

use std::net::SocketAddr;

use common::{CLIENT, book_replacements, client_chat, start_client, start_server};
use nix::sys::signal::Signal;
use testkit::{LOCALHOST, check_generated, find_socket_addr, normalize};

#[test]
fn two_clients_then_ctrl_c() {
    let (mut server, addr) = start_server(SocketAddr::new(LOCALHOST, 0), &[]);
    let mut clients = Vec::new();
    let mut client_port =
        |line: String| clients.push(find_socket_addr(&line).expect("client address in the log"));

    let mut first = start_client("first client", CLIENT, addr);
    client_port(server.expect_stdout_line("connected"));
    client_chat(&mut first, "hello, one thread");
    server.expect_stdout_line("recv from");

    let mut second = start_client("second client", CLIENT, addr);
    client_port(server.expect_stdout_line("connected"));
    client_chat(&mut second, "a second client, the same thread");
    server.expect_stdout_line("recv from");

    client_chat(&mut first, "last line, then Ctrl+D");
    server.expect_stdout_line("recv from");
    first.close_stdin();
    assert!(first.wait_exit().success(), "{}", first.describe());
    server.expect_stdout_line("left");

    server.signal(Signal::SIGINT);
    assert!(server.wait_exit().success(), "{}", server.describe());
    assert_eq!(second.wait_exit().code(), Some(1), "{}", second.describe());

    let ports = book_replacements(addr, &clients);
    let server_text = server
        .transcript()
        .replace("caught SIGINT", "^Ccaught SIGINT");
    let client_text = format!(
        "--- terminal 2: the first client (Ctrl+D at the end) ---\n{}\
         --- terminal 3: the second client, idle when the server stops ---\n{}",
        first.transcript(),
        second.transcript()
    );
    check_generated("lesson5-server.txt", &normalize(&server_text, &ports));
    check_generated("lesson5-client.txt", &normalize(&client_text, &ports));
}
