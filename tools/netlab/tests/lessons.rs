//! Lessons 1 to 4 between the post's two machines, with the post's
//! addresses and ports: VM1 192.168.126.129, VM2 192.168.126.128, the chat
//! on 55566 and 55577, the echo server on 8890.

mod common;

use common::*;
use nix::sys::signal::Signal;
use testkit::tcp::client_chat;

/// Peer A on vm1 and peer B on vm2, each bound to its VM's address, chat
/// both ways; each sees the other's address as the sender.
fn chat_between_vm1_and_vm2(test: &str, bin: &str, alternating: bool) {
    let Some(lab) = two_vms(test) else {
        return;
    };
    let (a, b) = (vm1(PORT_A), vm2(PORT_B));
    let (mut peer_a, mut peer_b) = start_peers_on_both_vms(&lab, bin);

    peer_a.type_line("hello from vm1");
    if alternating {
        peer_b.type_line("");
    }
    peer_b.expect_stdout_line(&format!("[from {a}] hello from vm1"));
    peer_b.type_line("hello from vm2");
    if alternating {
        peer_a.type_line("");
    }
    peer_a.expect_stdout_line(&format!("[from {b}] hello from vm2"));
    for peer in [&mut peer_a, &mut peer_b] {
        peer.type_line("quit");
        assert!(peer.wait_exit().success(), "{}", peer.describe());
    }
}

#[test]
fn lesson1_chats_between_vm1_and_vm2() {
    chat_between_vm1_and_vm2("lesson1_chats_between_vm1_and_vm2", "lesson1-chat", true);
}

#[test]
fn lesson2_chats_between_vm1_and_vm2() {
    chat_between_vm1_and_vm2("lesson2_chats_between_vm1_and_vm2", "lesson2-chat", false);
}

/// Lesson 3's server on vm1 (bound to every address, as the post's
/// INADDR_ANY) echoes a client on vm2, and logs it with vm2's address.
#[test]
fn lesson3_echoes_between_vm1_and_vm2() {
    let Some(lab) = two_vms("lesson3_echoes_between_vm1_and_vm2") else {
        return;
    };
    let server = start_server_in(&lab, "vm1", "server", "lesson3-server");
    let mut client = start_client_in(&lab, "vm2", "client");
    let connected = server.expect_stdout_line("connected");
    assert!(connected.contains("client 192.168.126.128:"), "{connected}");
    client_chat(&mut client, "hello across the link");
    server.expect_stdout_line("hello across the link");
    client.type_line("exit");
    assert!(client.wait_exit().success(), "{}", client.describe());
}

/// Lesson 4's fix between the machines: its server is stopped while a
/// client on vm2 is connected, the client leaves, vm1 holds the connection
/// in TIME-WAIT on port 8890, and a new lesson 4 server binds it at once.
#[test]
fn lesson4_restarts_at_once_between_vm1_and_vm2() {
    let Some(lab) = two_vms("lesson4_restarts_at_once_between_vm1_and_vm2") else {
        return;
    };
    let mut server = start_server_in(&lab, "vm1", "server", "lesson4-server");
    let mut client = start_client_in(&lab, "vm2", "client");
    client_chat(&mut client, "before the restart");
    server.signal(Signal::SIGINT);
    server.wait_exit();
    client.type_line("exit");
    client.wait_exit();
    wait_for_state(&lab, "vm1", ECHO_PORT, "TIME-WAIT");

    let _restarted = start_server_in(&lab, "vm1", "restarted", "lesson4-server");
    let mut client = start_client_in(&lab, "vm2", "client 2");
    client_chat(&mut client, "after the restart");
}
