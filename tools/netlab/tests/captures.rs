//! The packets the book talks about, captured with tcpdump inside the lab's
//! hosts and stored under docs/src/generated/capture-*.txt (checked for
//! staleness; `UPDATE_GENERATED=1` rewrites them). Each test also asserts
//! what the capture shows, so a capture can only change with the kernel's
//! behaviour, never silently.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use testkit::check_generated;

/// Capture 1: the three-way handshake, one echo, and a close by the client,
/// between lesson 3's client on vm2 and its server on vm1.
#[test]
fn capture_1_handshake_echo_and_close() {
    let Some(lab) = two_vms("capture_1_handshake_echo_and_close") else {
        return;
    };
    let capture = capture_echo_port(&lab);
    let _server = start_server_in(&lab, "vm1", "server", "lesson3-server");

    capture.note("vm2$ lesson3-client --server 192.168.126.129:8890");
    let mut client = start_client_in(&lab, "vm2", "client");
    let syn = capture.wait_for("Flags [S]").unwrap();
    assert!(syn.starts_with("IP 192.168.126.128."), "{syn}");
    capture.wait_for("Flags [S.]").unwrap();
    capture.wait_for("Flags [.], ack 1,").unwrap();

    capture.note("the client sends \"hello\\n\" (6 bytes); the server echoes them");
    client.type_line("hello");
    client.expect_stdout_line("client receive: hello");
    capture.wait_for("Flags [P.], seq 1:7, ack 1,").unwrap();
    capture.wait_for("Flags [.], ack 7,").unwrap();
    capture.wait_for("Flags [P.], seq 1:7, ack 7,").unwrap();
    capture.wait_for("Flags [.], ack 7,").unwrap();

    capture.note("the client types exit and closes its socket");
    client.type_line("exit");
    assert!(client.wait_exit().success());
    capture.wait_for("Flags [F.], seq 7, ack 7,").unwrap();
    capture.wait_for("Flags [.], ack 8,").unwrap();
    capture.wait_for("Flags [F.], seq 7, ack 8,").unwrap();
    capture.wait_for("Flags [.], ack 8,").unwrap();
    let client_side = wait_for_state(&lab, "vm2", ECHO_PORT, "TIME-WAIT");
    capture.note(&format!(
        "ss on vm2 (the side that closed first): {}",
        client_side.split(' ').next().unwrap_or_default()
    ));
    let text = render(
        capture,
        "# tcpdump -n -t -i eth0 tcp port 8890   (on vm1: lesson 3's server and client)",
    );
    check_generated("capture-1-handshake.txt", &text);
}

