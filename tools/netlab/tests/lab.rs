//! The lab itself: the post's two machines, names no other lab uses, and
//! nothing left behind, even when a test panics.

mod common;

use std::net::UdpSocket;
use std::path::Path;

use common::*;
use netlab::{Lab, Topology};

/// vm1 and vm2 carry the post's addresses on one link with MTU 1500 (their
/// loopback has 65536), and a datagram from one reaches the other.
#[test]
fn the_two_vms_have_the_posts_addresses_on_one_link_with_mtu_1500() {
    let Some(lab) = two_vms("the_two_vms_have_the_posts_addresses_on_one_link_with_mtu_1500")
    else {
        return;
    };
    for (host, address) in [("vm1", VM1), ("vm2", VM2)] {
        let addresses = lab
            .run(host, &["ip", "-br", "-4", "addr", "show", "eth0"])
            .unwrap();
        assert!(
            addresses.contains(&format!("{address}/24")),
            "{host}: {addresses}"
        );
        let link = lab.run(host, &["ip", "link", "show", "eth0"]).unwrap();
        assert!(link.contains("mtu 1500"), "{host}: {link}");
        let loopback = lab.run(host, &["ip", "link", "show", "lo"]).unwrap();
        assert!(loopback.contains("mtu 65536"), "{host}: {loopback}");
        let timestamps = lab
            .run(host, &["cat", "/proc/sys/net/ipv4/tcp_timestamps"])
            .unwrap();
        assert_eq!(timestamps.trim(), "0", "{host}: TCP timestamps are off");
    }
    let receiver = lab.in_host("vm2", || UdpSocket::bind(vm2(PORT_B)).unwrap());
    receiver.set_read_timeout(Some(testkit::DEADLINE)).unwrap();
    let sender = lab.in_host("vm1", || UdpSocket::bind(vm1(PORT_A)).unwrap());
    sender.send_to(b"over the veth", vm2(PORT_B)).unwrap();
    let mut buffer = [0; 64];
    let (len, from) = receiver.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..len], b"over the veth");
    assert_eq!(from, vm1(PORT_A), "the datagram comes from vm1's address");
}

/// Two labs at once (as parallel tests build them) get different
/// namespaces: both bind the same address and port, and each vm2 reaches
/// its own vm1 only.
#[test]
fn two_labs_at_once_never_collide() {
    let Some(first) = two_vms("two_labs_at_once_never_collide") else {
        return;
    };
    let second = Lab::up(&Topology::two_vms()).unwrap();
    assert_ne!(first.namespace("vm1"), second.namespace("vm1"));
    let sockets: Vec<UdpSocket> = [&first, &second]
        .iter()
        .map(|lab| {
            let socket = lab.in_host("vm1", || UdpSocket::bind(vm1(PORT_A)).unwrap());
            socket
                .set_read_timeout(Some(std::time::Duration::from_millis(300)))
                .unwrap();
            socket
        })
        .collect();
    let sender = second.in_host("vm2", || UdpSocket::bind(vm2(PORT_B)).unwrap());
    sender.send_to(b"to the second lab", vm1(PORT_A)).unwrap();
    let mut buffer = [0; 64];
    let (len, _) = sockets[1].recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..len], b"to the second lab");
    assert!(
        sockets[0].recv_from(&mut buffer).is_err(),
        "the first lab's vm1 must not hear the second lab's vm2"
    );
}

/// Every namespace goes when the guard is dropped, also when the test
/// holding it panics, and with it whatever still ran inside.
#[test]
fn no_namespace_is_left_behind_even_after_a_panic() {
    let Some(lab) = two_vms("no_namespace_is_left_behind_even_after_a_panic") else {
        return;
    };
    let mut names: Vec<String> = ["vm1", "vm2"]
        .map(|host| lab.namespace(host).to_owned())
        .to_vec();
    // Something still running inside: the guard must not wait for it.
    let mut sleeper = lab.command("vm1", "sleep");
    let mut sleeper = sleeper.arg("60").spawn().unwrap();
    drop(lab);
    let panicked = std::thread::spawn(|| {
        let lab = Lab::up(&Topology::two_vms()).unwrap();
        let names = ["vm1", "vm2"].map(|host| lab.namespace(host).to_owned());
        // A panic that unwinds through the guard, as a failing assertion
        // would (resume_unwind: without the panic hook's message).
        std::panic::resume_unwind(Box::new(names));
    })
    .join()
    .unwrap_err();
    let panicked_names = panicked.downcast::<[String; 2]>().unwrap();
    names.extend(panicked_names.iter().cloned());

    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in &names {
        assert!(
            !listed
                .lines()
                .any(|line| line.split(' ').next() == Some(name)),
            "namespace {name} is still listed:\n{listed}"
        );
        assert!(!Path::new("/run/netns").join(name).exists(), "{name}");
    }
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "the process inside was killed");
}
