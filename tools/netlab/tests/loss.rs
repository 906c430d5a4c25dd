//! Loss on the link: an nftables rule drops 10 % of the IPv4 packets that
//! arrive at each host. UDP loses messages and nobody is told; TCP
//! retransmits until every byte is delivered. The counts vary run to run,
//! so the tests check bounds, and the book's summary
//! (docs/src/generated/lab-loss.txt) states the set-up and those bounds.

mod common;

use common::*;
use testkit::check_generated;
use testkit::tcp::{assert_echo, random_bytes};

/// The loss rate on each end of the link, in percent.
const LOSS: u32 = 10;
/// Messages typed into the UDP chat.
const MESSAGES: usize = 200;
/// At 10 % loss, 180 of 200 arrive on average (standard deviation 4.2);
/// these bounds lie more than 4.5 deviations away on either side.
const DELIVERED: std::ops::RangeInclusive<usize> = 160..=199;
/// Bytes sent through the TCP echo.
const ECHO_BYTES: usize = 200_000;

fn add_loss_both_ways(lab: &netlab::Lab) {
    for host in ["vm1", "vm2"] {
        lab.add_loss(host, "eth0", LOSS).expect("add the loss rule");
    }
}

/// Lesson 2's chat from vm1 to vm2 under 10 % loss: some messages never
/// arrive, and neither peer says a word about it.
#[test]
fn udp_chat_loses_messages_silently() {
    let Some(lab) = two_vms("udp_chat_loses_messages_silently") else {
        return;
    };
    let a = vm1(PORT_A);
    let (mut peer_a, mut peer_b) = start_peers_on_both_vms(&lab, "lesson2-chat");

    add_loss_both_ways(&lab);
    for n in 1..=MESSAGES {
        peer_a.type_line(&format!("message {n}"));
        // The prompt comes back once the message is sent: one at a time,
        // as a person would type them.
        peer_a.expect_stdout(testkit::udp::PROMPT);
    }
    // Without loss again, one last message; datagrams on one link arrive in
    // order, so once it is printed every earlier one that survived is too.
    for host in ["vm1", "vm2"] {
        lab.remove_loss(host, "eth0").unwrap();
    }
    peer_a.type_line("the end");
    peer_b.expect_stdout_line("the end");

    let printed = peer_b.stdout();
    let received: Vec<usize> = printed
        .lines()
        .filter_map(|line| line.split_once(&format!("[from {a}] message ")))
        .map(|(_, n)| n.trim().parse().unwrap())
        .collect();
    eprintln!(
        "udp: {} of {MESSAGES} messages arrived at {LOSS} % loss",
        received.len()
    );
    assert!(
        DELIVERED.contains(&received.len()),
        "{} of {MESSAGES} messages arrived; expected {DELIVERED:?} at {LOSS} % loss",
        received.len()
    );
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    // Every loss was the rule's: none for want of room in peer B's socket.
    assert_eq!(snmp_counter(&lab, "vm2", "Udp", "RcvbufErrors"), 0);
    for peer in [&mut peer_a, &mut peer_b] {
        peer.type_line("quit");
        assert!(peer.wait_exit().success(), "{}", peer.describe());
        assert_eq!(peer.stderr(), "", "no peer is told of the loss");
    }
    check_generated(
        "lab-loss-udp.txt",
        &format!(
            "# on vm1 and vm2: nft … meta protocol ip numgen random mod 100 < {LOSS} drop\n\
         vm1: lesson 2's peer A sends {MESSAGES} messages to vm2, one per line typed\n\
         vm2: peer B prints between {} and {} of them (each run loses a different few)\n\
         both: no error, no warning: sendto succeeded {MESSAGES} times, and nobody is told\n",
            DELIVERED.start(),
            DELIVERED.end()
        ),
    );
}

/// Lesson 3's echo server on vm1 and a client on vm2 under 10 % loss each
/// way: every byte comes back, in order, because TCP retransmits what was
/// lost; the kernel's counter of retransmitted segments shows it did.
#[test]
fn tcp_echo_delivers_every_byte_with_retransmissions() {
    let Some(lab) = two_vms("tcp_echo_delivers_every_byte_with_retransmissions") else {
        return;
    };
    let _server = start_server_in(&lab, "vm1", "server", "lesson3-server");
    add_loss_both_ways(&lab);
    let stream = lab.in_host("vm2", || testkit::tcp::connect(vm1(ECHO_PORT)));
    let started = std::time::Instant::now();
    assert_echo(&stream, &random_bytes(6, ECHO_BYTES));
    let retransmitted =
        tcp_counter(&lab, "vm1", "RetransSegs") + tcp_counter(&lab, "vm2", "RetransSegs");
    let sent = tcp_counter(&lab, "vm1", "OutSegs") + tcp_counter(&lab, "vm2", "OutSegs");
    eprintln!(
        "tcp: {ECHO_BYTES} bytes echoed in {:?}; {retransmitted} of {sent} segments retransmitted",
        started.elapsed()
    );
    assert!(retransmitted >= 1, "10 % loss and not one retransmission?");
    assert!(
        retransmitted * 2 < sent,
        "{retransmitted} of {sent} segments retransmitted: far more than 10 % loss explains"
    );
    check_generated(
        "lab-loss-tcp.txt",
        &format!(
            "# on vm1 and vm2: nft … meta protocol ip numgen random mod 100 < {LOSS} drop\n\
         vm1: lesson3-server --bind 0.0.0.0:8890\n\
         vm2: a client sends {ECHO_BYTES} bytes and reads the echo\n\
         vm2: all {ECHO_BYTES} bytes come back, in order\n\
         vm1 + vm2: TcpRetransSegs (segments sent again) is above 0, and below half of OutSegs\n"
        ),
    );
}
