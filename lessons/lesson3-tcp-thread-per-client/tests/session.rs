//! Captures a short echo chat with two clients for the book
//! (docs/src/generated/lesson3-server.txt and lesson3-client.txt), with the
//! random ports replaced by the defaults a reader would see.

use std::net::SocketAddr;

use nix::sys::signal::Signal;
use testkit::tcp::{book_replacements, client_chat, start_client, start_server};
use testkit::{LOCALHOST, check_generated, find_socket_addr, normalize};

#[test]
fn two_clients_chat_with_the_server() {
    let (mut server, addr) = start_server("lesson3-server", SocketAddr::new(LOCALHOST, 0), &[]);
    let mut clients = Vec::new();
    let mut client_port =
        |line: String| clients.push(find_socket_addr(&line).expect("client address in the log"));

    let mut first = start_client("first client", addr);
    client_port(server.expect_stdout_line("connected"));
    client_chat(&mut first, "hello, server");
    server.expect_stdout_line("recv from");

    let mut second = start_client("second client", addr);
    client_port(server.expect_stdout_line("connected"));
    client_chat(&mut second, "a second client, served at the same time");
    server.expect_stdout_line("recv from");
    client_chat(&mut first, "still here");
    server.expect_stdout_line("recv from");

    first.type_line("exit");
    assert!(first.wait_exit().success(), "{}", first.describe());
    server.expect_stdout_line("left");
    second.close_stdin();
    assert!(second.wait_exit().success(), "{}", second.describe());
    server.expect_stdout_line("left");
    server.signal(Signal::SIGINT);
    server.wait_exit();

    let ports = book_replacements(&[addr], &clients);
    let server_text = format!("{}^C\n", server.transcript());
    let client_text = format!(
        "--- terminal 2: the first client ---\n{}--- terminal 3: the second client (then Ctrl+D) ---\n{}",
        first.transcript(),
        second.transcript()
    );
    check_generated("lesson3-server.txt", &normalize(&server_text, &ports));
    check_generated("lesson3-client.txt", &normalize(&client_text, &ports));
}
