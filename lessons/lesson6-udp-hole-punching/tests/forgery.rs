//! A forger on the internet of the lab's NAT scene (tools/netlab/src/nat.rs)
//! sends requests to the rendezvous with alice's public endpoint as their
//! source, written by hand in a raw IP packet. Without alice's cookie,
//! which only her endpoint was sent, the rendezvous ignores them: the
//! forger learns nothing about alice, and her registration stays hers.
//!
//! Needs root (or unprivileged user namespaces), like tests/lab.rs.
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{PEER, PROMPT, RENDEZVOUS};
use lesson6_udp_hole_punching::protocol::{self, Cookie, Message};
use netlab::nat::{
    ALICE, Mapping, PEER_PORT, RENDEZVOUS_IP, RENDEZVOUS_PORT, ROUTER1_WAN, ROUTER2_WAN,
};
use netlab::{Lab, Topology, lab_for_test};
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use testkit::Running;

/// mallory's host, on the internet switch next to the rendezvous.
const MALLORY_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
const MALLORY_PORT: u16 = 40666;

/// The NAT scene, plus mallory's host plugged into the internet switch.
fn scene_with_mallory() -> Topology {
    let none = Ipv4Addr::UNSPECIFIED;
    Topology::nat_scene(Mapping::EndpointIndependent, Mapping::EndpointIndependent)
        .host("mallory")
        .link(
            ("internet", "mallory", none, 0),
            ("mallory", "eth0", MALLORY_IP, 24),
            1500,
        )
        .command(
            "internet",
            &["ip", "link", "set", "mallory", "master", "net"],
        )
}

fn rendezvous_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(RENDEZVOUS_IP, RENDEZVOUS_PORT))
}

fn start_peer(lab: &Lab, host: &str, name: &str, peer: &str) -> Running {
    let mut command = lab.command(host, testkit::bin(PEER));
    let bind = format!("0.0.0.0:{PEER_PORT}");
    let rendezvous = rendezvous_addr().to_string();
    command.args(["--bind", &bind, "--rendezvous", &rendezvous]);
    command.args(["--name", name, "--peer-name", peer]);
    let running = Running::start(name, command);
    running.expect_stdout_line("bound to ");
    running
}

/// One UDP datagram inside an IPv4 header, both written by hand, so the
/// source can be any address. The kernel fills in the IP checksum and
/// total length (raw(7)); a UDP checksum of 0 means "none" (RFC 768).
fn forged_datagram(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).unwrap();
    let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    packet
}

/// mallory's two sockets: a plain UDP one, her own, and a raw one
/// (IPPROTO_RAW implies IP_HDRINCL: we write the IP header).
struct Mallory {
    socket: UdpSocket,
    raw: OwnedFd,
}

impl Mallory {
    fn new(lab: &Lab) -> Mallory {
        lab.in_host("mallory", || {
            let socket = UdpSocket::bind((MALLORY_IP, MALLORY_PORT)).unwrap();
            let raw = socket::socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::Raw,
            )
            .unwrap();
            Mallory { socket, raw }
        })
    }

    fn send(&self, message: &Message) {
        let to = rendezvous_addr();
        self.socket.send_to(&message.encode(), to).unwrap();
    }

    /// Sends `payload` to the rendezvous as if from `from`.
    fn forge(&self, from: SocketAddrV4, payload: &[u8]) {
        let to = SocketAddrV4::new(RENDEZVOUS_IP, RENDEZVOUS_PORT);
        let packet = forged_datagram(from, to, payload);
        let dest = SockaddrIn::from(SocketAddrV4::new(RENDEZVOUS_IP, 0));
        let sent = socket::sendto(self.raw.as_raw_fd(), &packet, &dest, MsgFlags::empty());
        assert_eq!(sent.unwrap(), packet.len());
    }

    /// Every message mallory's own socket receives within `wait`.
    fn receive_for(&self, wait: Duration) -> Vec<Message> {
        let deadline = Instant::now() + wait;
        let mut received = Vec::new();
        let mut buffer = vec![0u8; 65_536];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let left = left.max(Duration::from_millis(1));
            self.socket.set_read_timeout(Some(left)).unwrap();
            if let Ok((len, _)) = self.socket.recv_from(&mut buffer) {
                received.push(protocol::parse(&buffer[..len]).unwrap());
            }
        }
        received
    }

    /// Registers as "mallory" and asks for alice; returns the cookie.
    fn register_and_ask_for_alice(&self) -> Cookie {
        self.send(&Message::Register {
            name: "mallory".into(),
            private: SocketAddr::V4(SocketAddrV4::new(MALLORY_IP, MALLORY_PORT)),
            cookie: None,
        });
        let received = self.receive_for(Duration::from_millis(500));
        let Some(Message::Registered { cookie, .. }) = received.first() else {
            panic!("mallory was not registered: {received:?}");
        };
        self.ask_for_alice(*cookie);
        *cookie
    }

    fn ask_for_alice(&self, cookie: Cookie) {
        self.send(&Message::Connect {
            name: "mallory".into(),
            peer: "alice".into(),
            cookie,
        });
    }
}

