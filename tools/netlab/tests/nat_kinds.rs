//! Every NAT kind of lesson 7's scene (netlab's `p2p` module) does what its
//! name says, in RFC 4787's terms, shown with plain UDP sockets in the
//! scene's hosts: the mapping by the public endpoints servers on the
//! internet see, the filtering by who may answer a mapped port, hairpinning
//! by a neighbour's public endpoint, the port range by the ports used, and
//! the routed hop by a probe whose TTL runs out between the homes. Each
//! test builds its own scene and removes it; every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use netlab::nat::{conntrack_udp, unsolicited_drops};
use netlab::p2p::{
    ALICE, CAROL, HOME_BEHIND_CGNAT, INTERNET_SITE1, NARROW_BASE, Nat, PEER_PORT, RENDEZVOUS_IP,
    SECOND_IP, SITE1_PUBLIC, SITE2_PUBLIC,
};
use netlab::{Lab, Topology, lab_for_test};

/// How long a datagram that should not arrive is waited for: the scene's
/// round trip is well under a millisecond.
const QUIET: Duration = Duration::from_millis(400);

fn scene(nat1: &str, nat2: &str, test: &str) -> Option<Lab> {
    let topology = Topology::p2p_scene(nat1.parse().unwrap(), nat2.parse().unwrap());
    lab_for_test(&topology, test)
}

fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// A UDP socket bound to `bind` inside `host`.
fn socket(lab: &Lab, host: &str, bind: SocketAddr) -> UdpSocket {
    let sock = lab.in_host(host, || UdpSocket::bind(bind)).unwrap();
    sock.set_read_timeout(Some(QUIET)).unwrap();
    sock
}

/// What `sock` receives until nothing has come for [`QUIET`]: each
/// datagram's text and source.
fn drain(sock: &UdpSocket) -> Vec<(String, SocketAddr)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => got.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from)),
            Err(_) => break,
        }
    }
    got
}

/// The source `server` sees for one datagram `sock` sends it.
fn seen_by(sock: &UdpSocket, server: &UdpSocket) -> SocketAddr {
    sock.send_to(b"hello", server.local_addr().unwrap())
        .unwrap();
    let got = drain(server);
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].1
}

/// `host`'s socket on [`PEER_PORT`] sends to three servers (two ports of
/// one address, and a second address); the public endpoints they saw.
fn public_endpoints(lab: &Lab, host: &str) -> Vec<SocketAddr> {
    let sock = socket(lab, host, at(Ipv4Addr::UNSPECIFIED, PEER_PORT));
    [
        at(RENDEZVOUS_IP, 7001),
        at(RENDEZVOUS_IP, 7002),
        at(SECOND_IP, 7001),
    ]
    .into_iter()
    .map(|server| seen_by(&sock, &socket(lab, "rendezvous", server)))
    .collect()
}

/// Endpoint-independent mapping, with and without port preservation:
/// one socket gets one public endpoint, whatever the destination; with
/// preservation its port is the private one, without it another.
#[test]
fn eim_keeps_one_public_port_for_every_destination_preserved_or_not() {
    let test = "eim_keeps_one_public_port_for_every_destination_preserved_or_not";
    let Some(lab) = scene("eim-apdf", "eim-apdf+no-pp", test) else {
        return;
    };
    let alice = public_endpoints(&lab, "alice");
    assert!(
        alice
            .iter()
            .all(|seen| *seen == at(SITE1_PUBLIC, PEER_PORT)),
        "{alice:?}"
    );
    let bob = public_endpoints(&lab, "bob");
    assert!(bob.iter().all(|seen| *seen == bob[0]), "{bob:?}");
    assert_eq!(bob[0].ip(), SITE2_PUBLIC);
    assert_ne!(bob[0].port(), PEER_PORT, "no port preservation: {bob:?}");
}

/// A second socket with the same private port behind the same router (a
/// neighbour) cannot have the preserved port: it gets another, and keeps
/// that one for every destination too (the `out` map, not luck).
#[test]
fn eim_keeps_the_mapping_of_a_neighbour_whose_port_was_taken() {
    let test = "eim_keeps_the_mapping_of_a_neighbour_whose_port_was_taken";
    let Some(lab) = scene("eim-apdf", "none", test) else {
        return;
    };
    let alice = public_endpoints(&lab, "alice");
    let carol = public_endpoints(&lab, "carol");
    assert!(
        alice
            .iter()
            .all(|seen| *seen == at(SITE1_PUBLIC, PEER_PORT)),
        "{alice:?}"
    );
    assert!(carol.iter().all(|seen| *seen == carol[0]), "{carol:?}");
    assert_ne!(carol[0], alice[0]);
}

