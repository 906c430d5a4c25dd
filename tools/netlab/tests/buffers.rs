//! The lab's TCP buffer settings, checked: it pins the three numbers of
//! `net.ipv4.tcp_rmem` and `net.ipv4.tcp_wmem` (minimum, initial, maximum)
//! in every host, so that every machine starts from the same ones, but the
//! kernel still sizes each connection's buffers between them as the
//! connection goes (tcp(7): `tcp_moderate_rcvbuf`, on by default, and the
//! send buffer's own growth). The two-machines chapter says so.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

use common::*;
use nix::sys::socket::{getsockopt, sockopt};

/// The three numbers of a buffer sysctl, as the kernel of `host` holds them.
fn buffer_sysctl(lab: &netlab::Lab, host: &str, key: &str) -> [usize; 3] {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let text = lab.in_host(host, || {
        std::fs::read_to_string(&path).expect("read the sysctl")
    });
    let numbers: Vec<usize> = text
        .split_whitespace()
        .map(|number| number.parse().expect("a number"))
        .collect();
    numbers.try_into().expect("three numbers")
}

/// What the lab writes for `key` (`DEFAULT_SYSCTLS`), as three numbers.
fn pinned(key: &str) -> [usize; 3] {
    let (_, value) = netlab::DEFAULT_SYSCTLS
        .iter()
        .find(|(name, _)| *name == key)
        .expect("the lab pins this sysctl");
    let numbers: Vec<usize> = value
        .split_whitespace()
        .map(|number| number.parse().expect("a number"))
        .collect();
    numbers.try_into().expect("three numbers")
}

#[test]
fn the_lab_pins_the_buffer_ranges_and_the_kernel_still_autotunes() {
    let Some(lab) = two_vms("the_lab_pins_the_buffer_ranges_and_the_kernel_still_autotunes") else {
        return;
    };
    let rmem = buffer_sysctl(&lab, "vm1", "net.ipv4.tcp_rmem");
    let wmem = buffer_sysctl(&lab, "vm2", "net.ipv4.tcp_wmem");
    assert_eq!(rmem, pinned("net.ipv4.tcp_rmem"));
    assert_eq!(wmem, pinned("net.ipv4.tcp_wmem"));
    let moderate = lab.in_host("vm1", || {
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_moderate_rcvbuf").expect("read it")
    });
    assert_eq!(moderate.trim(), "1", "the lab leaves receive autotuning on");

    // vm2 sends 32 MiB to vm1, which reads as fast as it can.
    let listener = lab.in_host("vm1", || TcpListener::bind(vm1(0)).expect("listen on vm1"));
    let server = listener.local_addr().unwrap();
    let client = lab.in_host("vm2", || TcpStream::connect(server).expect("connect"));
    let (mut accepted, _) = listener.accept().expect("accept on vm1");
    let first_rcvbuf = getsockopt(&accepted, sockopt::RcvBuf).unwrap();
    assert_eq!(
        first_rcvbuf, rmem[1],
        "a receive buffer starts at tcp_rmem's second number"
    );

    const TOTAL: usize = 32 << 20;
    let sender = thread::spawn(move || {
        let mut client = client;
        let chunk = vec![7u8; 64 << 10];
        for _ in 0..TOTAL / chunk.len() {
            client.write_all(&chunk).expect("send");
        }
        client.shutdown(Shutdown::Write).expect("shutdown");
        getsockopt(&client, sockopt::SndBuf).unwrap()
    });
    accepted
        .set_read_timeout(Some(testkit::DEADLINE))
        .expect("read timeout");
    let mut buffer = vec![0u8; 1 << 20];
    let mut received = 0;
    loop {
        match accepted.read(&mut buffer).expect("receive") {
            0 => break,
            n => received += n,
        }
    }
    assert_eq!(received, TOTAL);
    let last_rcvbuf = getsockopt(&accepted, sockopt::RcvBuf).unwrap();
    let sndbuf = sender.join().unwrap();
    eprintln!("vm1's receive buffer: {first_rcvbuf} -> {last_rcvbuf}; vm2's send buffer: {sndbuf}");
    assert!(
        first_rcvbuf < last_rcvbuf && last_rcvbuf <= rmem[2],
        "the receive buffer grew from {first_rcvbuf} to {last_rcvbuf}, within tcp_rmem {rmem:?}"
    );
    assert!(
        wmem[1] < sndbuf && sndbuf <= wmem[2],
        "the send buffer grew from {} to {sndbuf}, within tcp_wmem {wmem:?}",
        wmem[1]
    );
}
