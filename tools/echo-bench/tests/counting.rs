//! The load generator counts what it should: round trips, corrupted bytes,
//! and connections a server drops, against tiny echo servers made here for
//! the purpose (std's listener is fine in a tool's tests), and a quick run
//! against lesson 4's real server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use serde_json::Value;

/// How a test server misbehaves.
#[derive(Clone, Copy)]
enum Behaviour {
    Echo,
    /// Flips one bit of the 10th byte of every connection's stream.
    CorruptOneByte,
    /// Closes each connection after echoing its first `n` bytes.
    CloseAfter(usize),
}

fn test_server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback test server");
    let addr = listener.local_addr().expect("test server address");
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            thread::spawn(move || serve(client, behaviour));
        }
    });
    addr
}

fn serve(mut client: TcpStream, behaviour: Behaviour) {
    let mut buffer = [0u8; 4096];
    let mut total = 0;
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Behaviour::CorruptOneByte = behaviour
            && total <= 9
            && 9 < total + n
        {
            buffer[9 - total] ^= 0x01;
        }
        if let Behaviour::CloseAfter(limit) = behaviour
            && total + n > limit
        {
            let _ = client.write_all(&buffer[..limit - total]);
            return;
        }
        total += n;
        if client.write_all(&buffer[..n]).is_err() {
            return;
        }
    }
}

fn bench(args: &[&str]) -> Value {
    let output = assert_cmd::Command::new(testkit::bin("echo-bench"))
        .args(args)
        .arg("--json")
        .timeout(testkit::DEADLINE)
        .output()
        .expect("run echo-bench");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn counts_every_round_trip() {
    let addr = test_server(Behaviour::Echo).to_string();
    let report = bench(&[
        "load",
        "--addr",
        &addr,
        "--connections",
        "7",
        "--size",
        "100",
        "--rounds",
        "13",
    ]);
    assert_eq!(report["round_trips"], 7 * 13);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["mismatches"], 0);
}

#[test]
fn counts_a_corrupted_byte() {
    let addr = test_server(Behaviour::CorruptOneByte).to_string();
    let report = bench(&[
        "load",
        "--addr",
        &addr,
        "--connections",
        "3",
        "--size",
        "64",
        "--rounds",
        "2",
    ]);
    // One flipped byte per connection, and every round trip still completes.
    assert_eq!(report["mismatches"], 3);
    assert_eq!(report["round_trips"], 6);
}

#[test]
fn counts_connections_a_server_closes_early() {
    let addr = test_server(Behaviour::CloseAfter(100)).to_string();
    let report = bench(&[
        "load",
        "--addr",
        &addr,
        "--connections",
        "4",
        "--size",
        "64",
        "--rounds",
        "5",
    ]);
    // The first round trip (64 bytes) completes; the second is cut short.
    assert_eq!(report["round_trips"], 4);
    assert_eq!(report["failed"], 4);
    assert_eq!(report["failures"]["closed by the server too early"], 4);
}

#[test]
fn reports_a_refused_connection() {
    let addr = testkit::free_tcp_addr(testkit::LOCALHOST).to_string();
    let report = bench(&[
        "load",
        "--addr",
        &addr,
        "--connections",
        "2",
        "--rounds",
        "1",
    ]);
    assert_eq!(report["failed"], 2);
    assert_eq!(
        report["failures"]["connect: ECONNREFUSED: Connection refused"],
        2
    );
}

#[test]
fn a_quick_run_against_lesson_4_has_no_failures() {
    let (server, addr) =
        testkit::tcp::start_server("lesson4-server", "127.0.0.1:0".parse().unwrap(), &[]);
    let addr = addr.to_string();
    let load = bench(&[
        "load",
        "--addr",
        &addr,
        "--connections",
        "20",
        "--size",
        "512",
        "--seconds",
        "0.3",
    ]);
    assert_eq!(load["failed"], 0);
    assert_eq!(load["mismatches"], 0);
    assert!(load["round_trips"].as_u64().unwrap() > 20, "{load}");
    let pid = server.pid().to_string();
    let hold = bench(&[
        "hold",
        "--addr",
        &addr,
        "--connections",
        "50",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(hold["served"], 50);
    assert!(
        hold["server"]["threads"].as_u64().unwrap() >= 51,
        "a thread per held client: {hold}"
    );
    let churn = bench(&[
        "churn",
        "--addr",
        &addr,
        "--connections",
        "10",
        "--cycles",
        "200",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(churn["served"], 200);
    assert_eq!(churn["failed"], 0);
    assert_eq!(
        churn["after"]["threads"], churn["before"]["threads"],
        "{churn}"
    );
    drop(server);
}