/// What mallory sends from alice's address, and what the rendezvous logs
/// for it: with her own cookie, a guess, none at all (the request as the
/// protocol was before cookies), and a REGISTER with her endpoint.
fn forgeries(cookie: Cookie) -> Vec<(String, &'static str)> {
    let mallory = format!("{MALLORY_IP}:{MALLORY_PORT}");
    vec![
        (format!("CONNECT alice mallory {cookie}"), "wrong cookie"),
        (
            "CONNECT alice mallory 0123456789abcdef".into(),
            "wrong cookie",
        ),
        ("CONNECT alice mallory".into(), "CONNECT takes 3 fields"),
        (format!("REGISTER alice {mallory}"), "no cookie"),
        (format!("REGISTER alice {mallory} {cookie}"), "wrong cookie"),
    ]
}

/// bob comes and learns alice's true endpoints; alice meets him, then
/// quits.
fn bob_meets_the_real_alice(lab: &Lab, alice: &mut Running) {
    let mut bob = start_peer(lab, "bob", "bob", "alice");
    bob.expect_stdout_line(&format!(
        "alice is at public {}, private {}",
        SocketAddrV4::new(ROUTER1_WAN, PEER_PORT),
        SocketAddrV4::new(ALICE, PEER_PORT)
    ));
    alice.expect_stdout_line(&format!(
        "path: public {}: talking to bob directly",
        SocketAddrV4::new(ROUTER2_WAN, PEER_PORT)
    ));
    bob.expect_stdout(PROMPT);
    alice.expect_stdout(PROMPT);
    alice.type_line("quit");
    assert!(alice.wait_exit().success(), "{}", alice.describe());
    bob.expect_stdout_line("alice left the chat; bye.");
    assert!(bob.wait_exit().success(), "{}", bob.describe());
}

/// The attack of issue 14, against the real rendezvous and a real alice
/// behind router1: mallory asks for alice, then, from alice's public
/// endpoint, asks for mallory in alice's name and registers alice again
/// with mallory's endpoint as her private one.
#[test]
fn forged_requests_from_alices_address_reach_nothing_and_change_nothing() {
    let test = "forged_requests_from_alices_address_reach_nothing_and_change_nothing";
    let Some(lab) = lab_for_test(&scene_with_mallory(), test) else {
        return;
    };
    let mut command = lab.command("rendezvous", testkit::bin(RENDEZVOUS));
    command.args(["--bind", &rendezvous_addr().to_string()]);
    let server = Running::start("rendezvous", command);
    server.expect_stdout_line("rendezvous listening on");
    let mut alice = start_peer(&lab, "alice", "alice", "bob");
    alice.expect_stdout_line("waiting for bob");
    let alice_public = SocketAddrV4::new(ROUTER1_WAN, PEER_PORT);

    let mallory = Mallory::new(&lab);
    let cookie = mallory.register_and_ask_for_alice();
    server.expect_stdout_line("mallory asks for alice");
    let forgeries = forgeries(cookie);
    for (forgery, _) in &forgeries {
        mallory.forge(alice_public, forgery.as_bytes());
    }
    // mallory asks again: still WAITING, never a PEER about alice.
    mallory.ask_for_alice(cookie);
    let heard = mallory.receive_for(Duration::from_secs(1));
    assert!(
        heard
            .iter()
            .all(|message| matches!(message, Message::Waiting { .. }))
            && !heard.is_empty(),
        "mallory forged {} requests from alice's public endpoint {alice_public} without her cookie, then asked for alice with his own: expected WAITING only; heard {heard:?}",
        forgeries.len()
    );
    assert!(
        !server.stdout().contains("introduced"),
        "{}",
        server.describe()
    );
    // Each forgery arrived as if alice had sent it (the log names her
    // endpoint as the source), and was ignored.
    for (forgery, why) in &forgeries {
        let line = server.expect_stderr_line(why);
        assert!(
            line.contains(&format!("from {alice_public}")),
            "{forgery}: {line}"
        );
    }

    bob_meets_the_real_alice(&lab, &mut alice);
    assert!(alice.stderr().is_empty(), "{}", alice.describe());
    let heard = mallory.receive_for(Duration::from_millis(300));
    assert!(
        heard
            .iter()
            .all(|message| !matches!(message, Message::Peer { .. })),
        "mallory heard {heard:?}"
    );
}