/// Capture 2: the post's restart bug. The server is killed while a client
/// is connected: its kernel sends the FIN, and the orphaned socket waits in
/// FIN-WAIT-2; when the client leaves, it moves to TIME-WAIT, on the
/// server's side, holding port 8890: neither lesson 3's server nor lesson
/// 4's can restart (the TIME-WAIT socket was bound without SO_REUSEADDR).
#[test]
fn capture_2_server_killed_first_keeps_time_wait() {
    let Some(lab) = two_vms("capture_2_server_killed_first_keeps_time_wait") else {
        return;
    };
    let capture = capture_echo_port(&lab);
    let mut server = start_server_in(&lab, "vm1", "server", "lesson3-server");
    let mut client = start_client_in(&lab, "vm2", "client");
    client.type_line("hello");
    client.expect_stdout_line("client receive: hello");
    capture.wait_for("Flags [P.], seq 1:7, ack 7,").unwrap();
    capture.wait_for("Flags [.], ack 7,").unwrap();

    capture.note("vm1: the server is killed (Ctrl+C); its kernel closes the connection");
    server.signal(nix::sys::signal::Signal::SIGINT);
    server.wait_exit();
    capture
        .wait_for("IP 192.168.126.129.8890 > 192.168.126.128.50001: Flags [F.], seq 7, ack 7,")
        .or_else(|_| capture.wait_for("Flags [F.], seq 7, ack 7,"))
        .unwrap();
    capture.wait_for("Flags [.], ack 8,").unwrap();
    let orphan = wait_for_state(&lab, "vm1", ECHO_PORT, "FIN-WAIT-2");
    capture.note(&format!("ss on vm1: {}", first_word(&orphan)));

    capture.note("vm1: a new lesson3-server --bind 0.0.0.0:8890");
    let mut again = start_in(&lab, "vm1", "restart", "lesson3-server", &ECHO_BIND);
    assert!(!again.wait_exit().success());
    let error = again.expect_stderr_line("error:");
    assert!(error.contains("Address already in use"), "{error}");
    capture.note(&format!("  {error}"));

    capture.note("vm2: the client types exit and closes its socket");
    client.type_line("exit");
    client.wait_exit();
    capture.wait_for("Flags [F.], seq 7, ack 8,").unwrap();
    capture.wait_for("Flags [.], ack 8,").unwrap();
    let time_wait = wait_for_state(&lab, "vm1", ECHO_PORT, "TIME-WAIT");
    capture.note(&format!(
        "ss on vm1 (the side that closed first): {}",
        first_word(&time_wait)
    ));
    assert!(
        ss_tcp(&lab, "vm2", ECHO_PORT)
            .iter()
            .all(|line| !line.starts_with("TIME-WAIT")),
        "the client closed second: no TIME-WAIT on vm2"
    );

    // SO_REUSEADDR does not help here: on Linux, bind may take the port of
    // a TIME-WAIT socket only if that socket had the option set too, and
    // lesson 3's did not. Lesson 4's fix works when lesson 4 restarts.
    capture.note("vm1: lesson3-server, then lesson4-server (SO_REUSEADDR), --bind 0.0.0.0:8890:");
    for bin in ["lesson3-server", "lesson4-server"] {
        let mut refused = start_in(&lab, "vm1", bin, bin, &ECHO_BIND);
        assert!(!refused.wait_exit().success());
        let error = refused.expect_stderr_line("error:");
        assert!(error.contains("Address already in use"), "{error}");
        capture.note(&format!("  {bin}: {error}"));
    }
    let text = render(
        capture,
        "# tcpdump -n -t -i eth0 tcp port 8890   (on vm1: the server is killed before its client leaves)",
    );
    check_generated("capture-2-restart.txt", &text);
}

fn first_word(line: &str) -> &str {
    line.split(' ').next().unwrap_or_default()
}

