//! Lesson 7 behind real NATs, in network namespaces each test builds and
//! removes: lesson 6's scene (tools/netlab/src/nat.rs), each router
//! masquerading with a mapping of its own, where each way wins once (the
//! direct punch, the birthday punch, the relay); and lesson 7's scene
//! (tools/netlab/src/p2p.rs), whose routed internet lets the first probes
//! expire between the homes.
//!
//! These need root (or unprivileged user namespaces); elsewhere they skip
//! with the reason printed. As root they never skip.
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, SocketAddrV4};

use common::{PEER, RENDEZVOUS};
use netlab::nat::{Mapping, PEER_PORT, RENDEZVOUS_IP, RENDEZVOUS_PORT};
use netlab::p2p::Nat;
use netlab::{Lab, Topology, lab_for_test};
use testkit::{Running, check_generated, normalize};

const EASY: Mapping = Mapping::EndpointIndependent;
const HARD: Mapping = Mapping::Symmetric;

/// The rendezvous in its host, and alice (behind router1) and bob (behind
/// router2) asking for each other, in lesson 6's scene.
fn start_scene(lab: &Lab, extra: &[&str]) -> (Running, Running, Running) {
    let rendezvous = SocketAddr::V4(SocketAddrV4::new(RENDEZVOUS_IP, RENDEZVOUS_PORT));
    start_peers(lab, rendezvous, (extra, extra))
}

/// The same in lesson 7's scene, with each peer's own extra arguments.
fn start_p2p_scene(lab: &Lab, alice: &[&str], bob: &[&str]) -> (Running, Running, Running) {
    let ip = netlab::p2p::RENDEZVOUS_IP;
    let rendezvous = SocketAddr::V4(SocketAddrV4::new(ip, netlab::p2p::RENDEZVOUS_PORT));
    start_peers(lab, rendezvous, (alice, bob))
}

fn start_peers(
    lab: &Lab,
    rendezvous: SocketAddr,
    extra: (&[&str], &[&str]),
) -> (Running, Running, Running) {
    let rendezvous = || rendezvous.to_string();
    let mut command = lab.command("rendezvous", testkit::bin(RENDEZVOUS));
    command.args(["--bind", &rendezvous()]);
    let server = Running::start("rendezvous", command);
    server.expect_stdout_line("mapping check on");
    let peer = |host: &str, name: &str, other: &str, extra: &[&str]| {
        let mut command = lab.command(host, testkit::bin(PEER));
        let bind = format!("0.0.0.0:{PEER_PORT}");
        command.args(["--bind", &bind, "--rendezvous", &rendezvous()]);
        command.args(["--name", name, "--peer-name", other]);
        command.args(extra);
        let running = Running::start(name, command);
        running.expect_stdout_line("bound to ");
        running
    };
    let alice = peer("alice", "alice", "bob", extra.0);
    alice.expect_stdout_line("waiting for bob");
    let bob = peer("bob", "bob", "alice", extra.1);
    (server, alice, bob)
}

/// bob's transcript as the book shows it: the command as typed, and the
/// random ports and probe counts of this run as placeholders (`met` is
/// the line `birthday punch: port P answered probe I of S`).
fn book_transcript(bob: &Running, met: &str) -> String {
    let transcript = bob.transcript();
    let body = transcript.split_once('\n').map_or("", |(_, rest)| rest);
    // Up to the chat, whose prompts interleave with the lines typed.
    let body = body
        .split_once("Ready: ")
        .map_or(body, |(before, _)| before);
    let words: Vec<&str> = met.split_whitespace().collect();
    let port = words[3];
    let line = |prefix: &str| {
        body.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|rest| rest.split([' ', ',']).next())
            .unwrap_or_default()
            .to_owned()
    };
    let alice_public = line("alice is at public ");
    let random = alice_public.rsplit(':').next().unwrap_or_default();
    let replacements = [
        (
            met.to_owned(),
            "birthday punch: port <met port> answered probe <i> of <sent>".to_owned(),
        ),
        (format!(":{port}:"), ":<met port>:".to_owned()),
        (format!(":{random} "), ":<random port> ".to_owned()),
        (format!(":{random},"), ":<random port>,".to_owned()),
        (format!(":{random}:"), ":<random port>:".to_owned()),
    ];
    let command = format!(
        "bob$ lesson7-peer --bind 0.0.0.0:{PEER_PORT} --rendezvous {RENDEZVOUS_IP}:{RENDEZVOUS_PORT} --name bob --peer-name alice"
    );
    format!("{command}\n{}", normalize(body, &replacements))
}

/// Both peers say `way` won; a line typed at each arrives at the other.
fn chat_works(alice: &mut Running, bob: &mut Running, way: &str) {
    alice.expect_stdout_line(&format!("path: {way} "));
    bob.expect_stdout_line(&format!("path: {way} "));
    alice.type_line(&format!("hello bob, by {way}"));
    bob.expect_stdout_line(&format!("[from alice] hello bob, by {way}"));
    bob.type_line("hello alice");
    alice.expect_stdout_line("[from bob] hello alice");
}