/// Address-and-port-dependent mapping ("symmetric"): every destination
/// endpoint, even another port of the same address, gets its own port.
#[test]
fn apdm_gives_each_destination_its_own_public_port() {
    let test = "apdm_gives_each_destination_its_own_public_port";
    let Some(lab) = scene("apdm-apdf", "none", test) else {
        return;
    };
    let seen = public_endpoints(&lab, "alice");
    let ports: BTreeSet<u16> = seen.iter().map(SocketAddr::port).collect();
    assert_eq!(ports.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|s| s.ip() == SITE1_PUBLIC), "{seen:?}");
}

/// `+ports=N` narrows the public ports: 40 destinations of a symmetric
/// NAT take 40 ports, all from the N; an endpoint-independent NAT whose
/// range leaves out the private port takes one from it.
#[test]
fn a_narrowed_range_supplies_every_public_port() {
    let test = "a_narrowed_range_supplies_every_public_port";
    let Some(lab) = scene("apdm-apdf+ports=64", "eim-apdf+ports=64", test) else {
        return;
    };
    let range = NARROW_BASE..NARROW_BASE + 64;
    let sock = socket(&lab, "alice", at(Ipv4Addr::UNSPECIFIED, PEER_PORT));
    let mut ports = BTreeSet::new();
    for n in 0..40u16 {
        let server = socket(&lab, "rendezvous", at(RENDEZVOUS_IP, 30000 + n));
        ports.insert(seen_by(&sock, &server).port());
    }
    assert!(ports.len() >= 20, "{ports:?}");
    assert!(ports.iter().all(|port| range.contains(port)), "{ports:?}");
    let bob = public_endpoints(&lab, "bob");
    assert!(bob.iter().all(|seen| *seen == bob[0]), "{bob:?}");
    assert!(range.contains(&bob[0].port()), "{bob:?}");
}

/// Who may answer `host`'s mapped port, once it has sent to
/// 192.0.2.10:7001: that endpoint, another port of that address, another
/// address. The three send first the unsolicited ones, then the answer.
fn who_may_answer(lab: &Lab, host: &str) -> (SocketAddr, [bool; 3]) {
    let sock = socket(lab, host, at(Ipv4Addr::UNSPECIFIED, PEER_PORT));
    let sent_to = socket(lab, "rendezvous", at(RENDEZVOUS_IP, 7001));
    let same_address = socket(lab, "rendezvous", at(RENDEZVOUS_IP, 7002));
    let other_address = socket(lab, "rendezvous", at(SECOND_IP, 7001));
    let public = seen_by(&sock, &sent_to);
    other_address.send_to(b"other address", public).unwrap();
    same_address.send_to(b"other port", public).unwrap();
    sent_to.send_to(b"answer", public).unwrap();
    let got: Vec<String> = drain(&sock).into_iter().map(|(text, _)| text).collect();
    let arrived = |text: &str| got.iter().any(|t| t == text);
    (
        public,
        [
            arrived("answer"),
            arrived("other port"),
            arrived("other address"),
        ],
    )
}

/// Endpoint-independent filtering ("full cone") lets anyone answer;
/// address-dependent lets any port of an address sent to.
#[test]
fn eif_admits_anyone_and_adf_any_port_of_an_address_sent_to() {
    let test = "eif_admits_anyone_and_adf_any_port_of_an_address_sent_to";
    let Some(lab) = scene("eim-eif", "eim-adf", test) else {
        return;
    };
    assert_eq!(who_may_answer(&lab, "alice").1, [true, true, true]);
    assert_eq!(who_may_answer(&lab, "bob").1, [true, true, false]);
    assert_eq!(unsolicited_drops(&lab, "router2").unwrap(), 1);
}

/// Address-and-port-dependent filtering (conntrack's own) admits only the
/// endpoint sent to, and counts the rest as unsolicited; with no NAT
/// everyone gets through to the host's own address.
#[test]
fn apdf_admits_only_the_endpoint_sent_to_and_none_admits_all() {
    let test = "apdf_admits_only_the_endpoint_sent_to_and_none_admits_all";
    let Some(lab) = scene("eim-apdf", "none", test) else {
        return;
    };
    assert_eq!(who_may_answer(&lab, "alice").1, [true, false, false]);
    assert_eq!(unsolicited_drops(&lab, "router1").unwrap(), 2);
    let (public, arrived) = who_may_answer(&lab, "bob");
    assert_eq!(arrived, [true, true, true]);
    assert_eq!(public, at(Ipv4Addr::new(203, 0, 113, 130), PEER_PORT));
}

/// alice sends to carol's public endpoint. With hairpinning carol gets it
/// from alice's public endpoint; without, it never reaches her.
fn hairpin(lab: &Lab) -> Vec<(String, SocketAddr)> {
    let rendezvous = socket(lab, "rendezvous", at(RENDEZVOUS_IP, 7001));
    let alice = socket(lab, "alice", at(ALICE, PEER_PORT));
    let carol = socket(lab, "carol", at(CAROL, PEER_PORT + 1));
    let alice_public = seen_by(&alice, &rendezvous);
    let carol_public = seen_by(&carol, &rendezvous);
    alice.send_to(b"hairpin", carol_public).unwrap();
    let got = drain(&carol);
    for (_, from) in &got {
        assert_eq!(*from, alice_public);
    }
    got
}

