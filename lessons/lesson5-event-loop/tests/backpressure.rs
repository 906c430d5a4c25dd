//! Backpressure: a client that sends and never reads cannot make the server
//! hold its echo in memory without bound. The server keeps at most
//! MAX_PENDING bytes of echo per client, then stops reading from it; the
//! kernel's buffers fill and the client's own sends stall. Meanwhile every
//! other client is served, and once the client reads, every byte it sent
//! comes back.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{connect, echo, random_letters, rss_kib, start_server};
use testkit::LOCALHOST;

/// What the client tries to push: far more than the kernel's buffers on
/// both sides hold (a few MiB each on Linux by default).
const PUSH: usize = 64 * 1024 * 1024;

/// How much the server's resident memory may grow meanwhile: its 64 KiB
/// cap per client plus room for the allocator's and the log's slack. A
/// server that read everything would grow by tens of MiB.
const RSS_GROWTH_BOUND_KIB: u64 = 4 * 1024;

#[test]
fn a_client_that_never_reads_cannot_grow_the_server_and_others_are_served() {
    let (server, addr) = start_server(SocketAddr::new(LOCALHOST, 0), &[]);
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
        "the server took all {PUSH} bytes without the client reading any echo"
    );
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "server RSS grew by {growth} KiB while a client never read"
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