/// Capture 3: with SO_LINGER set to 0 seconds, close() resets the
/// connection: an RST goes out instead of a FIN, and the other side's next
/// read fails with ECONNRESET.
#[test]
fn capture_3_so_linger_zero_sends_rst() {
    let Some(lab) = two_vms("capture_3_so_linger_zero_sends_rst") else {
        return;
    };
    let capture = capture_echo_port(&lab);
    let (client, mut accepted) = connection_vm2_to_vm1(&lab, &capture);
    accepted.set_read_timeout(Some(testkit::DEADLINE)).unwrap();

    capture.note("vm2: setsockopt(SO_LINGER, on, 0 s), then close()");
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::Linger, &linger).unwrap();
    drop(client);
    let rst = capture.wait_for("Flags [R.]").unwrap();
    assert!(
        rst.starts_with("IP 192.168.126.128."),
        "the RST comes from vm2: {rst}"
    );
    let err = accepted.read(&mut [0; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    capture.note(&format!("vm1: the server's next read fails: {err}"));
    assert!(
        ss_tcp(&lab, "vm2", ECHO_PORT).is_empty(),
        "no TIME-WAIT after a reset"
    );
    capture.note("ss on vm2: nothing left (no TIME-WAIT after a reset)");
    let text = render(
        capture,
        "# tcpdump -n -t -i eth0 tcp port 8890   (on vm1: the client on vm2 closes with SO_LINGER 0)",
    );
    check_generated("capture-3-linger-rst.txt", &text);
}

/// Capture 4: writing to a connection the peer has closed. The first write
/// succeeds (the kernel takes the bytes); the peer's socket is still there,
/// in FIN-WAIT-2, but it was closed, so its kernel answers the data with an
/// RST and drops it; the next write fails with EPIPE (in a C program that
/// has not ignored SIGPIPE, the signal would kill it first).
#[test]
fn capture_4_write_after_peer_closed_rst_then_epipe() {
    let Some(lab) = two_vms("capture_4_write_after_peer_closed_rst_then_epipe") else {
        return;
    };
    let capture = capture_echo_port(&lab);
    let (mut client, accepted) = connection_vm2_to_vm1(&lab, &capture);

    capture.note("vm1: the server closes the connection");
    drop(accepted);
    capture.wait_for("Flags [F.], seq 1, ack 1,").unwrap();
    capture.wait_for("Flags [.], ack 2,").unwrap();
    let orphan = wait_for_state(&lab, "vm1", ECHO_PORT, "FIN-WAIT-2");
    capture.note(&format!("ss on vm1: {}", first_word(&orphan)));
    capture.note("vm2: write(\"first\") succeeds: the kernel took the 5 bytes");
    assert_eq!(client.write(b"first").unwrap(), 5);
    capture.wait_for("Flags [P.], seq 1:6, ack 2,").unwrap();
    let rst = capture.wait_for("Flags [R]").unwrap();
    assert!(
        rst.starts_with("IP 192.168.126.129."),
        "the RST comes from vm1: {rst}"
    );
    // The RST ended vm1's FIN-WAIT-2 socket (bounded wait: the kernel
    // unhashes it just after sending the RST).
    let deadline = std::time::Instant::now() + testkit::DEADLINE;
    while !ss_tcp(&lab, "vm1", ECHO_PORT).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "vm1 still has {:?}",
            ss_tcp(&lab, "vm1", ECHO_PORT)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    capture.note("ss on vm1: no socket left on port 8890");
    let err = client.write(b"second").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EPIPE), "{err}");
    capture.note(&format!("vm2: write(\"second\") fails: {err}"));
    let text = render(
        capture,
        "# tcpdump -n -t -i eth0 tcp port 8890   (on vm1: the client on vm2 writes after the server closed)",
    );
    check_generated("capture-4-write-after-close.txt", &text);
}

