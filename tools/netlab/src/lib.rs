//! The network lab: the first post's two virtual machines, and later
//! lessons' routers and NATs, as Linux network namespaces on one machine.
//!
//! The course runs on loopback, where nothing is lost, nothing is fragmented
//! and no packet can be watched. The lab gives each learner real hosts joined
//! by real links: a host is a network namespace (its own interfaces,
//! addresses, routes, sockets and firewall), a link is a veth pair (two
//! interfaces joined like the ends of a cable).
//!
//! # API
//!
//! - [`Topology`] declares hosts, links (addresses, MTU), routes, sysctls and
//!   nftables rules in one place; [`Topology::two_vms`] is the post's scene:
//!   `vm1` 192.168.126.129 and `vm2` 192.168.126.128 on one link, MTU 1500.
//! - [`Lab::up`] builds a topology under names unique to this lab (so tests
//!   run in parallel), and the guard removes every namespace when dropped,
//!   also on panic. [`Lab::up_named`] builds the one `just lab up` leaves
//!   for a learner.
//! - [`Lab::command`] runs a program inside a host (`ip netns exec`),
//!   [`Lab::in_host`] runs a closure on a thread inside it (its sockets
//!   live there), [`Lab::capture`] starts tcpdump inside it (lines to
//!   wait on, and [`Packet`]s parsed from its pcap file),
//!   [`Lab::add_loss`] and [`Lab::nft`] add nftables rules.
//! - [`lab_for_test`] is how a test gets a lab: as root it builds one; as a
//!   user with unprivileged user namespaces it reruns the test inside one;
//!   elsewhere (or without `ip`, `nft` or `tcpdump`) the test is skipped
//!   with the reason printed. In CI (`CI` set) as root it never skips.
//!
//! ```no_run
//! use netlab::{Lab, Topology};
//! let lab = Lab::up(&Topology::two_vms())?;
//! let out = lab.run("vm1", &["ip", "-br", "addr"])?;
//! assert!(out.contains("192.168.126.129/24"));
//! # anyhow::Ok(())
//! ```

mod access;
mod capture;
mod lab;
/// The NAT matrix: lesson 7's peers across every pair of NAT kinds.
pub mod matrix;
/// Lesson 6's scene: two homes behind NAT routers and a rendezvous server.
pub mod nat;
/// Lesson 7's scene: every kind of NAT (RFC 4787), a routed internet.
pub mod p2p;
mod topology;

pub use access::{Access, IN_USERNS, access};
pub use capture::{CAPTURE_DEADLINE, Capture, Contents, Packet, Recording, normalize};
pub use lab::{Lab, NAMED_PREFIX_VAR, loss_ruleset};
pub use topology::{
    DEFAULT_SYSCTLS, ECHO_PORT, End, Host, Link, PORT_A, PORT_B, Topology, VM1, VM2,
};

use std::process::Command;

/// A lab built from `topology` for the test named `test` (its function
/// name, as `cargo test -- --exact` wants it), or `None` when the test must
/// not go on here:
///
/// - as root, the lab is built here; a failure fails the test;
/// - as a user allowed unprivileged user namespaces, the test is run again
///   inside one (`unshare --user --map-root-user --net --mount`, with a
///   fresh `/run` for `ip netns`), its result becomes this run's, and
///   `None` is returned;
/// - elsewhere, the reason is printed and `None` is returned: the test is
///   skipped. As root in CI (`CI` set) a skip is a failure instead.
pub fn lab_for_test(topology: &Topology, test: &str) -> Option<Lab> {
    match access() {
        Ok(Access::Root) => Some(
            Lab::up(topology).unwrap_or_else(|err| panic!("{test}: cannot build the lab: {err:#}")),
        ),
        Ok(Access::UserNamespace) => {
            assert!(
                std::env::var_os(IN_USERNS).is_none(),
                "{test}: inside the lab's user namespace but not root"
            );
            let exe = std::env::current_exe().expect("the test binary's path");
            let status = Command::new("unshare")
                .args(["--user", "--map-root-user", "--net", "--mount", "--fork"])
                .args(["sh", "-c", "mount -t tmpfs tmpfs /run && exec \"$@\"", "sh"])
                .arg(exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(IN_USERNS, "1")
                .status()
                .unwrap_or_else(|err| panic!("{test}: cannot run unshare: {err}"));
            assert!(
                status.success(),
                "{test} failed inside a user namespace ({status})"
            );
            eprintln!("{test}: ran inside an unprivileged user namespace");
            None
        }
        Err(reason) => {
            // CI installs the lab's tools and runs as root: there a skip would
            // hide a broken lab, so it fails. A learner's `cargo test` skips.
            assert!(
                !(nix::unistd::Uid::effective().is_root() && std::env::var_os("CI").is_some()),
                "{test}: running as root in CI, a lab test may not be skipped: {reason}"
            );
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}