#[test]
fn two_easy_nats_meet_by_the_direct_punch() {
    let test = "two_easy_nats_meet_by_the_direct_punch";
    let Some(lab) = lab_for_test(&Topology::nat_scene(EASY, EASY), test) else {
        return;
    };
    let (_server, mut alice, mut bob) = start_scene(&lab, &[]);
    alice.expect_stdout_line("our role: punch");
    chat_works(&mut alice, &mut bob, "direct");
}

#[test]
fn a_symmetric_nat_is_crossed_by_the_birthday_punch() {
    let test = "a_symmetric_nat_is_crossed_by_the_birthday_punch";
    let Some(lab) = lab_for_test(&Topology::nat_scene(HARD, EASY), test) else {
        return;
    };
    let (server, mut alice, mut bob) = start_scene(&lab, &[]);
    server.expect_stdout_line("introduced");
    alice.expect_stdout_line("our role: spray");
    bob.expect_stdout_line("our role: scan");
    // MAPPED came before PEER (no introduction without both mappings),
    // perhaps before the WAITING the scene waited for.
    let mapped =
        |peer: &Running, what: &str| assert!(peer.stdout().contains(what), "{}", peer.describe());
    mapped(
        &alice,
        "another port, our NAT gives each destination its own",
    );
    mapped(&bob, "the same port, our NAT keeps one port");
    bob.expect_stdout_line("no direct answer from alice");
    let met = bob.expect_stdout_line("birthday punch: port ");
    chat_works(&mut alice, &mut bob, "birthday");
    check_generated("lesson7-birthday-bob.txt", &book_transcript(&bob, &met));
}

#[test]
fn two_symmetric_nats_fall_back_to_the_relay() {
    let test = "two_symmetric_nats_fall_back_to_the_relay";
    let Some(lab) = lab_for_test(&Topology::nat_scene(HARD, HARD), test) else {
        return;
    };
    let (server, mut alice, mut bob) = start_scene(&lab, &[]);
    alice.expect_stdout_line("our role: relay");
    bob.expect_stdout_line("birthday punch: hopeless");
    chat_works(&mut alice, &mut bob, "relay");
    server.expect_stdout_line("relaying ");
}

/// Two routers without a firewall; bob's first probes leave 100 ms after
/// alice's. With first probes of the usual TTL, alice's reaches bob's
/// router before bob has sent anything: the router takes it for itself,
/// and bob's mapping toward alice moves (lesson 6). Only the relay is left.
#[test]
fn without_short_lived_first_probes_a_router_without_firewall_leaves_only_the_relay() {
    let test = "without_short_lived_first_probes_a_router_without_firewall_leaves_only_the_relay";
    let scene = Topology::p2p_scene(Nat::NoFirewall, Nat::NoFirewall);
    let Some(lab) = lab_for_test(&scene, test) else {
        return;
    };
    let alice = ["--first-ttl", "0"];
    let bob = ["--first-ttl", "0", "--probe-delay-ms", "100"];
    let (_server, mut alice, mut bob) = start_p2p_scene(&lab, &alice, &bob);
    alice.expect_stdout_line("no direct answer from bob");
    chat_works(&mut alice, &mut bob, "relay");
}

/// The same scene with the default first TTL (2): alice's first probe
/// leaves her router and expires at the internet router, and her next one
/// finds bob's hole open. The direct path wins.
#[test]
fn short_lived_first_probes_keep_a_router_without_firewall_direct() {
    let test = "short_lived_first_probes_keep_a_router_without_firewall_direct";
    let scene = Topology::p2p_scene(Nat::NoFirewall, Nat::NoFirewall);
    let Some(lab) = lab_for_test(&scene, test) else {
        return;
    };
    let (_server, mut alice, mut bob) = start_p2p_scene(&lab, &[], &["--probe-delay-ms", "100"]);
    alice.expect_stdout_line("first probes sent with TTL 2");
    chat_works(&mut alice, &mut bob, "direct");
}

/// The same, but bob starts a second late, as after a lost introduction:
/// alice's probes go with the usual TTL by then, reach bob's router before
/// bob has sent anything, and move his mapping. Only the relay is left.
#[test]
fn short_lived_first_probes_cannot_help_a_peer_a_second_late() {
    let test = "short_lived_first_probes_cannot_help_a_peer_a_second_late";
    let scene = Topology::p2p_scene(Nat::NoFirewall, Nat::NoFirewall);
    let Some(lab) = lab_for_test(&scene, test) else {
        return;
    };
    let (_server, mut alice, mut bob) = start_p2p_scene(&lab, &[], &["--probe-delay-ms", "1000"]);
    alice.expect_stdout_line("first probes sent with TTL 2");
    alice.expect_stdout_line("no direct answer from bob");
    chat_works(&mut alice, &mut bob, "relay");
}
