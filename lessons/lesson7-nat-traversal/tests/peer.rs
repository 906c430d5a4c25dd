//! The peers on loopback, where no NAT stands between them: the mapping
//! check finds nothing hard, the direct path wins, and the chat works.
//! The birthday punch and the relay need NATs: tests/lab.rs.
// Tests may unwrap (clippy.toml), helpers too.
#![allow(clippy::unwrap_used)]

mod common;

use common::{PEER, start_peer, start_rendezvous};

#[test]
fn on_loopback_the_direct_path_wins() {
    let server = start_rendezvous(&[]);
    let second = server.second.port().to_string();
    let extra = ["--second-port", second.as_str()];
    let (mut alice, alice_addr) = start_peer(server.addr, "alice", "bob", &extra);
    alice.expect_stdout_line("waiting for bob");
    let (mut bob, bob_addr) = start_peer(server.addr, "bob", "alice", &extra);
    bob.expect_stdout_line("our role: punch");
    alice.expect_stdout_line(&format!("path: direct {bob_addr} "));
    // MAPPED comes before PEER: the rendezvous introduces only mapped peers.
    let mapped = format!("the second port sees us at {alice_addr}: the same port");
    assert!(alice.stdout().contains(&mapped), "{}", alice.describe());
    bob.expect_stdout_line(&format!("path: direct {alice_addr} "));
    alice.type_line("hello bob");
    bob.expect_stdout_line("[from alice] hello bob");
    bob.type_line("quit");
    alice.expect_stdout_line("bob left the chat");
}

#[test]
fn a_bad_port_range_is_a_usage_error() {
    for range in ["0-10", "5000-4000", "1024", "a-b"] {
        testkit::cli::usage_error(
            PEER,
            &["--name", "a", "--peer-name", "b", "--port-range", range],
            "is not LOW-HIGH",
        );
    }
}
