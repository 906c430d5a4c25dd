//! Lesson 7 behind real NATs: lesson 6's scene (tools/netlab/src/nat.rs),
//! each router masquerading with a mapping of its own, in network
//! namespaces each test builds and removes. Each test shows one way win:
//! the direct punch, the birthday punch, the relay.
//!
//! These need root (or unprivileged user namespaces); elsewhere they skip
//! with the reason printed. As root they never skip.
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, SocketAddrV4};

use common::{PEER, RENDEZVOUS};
use netlab::nat::{Mapping, PEER_PORT, RENDEZVOUS_IP, RENDEZVOUS_PORT};
use netlab::{Lab, Topology, lab_for_test};
use testkit::Running;

const EASY: Mapping = Mapping::EndpointIndependent;
const HARD: Mapping = Mapping::Symmetric;

fn rendezvous() -> String {
    SocketAddr::V4(SocketAddrV4::new(RENDEZVOUS_IP, RENDEZVOUS_PORT)).to_string()
}

/// The rendezvous in its host, and alice (behind router1) and bob (behind
/// router2) asking for each other.
fn start_scene(lab: &Lab, extra: &[&str]) -> (Running, Running, Running) {
    let mut command = lab.command("rendezvous", testkit::bin(RENDEZVOUS));
    command.args(["--bind", &rendezvous()]);
    let server = Running::start("rendezvous", command);
    server.expect_stdout_line("mapping check on");
    let peer = |host: &str, name: &str, other: &str| {
        let mut command = lab.command(host, testkit::bin(PEER));
        let bind = format!("0.0.0.0:{PEER_PORT}");
        command.args(["--bind", &bind, "--rendezvous", &rendezvous()]);
        command.args(["--name", name, "--peer-name", other]);
        command.args(extra);
        let running = Running::start(name, command);
        running.expect_stdout_line("bound to ");
        running
    };
    let alice = peer("alice", "alice", "bob");
    alice.expect_stdout_line("waiting for bob");
    let bob = peer("bob", "bob", "alice");
    (server, alice, bob)
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
    alice.expect_stdout_line("another port, our NAT gives each destination its own");
    bob.expect_stdout_line("the same port, our NAT keeps one port");
    server.expect_stdout_line("introduced");
    alice.expect_stdout_line("our role: spray");
    bob.expect_stdout_line("our role: scan");
    bob.expect_stdout_line("no direct answer from alice");
    bob.expect_stdout_line("birthday punch: port ");
    chat_works(&mut alice, &mut bob, "birthday");
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
