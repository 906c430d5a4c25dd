//! The fork-per-client server echoes to several clients at once, each in
//! a process of its own, and reaps every child when its client leaves (no
//! zombie is left behind).

use std::time::{Duration, Instant};

use testkit::tcp::{assert_echo, close, connect, random_bytes, start_server};

/// The server's children and their states ('Z' for a zombie), from /proc.
fn children(pid: u32) -> Vec<(u32, char)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("list /proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            found.push((child, fields[0].chars().next().unwrap_or('?')));
        }
    }
    found
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