/// Capture 5: a UDP datagram to a port where nothing listens is answered by
/// an ICMP "port unreachable". Lesson 2's unconnected socket never hears of
/// it; a connected socket's next call fails with ECONNREFUSED.
#[test]
fn capture_5_udp_to_a_closed_port_icmp_unreachable() {
    let Some(lab) = two_vms("capture_5_udp_to_a_closed_port_icmp_unreachable") else {
        return;
    };
    let capture = lab.capture("vm1", "eth0", &[], "udp or icmp").unwrap();
    let (a, b) = (vm1(PORT_A), vm2(PORT_B));
    capture.note(&format!(
        "vm1$ lesson2-chat --bind {a} --peer {b}   (nothing runs on vm2)"
    ));
    let mut peer = start_peer_in(&lab, "vm1", "peer A", "lesson2-chat", a, b);
    peer.type_line("hello?");
    capture.wait_for("UDP, length 6").unwrap();
    let icmp = capture.wait_for("ICMP").unwrap();
    assert!(icmp.contains("udp port 55577 unreachable"), "{icmp}");
    // The receiver thread polls every 100 ms: give it several turns.
    std::thread::sleep(Duration::from_millis(500));
    peer.type_line("quit");
    assert!(peer.wait_exit().success());
    assert_eq!(
        peer.stderr(),
        "",
        "an unconnected UDP socket is told nothing of the ICMP error"
    );
    capture.note("lesson 2's peer printed nothing: its socket is not connected");

    capture.note("vm1: a connected UDP socket: connect(vm2:55577), send(\"hello?\"), recv()");
    let socket = lab.in_host("vm1", || UdpSocket::bind(vm1(PORT_A)).unwrap());
    socket.connect(vm2(PORT_B)).unwrap();
    socket.set_read_timeout(Some(testkit::DEADLINE)).unwrap();
    socket.send(b"hello?").unwrap();
    capture.wait_for("UDP, length 6").unwrap();
    capture.wait_for("ICMP").unwrap();
    let err = socket.recv(&mut [0; 64]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    capture.note(&format!("  recv fails: {err}"));
    let text = render(capture, "# tcpdump -n -t -i eth0 udp or icmp   (on vm1)");
    check_generated("capture-5-udp-unreachable.txt", &text);
}

/// Capture 6: a 60,000-byte line typed into lesson 2 leaves vm1 as one
/// datagram cut into 41 IP fragments at MTU 1500, and vm2 reassembles it.
/// Then vm2's firewall drops one fragment: the whole datagram is lost, and
/// when vm2 gives up reassembling it (after net.ipv4.ipfrag_time, set to 1 s
/// here instead of 30), it tells vm1 with an ICMP "time exceeded".
#[test]
fn capture_6_fragments_all_or_nothing() {
    let Some(lab) = two_vms("capture_6_fragments_all_or_nothing") else {
        return;
    };
    lab.sysctl("vm2", "net.ipv4.ipfrag_time", "1").unwrap();
    let capture = lab.capture("vm1", "eth0", &["-v"], "udp or icmp").unwrap();
    let receiver = lab.in_host("vm2", || UdpSocket::bind(vm2(PORT_B)).unwrap());
    receiver.set_read_timeout(Some(testkit::DEADLINE)).unwrap();
    let mut peer = start_peer_in(
        &lab,
        "vm1",
        "peer A",
        "lesson2-chat",
        vm1(PORT_A),
        vm2(PORT_B),
    );
    let line = "x".repeat(60_000);

    capture.note("vm1: lesson 2's peer A sends a 60,000-byte line to vm2:55577");
    peer.type_line(&line);
    let mut buffer = vec![0; 65_536];
    let (len, _) = receiver.recv_from(&mut buffer).unwrap();
    assert_eq!(len, 60_000, "the datagram arrives whole");
    // With -v each packet takes two lines; the last fragment starts at
    // 40 × 1480 bytes.
    capture.wait_for("offset 59200, flags [none]").unwrap();
    capture.note("vm2: recvfrom returns all 60000 bytes");

    capture.note("vm2: nft drops the fragment at offset 1480 (ip frag-off & 0x1fff == 185)");
    lab.nft(
        "vm2",
        "table netdev drop_one {\n\
         \tchain ingress {\n\
         \t\ttype filter hook ingress device \"eth0\" priority 0;\n\
         \t\tip frag-off & 0x1fff == 185 drop\n\
         \t}\n}\n",
    )
    .unwrap();
    capture.note("vm1: the same line again");
    peer.type_line(&line);
    capture.wait_for("offset 59200, flags [none]").unwrap();
    capture.wait_for("ip reassembly time exceeded").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let err = receiver.recv_from(&mut buffer).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "nothing arrives: {err}");
    capture.note("vm2: recvfrom gets nothing: 40 of 41 fragments arrived, the datagram did not");
    peer.type_line("quit");
    assert!(peer.wait_exit().success());

    let text = render(
        capture,
        "# tcpdump -n -t -v -i eth0 udp or icmp   (on vm1; MTU 1500)",
    );
    let fragments = text
        .lines()
        .filter(|line| line.contains("proto UDP (17)") && !line.contains("ICMP"))
        .count();
    assert_eq!(fragments, 82, "41 fragments per datagram:\n{text}");
    check_generated("capture-6-fragments.txt", &text);
}

/// The other half of capture 5's claim: with the IP_RECVERR option (ip(7)),
/// an unconnected UDP socket does hear of the ICMP "port unreachable": its
/// next receive fails with ECONNREFUSED.
#[test]
fn an_unconnected_socket_with_ip_recverr_hears_of_the_icmp_error() {
    let Some(lab) = two_vms("an_unconnected_socket_with_ip_recverr_hears_of_the_icmp_error") else {
        return;
    };
    let socket = lab.in_host("vm1", || UdpSocket::bind(vm1(PORT_A)).unwrap());
    socket.set_read_timeout(Some(testkit::DEADLINE)).unwrap();
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv4RecvErr, &true).unwrap();
    socket.send_to(b"hello?", vm2(PORT_B)).unwrap();
    let err = socket.recv_from(&mut [0; 64]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}