#[test]
fn hairpinning_takes_a_neighbours_public_endpoint_back_inside() {
    let test = "hairpinning_takes_a_neighbours_public_endpoint_back_inside";
    let Some(lab) = scene("eim-apdf+hairpin", "none", test) else {
        return;
    };
    let got = hairpin(&lab);
    eprintln!(
        "{}",
        lab.run("router1", &["nft", "list", "table", "ip", "nat"])
            .unwrap()
    );
    eprintln!("{:#?}", conntrack_udp(&lab, "router1").unwrap());
    assert_eq!(got.len(), 1);
}

#[test]
fn without_hairpinning_a_neighbours_public_endpoint_is_unreachable() {
    let test = "without_hairpinning_a_neighbours_public_endpoint_is_unreachable";
    let Some(lab) = scene("eim-apdf", "none", test) else {
        return;
    };
    assert_eq!(hairpin(&lab), Vec::new());
}

/// Two layers: the internet sees the carrier's address, the home router
/// translates into the shared address space 100.64.0.0/10, and the
/// mapping through both stays endpoint-independent.
#[test]
fn cgnat_translates_twice_and_keeps_one_public_endpoint() {
    let test = "cgnat_translates_twice_and_keeps_one_public_endpoint";
    let Some(lab) = scene("cgnat", "none", test) else {
        return;
    };
    let seen = public_endpoints(&lab, "alice");
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    assert_eq!(seen[0].ip(), SITE1_PUBLIC);
    let home = conntrack_udp(&lab, "router1").unwrap();
    assert!(
        home.iter()
            .any(|entry| entry.contains(&format!("dst={HOME_BEHIND_CGNAT}"))),
        "{home:#?}"
    );
}

/// The internet is a router: a datagram sent with TTL 2 leaves alice's
/// NAT (which maps it) and expires there, before bob's router; the same
/// datagram with the default TTL reaches bob's router, whose firewall
/// drops it.
#[test]
fn a_probe_with_ttl_2_leaves_its_nat_and_expires_before_the_other() {
    let test = "a_probe_with_ttl_2_leaves_its_nat_and_expires_before_the_other";
    let Some(lab) = scene("eim-apdf", "eim-apdf", test) else {
        return;
    };
    let capture = lab.capture("internet", "site1", &[], "icmp").unwrap();
    let sock = socket(&lab, "alice", at(Ipv4Addr::UNSPECIFIED, PEER_PORT));
    sock.set_ttl(2).unwrap();
    sock.send_to(b"probe", at(SITE2_PUBLIC, PEER_PORT)).unwrap();
    capture
        .wait_for(&format!("{INTERNET_SITE1} > {ALICE}: ICMP time exceeded"))
        .or_else(|_| {
            capture.wait_for(&format!(
                "{INTERNET_SITE1} > {SITE1_PUBLIC}: ICMP time exceeded"
            ))
        })
        .unwrap();
    let mapped = conntrack_udp(&lab, "router1").unwrap();
    assert!(
        mapped
            .iter()
            .any(|entry| entry.contains(&format!("dst={SITE2_PUBLIC}"))),
        "{mapped:#?}"
    );
    assert_eq!(unsolicited_drops(&lab, "router2").unwrap(), 0);
    assert!(conntrack_udp(&lab, "router2").unwrap().is_empty());
    sock.set_ttl(64).unwrap();
    sock.send_to(b"probe", at(SITE2_PUBLIC, PEER_PORT)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while unsolicited_drops(&lab, "router2").unwrap() == 0 {
        assert!(Instant::now() < deadline, "the probe never reached router2");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `no-firewall` is lesson 6's masquerade-only router: an unsolicited
/// datagram reaches the router itself, which keeps a conntrack entry.
#[test]
fn no_firewall_takes_an_unsolicited_datagram_for_itself() {
    let test = "no_firewall_takes_an_unsolicited_datagram_for_itself";
    let Some(lab) = scene("no-firewall", "none", test) else {
        return;
    };
    assert!("no-firewall".parse::<Nat>().is_ok());
    let stranger = socket(&lab, "rendezvous", at(RENDEZVOUS_IP, 7001));
    stranger
        .send_to(b"hi", at(SITE1_PUBLIC, PEER_PORT))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let entries = conntrack_udp(&lab, "router1").unwrap();
        if entries
            .iter()
            .any(|e| e.contains(&format!("src={RENDEZVOUS_IP}")) && e.contains("UNREPLIED"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{entries:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
