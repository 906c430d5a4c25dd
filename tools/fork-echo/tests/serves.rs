//! The fork-per-client server echoes to several clients at once, each in
//! a process of its own, and reaps every child when its client leaves (no
//! zombie is left behind).

use std::time::{Duration, Instant};

use testkit::tcp::{assert_echo, close, connect, random_bytes, start_server};

/// The server's children and their states ('Z' for a zombie), from /proc.
fn children(pid: u32) -> Vec<(u32, char)> {
    procfs::process::all_processes()
        .expect("list /proc")
        .flatten()
        // A process may exit between the listing and this read: skip it.
        .filter_map(|process| process.stat().ok())
        .filter(|stat| stat.ppid as u32 == pid)
        .map(|stat| (stat.pid as u32, stat.state))
        .collect()
}

#[test]
fn serves_each_client_in_its_own_process_and_reaps_it() {
    let (server, addr) = start_server("fork-echo-server", "127.0.0.1:0".parse().unwrap(), &[]);
    let pid = server.pid().as_raw() as u32;
    let clients: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    for (seed, client) in clients.iter().enumerate() {
        assert_echo(client, &random_bytes(seed as u64, 10_000));
    }
    let live = children(pid);
    assert_eq!(live.len(), 3, "a process per client: {live:?}");
    for client in clients {
        close(client);
    }
    let deadline = Instant::now() + testkit::DEADLINE;
    while !children(pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "children left behind (Z = zombie, not reaped): {:?}",
            children(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
