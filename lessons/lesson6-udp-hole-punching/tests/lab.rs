//! Lesson 6 behind real NATs: the lab's scene (tools/netlab/src/nat.rs),
//! two homes whose routers masquerade with nftables, and the rendezvous on
//! an "internet" between them. Each test builds its own copy of the scene
//! in network namespaces and removes it, also when it fails.
//!
//! These need root (or unprivileged user namespaces); elsewhere they skip
//! with the reason printed. As root they never skip.
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use common::{PEER, PROMPT, RENDEZVOUS};
use netlab::nat::{
    ALICE, BOB, CAROL, Mapping, PEER_PORT, RENDEZVOUS_IP, RENDEZVOUS_PORT, ROUTER1_WAN,
    ROUTER2_WAN, Router, conntrack_udp, set_udp_timeouts, unsolicited_drops,
};
use netlab::{Contents, Lab, Packet, Topology, lab_for_test};
use testkit::{Running, check_generated};

const EASY: Mapping = Mapping::EndpointIndependent;

fn endpoint(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// The rendezvous in its host, on the scene's address and port.
fn start_rendezvous(lab: &Lab) -> Running {
    let mut command = lab.command("rendezvous", testkit::bin(RENDEZVOUS));
    command.args([
        "--bind",
        &endpoint(RENDEZVOUS_IP, RENDEZVOUS_PORT).to_string(),
    ]);
    let server = Running::start("rendezvous", command);
    server.expect_stdout_line("rendezvous listening on");
    server
}

/// The arguments of a peer in the scene, as a learner would type them.
fn peer_args(name: &str, peer: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--bind",
        &format!("0.0.0.0:{PEER_PORT}"),
        "--rendezvous",
        &endpoint(RENDEZVOUS_IP, RENDEZVOUS_PORT).to_string(),
        "--name",
        name,
        "--peer-name",
        peer,
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

/// Starts peer `name` in `host`, asking for `peer`.
fn start_peer(lab: &Lab, host: &str, name: &str, peer: &str, extra: &[&str]) -> Running {
    let mut command = lab.command(host, testkit::bin(PEER));
    command.args(peer_args(name, peer, extra));
    let running = Running::start(name, command);
    running.expect_stdout_line("bound to ");
    running
}

/// Starts `first` and waits until it waits at the rendezvous, then starts
/// `second`: the order of the book's session.
fn start_pair(
    lab: &Lab,
    first: (&str, &str, &[&str]),
    second: (&str, &str, &[&str]),
) -> (Running, Running) {
    let a = start_peer(lab, first.0, first.1, second.1, first.2);
    a.expect_stdout_line(&format!("waiting for {}", second.1));
    let b = start_peer(lab, second.0, second.1, first.1, second.2);
    (a, b)
}

/// `line`'s text after `[from NAME] `.
fn received<'a>(line: &'a str, from: &str) -> &'a str {
    let marker = format!("[from {from}] ");
    line.split_once(&marker).map_or("", |(_, text)| text)
}

