//! Backpressure: a client that sends and never reads cannot make the server
//! hold its echo in memory without bound. The server stops reading from a
//! client once MAX_PENDING bytes of its echo wait (one read may pass it); the
//! kernel's buffers fill and the client's own sends stall. Meanwhile every
//! other client is served, and once the client reads, every byte it sent
//! comes back.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{SERVER, rss_kib};
use testkit::LOCALHOST;
use testkit::tcp::{connect, echo, random_letters, start_server};

/// What the client tries to push: far more than the kernel's buffers on
/// both sides hold (a few MiB each on Linux by default).
const PUSH: usize = 64 * 1024 * 1024;

/// The most the server's pending echo for one client can take: it reads
/// while less than MAX_PENDING (64 KiB) waits, so up to 64 KiB plus one
/// 4 KiB read is held, and the Vec's capacity, doubling, reaches 128 KiB.
const PENDING_CAPACITY_KIB: u64 = 128;

/// How much the server's resident memory may grow meanwhile: that capacity,
/// plus as much again for the allocator's and the stack's slack. A server
/// that read everything would grow by MiBs.
const RSS_GROWTH_BOUND_KIB: u64 = 2 * PENDING_CAPACITY_KIB;

#[test]
fn a_client_that_never_reads_cannot_grow_the_server_and_others_are_served() {
    let (server, addr) = start_server(SERVER, SocketAddr::new(LOCALHOST, 0), &[]);
    // Warm up: one echo, so the server's buffers and allocator are in use.
    let other = connect(addr);
    assert_eq!(echo(&other, b"warm-up\n"), b"warm-up\n");
    let rss_before = rss_kib(server.pid());

    let slow = connect(addr);
    slow.set_nonblocking(true).unwrap();
    let payload = random_letters(11, PUSH);
    let mut pushed = 0;
    let mut last_progress = Instant::now();
    // Push until the kernel takes nothing more for 300 ms: the server
    // stopped reading (or everything went, which the assertion below
    // rejects).
    while pushed < PUSH && last_progress.elapsed() < Duration::from_millis(300) {
        match (&slow).write(&payload[pushed..]) {
            Ok(n) => {
                pushed += n;
                last_progress = Instant::now();
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("pushing to the server: {err}"),
        }
    }
    let rss_after = rss_kib(server.pid());
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "pushed {} KiB before the server stopped reading; server RSS {rss_before} KiB -> {rss_after} KiB (+{growth} KiB)",
        pushed / 1024
    );
    assert!(
        pushed < PUSH,
        "one client pushed {PUSH} bytes and read no echo: expected the server to stop reading from it once about 64 KiB of its echo waited (its sends then stall); the server took all of them, and its RSS grew by {growth} KiB"
    );
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "one client pushed {pushed} bytes and read no echo: expected the server's RSS to grow by less than {RSS_GROWTH_BOUND_KIB} KiB; it grew by {growth} KiB"
    );

    // The stalled client does not stall the server.
    assert_eq!(echo(&other, b"still served\n"), b"still served\n");
    let third = connect(addr);
    assert_eq!(echo(&third, b"newcomer\n"), b"newcomer\n");

    // Now the slow client reads: every byte it pushed comes back, in order,
    // as the server resumes reading.
    slow.set_nonblocking(false).unwrap();
    let mut back = vec![0u8; pushed];
    (&slow).read_exact(&mut back).expect("the whole echo, late");
    assert!(
        back == payload[..pushed],
        "the late echo differs from what was sent"
    );
    assert!(
        !server.stderr().contains("panicked"),
        "{}",
        server.describe()
    );
}