/// Waits (at most the test deadline) until `router` has dropped more than
/// `before` unsolicited packets; returns the count.
fn wait_for_drops(lab: &Lab, router: &str, before: u64) -> u64 {
    let deadline = Instant::now() + testkit::DEADLINE;
    loop {
        let drops = unsolicited_drops(lab, router).unwrap();
        if drops > before || Instant::now() >= deadline {
            return drops;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A transcript with a command line as the reader types it (not the
/// test's `ip netns exec nl-…` wrapper and target path).
fn book_transcript(peer: &Running, host: &str, args: &[String]) -> String {
    let transcript = peer.transcript();
    let body = transcript.split_once('\n').map_or("", |(_, rest)| rest);
    format!("{host}$ lesson6-peer {}\n{body}", args.join(" "))
}

// ---- case 1 ----

/// Without a punch, nothing gets in: a datagram to alice's public endpoint
/// is dropped by her router, from bob's home as from the rendezvous's own
/// address on another port. Only replies to the flow alice started (the
/// rendezvous's answers, from its port 55500) get through.
#[test]
fn without_a_punch_the_nat_drops_a_datagram_sent_to_the_public_endpoint() {
    let test = "without_a_punch_the_nat_drops_a_datagram_sent_to_the_public_endpoint";
    let Some(lab) = lab_for_test(&Topology::nat_scene(EASY, EASY), test) else {
        return;
    };
    // The router's rules, as nft lists them, for the book.
    let ruleset = lab.run("router1", &["nft", "list", "ruleset"]).unwrap();
    check_generated(
        "lesson6-router1-ruleset.txt",
        &format!("router1# nft list ruleset\n{ruleset}"),
    );
    let _server = start_rendezvous(&lab);
    let alice = start_peer(&lab, "alice", "alice", "bob", &[]);
    let public = endpoint(ROUTER1_WAN, PEER_PORT);
    alice.expect_stdout_line(&format!("it sees us at {public} (our public endpoint)"));
    alice.expect_stdout_line("waiting for bob");

    let mut drops = unsolicited_drops(&lab, "router1").unwrap();
    for (host, port) in [("bob", PEER_PORT), ("rendezvous", 55599)] {
        lab.in_host(host, || {
            let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
            socket.send_to(b"hello alice?", public).unwrap();
        });
        let now = wait_for_drops(&lab, "router1", drops);
        assert_eq!(now, drops + 1, "router1 drops the datagram from {host}");
        drops = now;
    }
    // Had either reached alice's socket, she would have logged it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!alice.stderr().contains("ignored"), "{}", alice.describe());
}

// ---- cases 2 and 6 ----

/// What `punch_and_chat` ran: the rendezvous, and both peers (quit and
/// exited) with their arguments.
struct Session {
    server: Running,
    alice: Running,
    alice_args: Vec<String>,
    bob: Running,
    bob_args: Vec<String>,
}

/// Alice waits at the rendezvous, bob comes; both punch and chat.
fn punch_and_chat(lab: &Lab, bob_extra: &[&str]) -> Session {
    let server = start_rendezvous(lab);
    let (mut alice, mut bob) = start_pair(lab, ("alice", "alice", &[]), ("bob", "bob", bob_extra));
    let alice_public = endpoint(ROUTER1_WAN, PEER_PORT);
    let bob_public = endpoint(ROUTER2_WAN, PEER_PORT);
    alice.expect_stdout_line(&format!(
        "bob is at public {bob_public}, private {}",
        endpoint(BOB, PEER_PORT)
    ));
    alice.expect_stdout_line(&format!(
        "path: public {bob_public}: talking to bob directly"
    ));
    bob.expect_stdout_line(&format!(
        "path: public {alice_public}: talking to alice directly"
    ));
    alice.expect_stdout(PROMPT);
    bob.expect_stdout(PROMPT);
    alice.type_line("hello bob, straight through both NATs");
    let line = bob.expect_stdout_line("[from alice] ");
    assert_eq!(
        received(&line, "alice"),
        "hello bob, straight through both NATs"
    );
    bob.expect_stdout(PROMPT);
    bob.type_line("hi alice! no server in between now");
    let line = alice.expect_stdout_line("[from bob] ");
    assert_eq!(received(&line, "bob"), "hi alice! no server in between now");
    alice.expect_stdout(PROMPT);
    alice.type_line("quit");
    assert!(alice.wait_exit().success(), "{}", alice.describe());
    bob.expect_stdout_line("alice left the chat; bye.");
    assert!(bob.wait_exit().success(), "{}", bob.describe());
    let alice_args = peer_args("alice", "bob", &[]);
    let bob_args = peer_args("bob", "alice", bob_extra);
    Session {
        server,
        alice,
        alice_args,
        bob,
        bob_args,
    }
}

#[test]
fn with_a_punch_two_peers_behind_two_nats_chat_both_ways() {
    let test = "with_a_punch_two_peers_behind_two_nats_chat_both_ways";
    let Some(lab) = lab_for_test(&Topology::nat_scene(EASY, EASY), test) else {
        return;
    };
    let Session {
        server,
        alice,
        alice_args,
        bob,
        bob_args,
    } = punch_and_chat(&lab, &[]);
    // Both homes use 192.168.1.2: each peer sees that the other's private
    // endpoint is its own, and probes only the public one.
    for (peer, other) in [(&alice, "bob"), (&bob, "alice")] {
        assert!(
            peer.stdout().contains(&format!(
                "its private endpoint {} is our own",
                endpoint(ALICE, PEER_PORT)
            )),
            "{other}: {}",
            peer.describe()
        );
    }
    check_generated(
        "lesson6-alice.txt",
        &book_transcript(&alice, "alice", &alice_args),
    );
    check_generated("lesson6-bob.txt", &book_transcript(&bob, "bob", &bob_args));
    // The rendezvous logged the public endpoints it saw, next to the
    // private ones the peers reported.
    let log = server.transcript();
    let log = log.split_once('\n').map_or("", |(_, rest)| rest);
    let command = format!("lesson6-rendezvous --bind {RENDEZVOUS_IP}:{RENDEZVOUS_PORT}");
    check_generated(
        "lesson6-rendezvous.txt",
        &format!("rendezvous$ {command}\n{log}"),
    );
}

/// tcpdump on each router's `wan` while alice and bob meet, punch and chat
/// (bob probes 1.1 s late, between two of alice's probes, so the order is
/// the same on every run).
/// The IP headers show the public endpoints, the payloads the private ones.
#[test]
fn captures_on_the_routers_show_the_translation() {
    let test = "captures_on_the_routers_show_the_translation";
    let Some(lab) = lab_for_test(&Topology::nat_scene(EASY, EASY), test) else {
        return;
    };
    let captures = ["router1", "router2"].map(|router| {
        lab.capture(router, "wan", &[], "udp")
            .unwrap_or_else(|err| panic!("{err:#}"))
    });
    punch_and_chat(&lab, &["--probe-delay-ms", "1100"]);
    // alice's early probes (sent every 200 ms from 0 ms on) hit router2
    // before bob had sent anything to her: dropped. bob's probe (at 1.1 s,
    // between two of alice's)
    // found router1 open for him: nothing dropped there.
    assert!(unsolicited_drops(&lab, "router2").unwrap() >= 2);
    assert_eq!(unsolicited_drops(&lab, "router1").unwrap(), 0);
    for (router, capture) in ["router1", "router2"].into_iter().zip(captures) {
        let packets = capture.stop().unwrap().packets;
        let text = render_capture(&packets);
        // The translation: on the wire outside, alice's and bob's packets
        // carry their routers' addresses, never 192.168.1.2 (which only
        // shows inside the payloads).
        assert!(
            !text
                .lines()
                .any(|line| line.starts_with("IP 192.168.") || line.contains("> 192.168.")),
            "{text}"
        );
        check_generated(&format!("capture-nat-{router}.txt"), &text);
    }
}

/// Renders a capture for the book: each packet's line, then its UDP
/// payload as text with the session's token hidden; a packet repeated (a
/// probe sent again until answered) shows once, with a note.
fn render_capture(packets: &[Packet]) -> String {
    let mut text = String::new();
    let mut previous = None;
    let mut repeated = false;
    for packet in packets {
        let shown = (packet.line.as_str(), payload_text(packet.udp_payload()));
        if previous.as_ref() == Some(&shown) {
            if !repeated {
                text.push_str("    ... and again every 200 ms until answered\n");
                repeated = true;
            }
            continue;
        }
        repeated = false;
        text.push_str(&format!("{}\n    {}\n", shown.0, shown.1));
        previous = Some(shown);
    }
    text
}

/// A UDP payload as text, the token replaced by `<token>` and a
/// registration's cookie by `<cookie>`.
fn payload_text(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let secret = match text.split(' ').next() {
        Some("REGISTER" | "REGISTERED" | "CONNECT") => "<cookie>",
        _ => "<token>",
    };
    text.split(' ')
        .map(|word| {
            if word.len() >= 16
                && word[..16].chars().all(|c| c.is_ascii_hexdigit())
                && word.is_char_boundary(16)
            {
                format!("{secret}{}", &word[16..])
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- the race ----

/// bob probes at once, alice 1.1 s later: bob's first probes reach router1
/// before alice's first probe has left it. Returns both peers once each
/// has met the other or given up (after 3 s of probing).
fn alice_probes_late(lab: &Lab) -> (Running, Running, Running) {
    let server = start_rendezvous(lab);
    let alice_extra = ["--probe-delay-ms", "1100", "--punch-timeout-ms", "3000"];
    let bob_extra = ["--punch-timeout-ms", "3000"];
    let (alice, bob) = start_pair(
        lab,
        ("alice", "alice", &alice_extra),
        ("bob", "bob", &bob_extra),
    );
    alice.expect_stdout_line("bob is at public ");
    (server, alice, bob)
}

/// With home routers that drop unsolicited datagrams, the race does not
/// matter: bob's early probes are dropped by router1, which keeps no
/// trace of them; alice's late probe leaves from the port the rendezvous
/// saw and reaches bob as the answer to his flow.
#[test]
fn with_the_drop_rule_a_late_probe_still_meets_the_peer() {
    let test = "with_the_drop_rule_a_late_probe_still_meets_the_peer";
    let Some(lab) = lab_for_test(&Topology::nat_scene(EASY, EASY), test) else {
        return;
    };
    let (_server, alice, bob) = alice_probes_late(&lab);
    alice.expect_stdout_line(&format!(
        "path: public {}: talking to bob directly",
        endpoint(ROUTER2_WAN, PEER_PORT)
    ));
    bob.expect_stdout_line(&format!(
        "path: public {}: talking to alice directly",
        endpoint(ROUTER1_WAN, PEER_PORT)
    ));
    assert!(unsolicited_drops(&lab, "router1").unwrap() >= 1);
    let alice_flow = format!(
        "udp src={ALICE} dst={ROUTER2_WAN} sport={PEER_PORT} dport={PEER_PORT} \
         src={ROUTER2_WAN} dst={ROUTER1_WAN} sport={PEER_PORT} dport={PEER_PORT}"
    );
    let entries = conntrack_udp(&lab, "router1").unwrap();
    assert!(
        entries.iter().any(|entry| entry.starts_with(&alice_flow)),
        "alice's flow to bob keeps port {PEER_PORT}: {entries:#?}"
    );
    // bob's dropped probes left no entry of their own behind.
    let from_bob = format!("udp src={ROUTER2_WAN} ");
    assert!(
        !entries.iter().any(|entry| entry.starts_with(&from_bob)),
        "{entries:#?}"
    );
}

/// Behind one masquerade-only router the race matters, and its own peer
/// must win it: alice (behind router1, no firewall) probes first, her
/// probe is dropped by router2 without a trace, and bob's late probe
/// reaches her as the answer to her flow.
#[test]
fn behind_one_masquerade_only_router_the_punch_works_if_its_peer_probes_first() {
    let test = "behind_one_masquerade_only_router_the_punch_works_if_its_peer_probes_first";
    let topology = Topology::nat_scene_with(Router::masquerade_only(), Router::home(EASY));
    let Some(lab) = lab_for_test(&topology, test) else {
        return;
    };
    punch_and_chat(&lab, &["--probe-delay-ms", "1100"]);
    assert!(unsolicited_drops(&lab, "router2").unwrap() >= 1);
}

/// With routers that only masquerade (no firewall), the same late start
/// fails. bob's first probe to 203.0.113.1:55501 belongs to no flow, so
/// router1 takes it for itself: nothing listens there, it answers ICMP
/// port unreachable, and conntrack keeps the probe's flow. alice's probe
/// back to bob would need the same pair of public endpoints, so masquerade
/// moves it to another port, which bob never learns: his router2 takes
/// her probes for itself in turn. Neither peer hears the other.
#[test]
fn without_a_firewall_the_first_probe_moves_the_other_mapping_and_the_punch_fails() {
    let test = "without_a_firewall_the_first_probe_moves_the_other_mapping_and_the_punch_fails";
    let bare = Router::masquerade_only();
    let Some(lab) = lab_for_test(&Topology::nat_scene_with(bare, bare), test) else {
        return;
    };
    let capture = lab.capture("router1", "wan", &[], "udp or icmp").unwrap();
    let (_server, mut alice, mut bob) = alice_probes_late(&lab);
    let bob_public = endpoint(ROUTER2_WAN, PEER_PORT);
    let alice_public = endpoint(ROUTER1_WAN, PEER_PORT);
    capture
        .wait_for(&format!("{ROUTER1_WAN} udp port {PEER_PORT} unreachable"))
        .unwrap();
    capture
        .wait_for(&format!("> {ROUTER2_WAN}.{PEER_PORT}: UDP"))
        .unwrap();
    let entries = conntrack_udp(&lab, "router1").unwrap();
    for peer in [&mut alice, &mut bob] {
        assert_eq!(peer.wait_exit().code(), Some(1), "{}", peer.describe());
        assert!(!peer.stdout().contains("path:"), "{}", peer.describe());
    }
    let packets = capture.stop().unwrap().packets;

    // On router1's wan: bob's probe, and router1's ICMP about it.
    let bob_probe = packets
        .iter()
        .position(|p| p.udp_source() == Some(sv4(bob_public)))
        .unwrap();
    assert_eq!(
        packets[bob_probe].udp_destination(),
        Some(sv4(alice_public))
    );
    assert!(packets[bob_probe..].iter().any(|p| p.source == ROUTER1_WAN
        && p.contents
            == Contents::PortUnreachable {
                source: sv4(bob_public),
                destination: sv4(alice_public),
            }));
    // alice's probes all leave from one other port, after bob's first.
    let alice_probes: Vec<&Packet> = packets
        .iter()
        .filter(|p| p.source == ROUTER1_WAN && p.udp_destination() == Some(sv4(bob_public)))
        .collect();
    assert!(!alice_probes.is_empty(), "{packets:#?}");
    let moved = alice_probes[0].udp_source().unwrap().port();
    assert_ne!(moved, PEER_PORT);
    assert!(
        alice_probes
            .iter()
            .all(|p| p.udp_source().unwrap().port() == moved)
    );
    let first_alice = packets.iter().position(|p| p == alice_probes[0]).unwrap();
    assert!(bob_probe < first_alice);
    // router2 took them for itself and said so.
    assert!(packets.iter().any(|p| p.source == ROUTER2_WAN
        && p.contents
            == Contents::PortUnreachable {
                source: std::net::SocketAddrV4::new(ROUTER1_WAN, moved),
                destination: sv4(bob_public),
            }));
    // router1's conntrack: bob's probe's flow, unreplied, holds the pair
    // 203.0.113.1:55501 <-> 203.0.113.2:55501; alice's flow to bob got
    // the moved port.
    let bob_flow = format!(
        "udp src={ROUTER2_WAN} dst={ROUTER1_WAN} sport={PEER_PORT} dport={PEER_PORT} [UNREPLIED] \
         src={ROUTER1_WAN} dst={ROUTER2_WAN} sport={PEER_PORT} dport={PEER_PORT}"
    );
    let alice_flow = format!(
        "udp src={ALICE} dst={ROUTER2_WAN} sport={PEER_PORT} dport={PEER_PORT} [UNREPLIED] \
         src={ROUTER2_WAN} dst={ROUTER1_WAN} sport={PEER_PORT} dport={moved}"
    );
    for flow in [&bob_flow, &alice_flow] {
        assert!(entries.contains(flow), "{flow}\nnot in {entries:#?}");
    }

    // For the book: the packets between the routers, each shown the first
    // time only, then router1's conntrack.
    let mut text =
        "# tcpdump -n -t -i wan udp or icmp   (on router1; alice probes 1.1 s after bob)\n"
            .to_string();
    let mut shown: Vec<(&str, String)> = Vec::new();
    for packet in &packets {
        let between_routers = [packet.source, packet.destination]
            .iter()
            .all(|ip| *ip == ROUTER1_WAN || *ip == ROUTER2_WAN);
        let entry = (packet.line.as_str(), payload_text(packet.udp_payload()));
        if !between_routers || shown.contains(&entry) {
            continue;
        }
        text.push_str(&format!("{}\n", entry.0));
        if !entry.1.is_empty() {
            text.push_str(&format!("    {}\n", entry.1));
        }
        shown.push(entry);
    }
    text.push_str(
        "# the probes repeat every 200 ms, and so do the ICMP errors (rate-limited), until both give up\n",
    );
    text.push_str(
        "# router1# cat /proc/net/nf_conntrack   (the peers' flows, without seconds left, mark, zone, use)\n",
    );
    for flow in [&bob_flow, &alice_flow] {
        text.push_str(&format!("#   {flow}\n"));
    }
    let text = text.replace(&format!(".{moved}"), ".<moved port>");
    let text = text.replace(&format!("={moved}"), "=<moved port>");
    check_generated("capture-nat-no-firewall.txt", &text);
}

fn sv4(addr: SocketAddr) -> std::net::SocketAddrV4 {
    match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(v6) => panic!("not IPv4: {v6}"),
    }
}

// ---- case 3 ----

/// alice and carol share router1. Their probes to each other's public
/// endpoint go to router1's own address, which forwards nothing back in
/// (no hairpin NAT); the probes to the private endpoints cross the home
/// switch and win.
#[test]
fn two_peers_behind_the_same_nat_meet_by_their_private_endpoints() {
    let test = "two_peers_behind_the_same_nat_meet_by_their_private_endpoints";
    let Some(lab) = lab_for_test(&Topology::nat_scene(EASY, EASY), test) else {
        return;
    };
    let _server = start_rendezvous(&lab);
    let (mut alice, mut carol) = start_pair(&lab, ("alice", "alice", &[]), ("carol", "carol", &[]));
    // carol's socket has alice's port, 55501; but router1's public port
    // 55501 already carries alice's flow to the rendezvous, so carol's
    // flow to the same rendezvous is given another one.
    let line = alice.expect_stdout_line("carol is at public ");
    let public = line
        .split_whitespace()
        .nth(4)
        .unwrap()
        .trim_end_matches(',');
    let public: SocketAddr = public.parse().unwrap();
    assert_eq!(public.ip(), ROUTER1_WAN, "{line}");
    assert_ne!(public.port(), PEER_PORT, "{line}");
    alice.expect_stdout_line(&format!("path: private {}", endpoint(CAROL, PEER_PORT)));
    carol.expect_stdout_line(&format!("path: private {}", endpoint(ALICE, PEER_PORT)));
    carol.expect_stdout(PROMPT);
    carol.type_line("hi neighbour");
    let line = alice.expect_stdout_line("[from carol] ");
    assert_eq!(received(&line, "carol"), "hi neighbour");
    alice.type_line("quit");
    assert!(alice.wait_exit().success(), "{}", alice.describe());
    carol.expect_stdout_line("alice left the chat");
    assert!(carol.wait_exit().success(), "{}", carol.describe());
}

// ---- case 4 ----

/// router2 maps each new destination to a new random port (`masquerade
/// random`): the port the rendezvous saw for bob is not the one his
/// probes to alice leave from, so no probe finds an open hole. Both peers
/// give up within their bound and say why.
#[test]
fn a_symmetric_nat_defeats_the_punch_and_the_peers_say_so() {
    let test = "a_symmetric_nat_defeats_the_punch_and_the_peers_say_so";
    let topology = Topology::nat_scene(EASY, Mapping::Symmetric);
    let Some(lab) = lab_for_test(&topology, test) else {
        return;
    };
    let capture = lab.capture("router2", "wan", &[], "udp").unwrap();
    let _server = start_rendezvous(&lab);
    let timeout = ["--punch-timeout-ms", "1500"];
    let (mut alice, mut bob) =
        start_pair(&lab, ("alice", "alice", &timeout), ("bob", "bob", &timeout));
    let line = alice.expect_stdout_line("bob is at public ");
    let seen = line
        .split_whitespace()
        .nth(4)
        .and_then(|word| word.trim_end_matches(',').parse::<SocketAddr>().ok())
        .unwrap();
    assert_eq!(seen.ip(), ROUTER2_WAN);
    let started = Instant::now();
    for peer in [&mut alice, &mut bob] {
        let status = peer.wait_exit();
        assert_eq!(status.code(), Some(1), "{}", peer.describe());
        let stderr = peer.stderr();
        assert!(
            stderr.contains("within 1.5 s") && stderr.contains("symmetric NAT"),
            "{stderr}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // bob's side for the book; his public port is random by design.
    let bob_args = peer_args("bob", "alice", &timeout);
    let random = [(seen.to_string(), format!("{ROUTER2_WAN}:<random port>"))];
    check_generated(
        "lesson6-symmetric-bob.txt",
        &testkit::normalize(&book_transcript(&bob, "bob", &bob_args), &random),
    );
    // The capture on router2's wan: bob's probes to alice left from
    // another port than his requests to the rendezvous.
    let lines = capture.finish().unwrap();
    let from_bob = |to: &str| -> Vec<u16> {
        lines
            .iter()
            .filter(|line| line.starts_with(&format!("IP {ROUTER2_WAN}.")) && line.contains(to))
            .filter_map(|line| {
                line.split_whitespace()
                    .nth(1)?
                    .rsplit('.')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let to_rendezvous = from_bob(&format!("> {RENDEZVOUS_IP}.{RENDEZVOUS_PORT}:"));
    let to_alice = from_bob(&format!("> {ROUTER1_WAN}.{PEER_PORT}:"));
    assert!(
        !to_rendezvous.is_empty() && !to_alice.is_empty(),
        "{lines:#?}"
    );
    // (The capture renumbers ports in the lab's ephemeral range, the same
    // port always to the same number: compare the capture with itself.)
    assert!(
        to_rendezvous.iter().all(|port| *port == to_rendezvous[0]),
        "{lines:#?}"
    );
    assert!(
        to_alice.iter().all(|port| *port != to_rendezvous[0]),
        "bob's probes left from the port the rendezvous saw: {lines:#?}"
    );
}

/// Mapping and filtering are separate (RFC 4787). router2 keeps its
/// symmetric mapping; router1 filters endpoint-independently: it forwards
/// whatever arrives at its port 55501 to alice (a port forward, no
/// firewall). bob's probe leaves router2 from a port nobody announced, but
/// router1 lets it in; alice answers it where it came from, which is the
/// reply to bob's flow, and router2 lets that in. The punch works.
#[test]
fn a_symmetric_mapping_facing_endpoint_independent_filtering_is_punched() {
    let test = "a_symmetric_mapping_facing_endpoint_independent_filtering_is_punched";
    let topology =
        Topology::nat_scene_with(Router::masquerade_only(), Router::home(Mapping::Symmetric));
    let Some(lab) = lab_for_test(&topology, test) else {
        return;
    };
    lab.nft(
        "router1",
        &format!(
            "table ip forward_in {{
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname \"wan\" udp dport {PEER_PORT} dnat to {ALICE}:{PEER_PORT}
\t}}
}}
"
        ),
    )
    .unwrap();
    let _server = start_rendezvous(&lab);
    let (mut alice, mut bob) = start_pair(&lab, ("alice", "alice", &[]), ("bob", "bob", &[]));
    let line = alice.expect_stdout_line("bob is at public ");
    let announced = line
        .split_whitespace()
        .nth(4)
        .and_then(|word| word.trim_end_matches(',').parse::<SocketAddr>().ok())
        .unwrap();
    // alice hears bob from another port than the one the rendezvous saw.
    let path = alice.expect_stdout_line("path: unexpected 203.0.113.2:");
    assert!(!path.contains(&announced.to_string()), "{path}");
    bob.expect_stdout_line(&format!(
        "path: public {}: talking to alice directly",
        endpoint(ROUTER1_WAN, PEER_PORT)
    ));
    bob.expect_stdout(PROMPT);
    bob.type_line("through a symmetric NAT");
    let line = alice.expect_stdout_line("[from bob] ");
    assert_eq!(received(&line, "bob"), "through a symmetric NAT");
    alice.expect_stdout(PROMPT);
    alice.type_line("and back");
    let line = bob.expect_stdout_line("[from alice] ");
    assert_eq!(received(&line, "alice"), "and back");
    alice.type_line("quit");
    assert!(alice.wait_exit().success(), "{}", alice.describe());
    bob.expect_stdout_line("alice left the chat");
}

// ---- case 5 ----

/// After punching and one message, the chat idles for twice router
/// conntrack's UDP timeout (2 s here, 30 s and 120 s by default), then
/// alice writes again. Returns whether bob got it, and how many unsolicited
/// datagrams router2 dropped meanwhile.
fn idle_then_write(test: &str, keepalive_ms: &str) -> Option<(bool, u64)> {
    let expect_arrival = keepalive_ms != "0";
    let lab = lab_for_test(&Topology::nat_scene(EASY, EASY), test)?;
    // The kernel's defaults, for a flow seen one way and both ways.
    let default = |key: &str| lab.run("router1", &["sysctl", "-n", key]).unwrap();
    assert_eq!(
        default("net.netfilter.nf_conntrack_udp_timeout").trim(),
        "30"
    );
    assert_eq!(
        default("net.netfilter.nf_conntrack_udp_timeout_stream").trim(),
        "120"
    );
    for router in ["router1", "router2"] {
        set_udp_timeouts(&lab, router, 2).unwrap();
    }
    let _server = start_rendezvous(&lab);
    let keepalive = ["--keepalive-ms", keepalive_ms];
    let (alice, bob) = start_pair(
        &lab,
        ("alice", "alice", &keepalive),
        ("bob", "bob", &keepalive),
    );
    alice.expect_stdout(PROMPT);
    bob.expect_stdout(PROMPT);
    let mut alice = alice;
    alice.type_line("before the pause");
    bob.expect_stdout_line("[from alice] before the pause");
    let drops = unsolicited_drops(&lab, "router2").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    alice.type_line("after the pause");
    // Waiting for a message that should come may take long on a busy
    // machine; one that should not come has had its chance after 1 s.
    let wait = if expect_arrival {
        testkit::DEADLINE
    } else {
        Duration::from_secs(1)
    };
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline && !bob.stdout().contains("after the pause") {
        std::thread::sleep(Duration::from_millis(20));
    }
    let arrived = bob.stdout().contains("[from alice] after the pause");
    let dropped = unsolicited_drops(&lab, "router2").unwrap() - drops;
    Some((arrived, dropped))
}

#[test]
fn without_keepalives_a_short_conntrack_timeout_breaks_the_chat() {
    let test = "without_keepalives_a_short_conntrack_timeout_breaks_the_chat";
    let Some((arrived, dropped)) = idle_then_write(test, "0") else {
        return;
    };
    assert!(
        !arrived,
        "the message crossed a mapping that should have expired"
    );
    assert_eq!(dropped, 1, "router2 dropped the message as unsolicited");
}

#[test]
fn keepalives_keep_the_mapping_alive_through_a_short_conntrack_timeout() {
    let test = "keepalives_keep_the_mapping_alive_through_a_short_conntrack_timeout";
    let Some((arrived, dropped)) = idle_then_write(test, "500") else {
        return;
    };
    assert!(arrived, "the keepalives did not keep the hole open");
    assert_eq!(dropped, 0);
}
