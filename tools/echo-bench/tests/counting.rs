//! The load generator counts what it should: round trips, corrupted bytes,
//! connections a server drops, rounds a server leaves unanswered, and the
//! rounds a stall delays in an open loop, against tiny echo servers made
//! here for the purpose (std's listener is fine in a tool's tests), and a
//! quick run against lesson 4's real server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// How a test server misbehaves.
#[derive(Clone, Copy)]
enum Behaviour {
    Echo,
    /// Flips one bit of the 10th byte of every connection's stream.
    CorruptOneByte,
    /// Closes each connection after echoing its first `n` bytes.
    CloseAfter(usize),
    /// Starves every second connection it accepts: reads what it sends but
    /// echoes it only once the client half-closes. The others get an echo.
    StarveHalf,
    /// Echoes, but waits 300 ms before the first echo of the run (one
    /// stall, as a garbage collector or a page fault storm would cause).
    StallOnce,
}

fn test_server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback test server");
    let addr = listener.local_addr().expect("test server address");
    let accepted = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let number = accepted.fetch_add(1, Ordering::SeqCst);
            let behaviour = match behaviour {
                Behaviour::StarveHalf if number % 2 == 1 => {
                    thread::spawn(move || starve(client));
                    continue;
                }
                Behaviour::StallOnce if number > 0 => Behaviour::Echo,
                other => other,
            };
            thread::spawn(move || serve(client, behaviour));
        }
    });
    addr
}

/// Keeps what the client sends and echoes it only after end of input: the
/// client gets no answer while it waits for one.
fn starve(mut client: TcpStream) {
    let mut kept = Vec::new();
    if client.read_to_end(&mut kept).is_ok() {
        let _ = client.write_all(&kept);
    }
}

fn serve(mut client: TcpStream, behaviour: Behaviour) {
    if let Behaviour::StallOnce = behaviour {
        thread::sleep(Duration::from_millis(300));
    }
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
    let (success, report, stderr) = bench_output(args);
    assert!(success, "{stderr}");
    report
}

/// Runs echo-bench with `--json`: whether it succeeded, its report, its stderr.
fn bench_output(args: &[&str]) -> (bool, Value, String) {
    let output = assert_cmd::Command::new(testkit::bin("echo-bench"))
        .args(args)
        .arg("--json")
        .timeout(testkit::DEADLINE)
        .output()
        .expect("run echo-bench");
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stdout)));
    (
        output.status.success(),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
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
fn every_round_counts_so_a_starving_server_shows_in_latency_and_fairness() {
    let addr = test_server(Behaviour::StarveHalf).to_string();
    let args = [
        "load",
        "--addr",
        &addr,
        "--connections",
        "10",
        "--seconds",
        "0.5",
    ];
    let report = bench(&args);
    // Five connections never got an answer in the window: each of their
    // rounds is recorded at its age, about the whole window.
    assert_eq!(report["fairness"]["idle"], 5, "{report}");
    assert_eq!(report["fairness"]["min"], 0, "{report}");
    assert!(
        report["fairness"]["jain"].as_f64().unwrap() <= 0.51,
        "{report}"
    );
    assert_eq!(report["unanswered"], 10, "{report}");
    assert!(report["max_us"].as_u64().unwrap() >= 450_000, "{report}");
    // ...so Little's law holds: W × λ is the 10 connections.
    let little = report["little_connections"].as_f64().unwrap();
    assert!((9.0..=11.0).contains(&little), "{report}");
    // The starved bytes came back after the half-close, every one checked.
    assert_eq!(report["mismatches"], 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
}

#[test]
fn the_little_check_fails_a_run_that_drops_the_starved_rounds() {
    let addr = test_server(Behaviour::StarveHalf).to_string();
    let (success, report, stderr) = bench_output(&[
        "load",
        "--addr",
        &addr,
        "--connections",
        "10",
        "--seconds",
        "0.5",
        "--answered-only",
    ]);
    // Counting only answered rounds, the latency describes the five served
    // connections: W × λ comes out near 5, not 10, and the run fails.
    assert!(!success, "{report}");
    assert!(stderr.contains("Little's law does not hold"), "{stderr}");
    let little = report["little_connections"].as_f64().unwrap();
    assert!(little < 7.0, "{report}");
}

#[test]
fn a_fair_server_serves_every_connection() {
    let addr = test_server(Behaviour::Echo).to_string();
    let report = bench(&[
        "load",
        "--addr",
        &addr,
        "--connections",
        "4",
        "--seconds",
        "0.3",
    ]);
    assert_eq!(report["fairness"]["idle"], 0, "{report}");
    assert!(report["fairness"]["min"].as_u64().unwrap() > 0, "{report}");
    let little = report["little_connections"].as_f64().unwrap();
    assert!((3.6..=4.4).contains(&little), "{report}");
}

#[test]
fn the_open_loop_sends_on_schedule_and_accounts_for_every_send() {
    let addr = test_server(Behaviour::Echo).to_string();
    let report = bench(&[
        "open",
        "--addr",
        &addr,
        "--connections",
        "4",
        "--rate",
        "2000",
        "--seconds",
        "0.5",
    ]);
    // 2,000/s for 0.5 s: the schedule holds 1,000 sends (4 × 250), and each
    // was either answered in the window or recorded unanswered at its end.
    assert_eq!(report["scheduled"], 1000, "{report}");
    let answered = report["answered"].as_u64().unwrap();
    let unanswered = report["unanswered"].as_u64().unwrap();
    assert_eq!(answered + unanswered, 1000, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["mismatches"], 0, "{report}");
}

#[test]
fn the_open_loop_charges_a_stall_to_every_send_it_delayed() {
    // One connection, one send every millisecond, and a server that stalls
    // 300 ms on its first echo. A closed loop would record one slow round;
    // the open loop records the ~300 sends that were due during the stall,
    // each from its due time.
    let addr = test_server(Behaviour::StallOnce).to_string();
    let open = bench(&[
        "open",
        "--addr",
        &addr,
        "--connections",
        "1",
        "--rate",
        "1000",
        "--seconds",
        "0.6",
    ]);
    assert!(open["p99_us"].as_u64().unwrap() >= 200_000, "{open}");
    // Half the sends fell in the stall: the 75th percentile is still slow.
    assert!(open["p50_us"].as_u64().unwrap() >= 1_000, "{open}");
    let addr = test_server(Behaviour::StallOnce).to_string();
    let closed = bench(&[
        "load",
        "--addr",
        &addr,
        "--connections",
        "1",
        "--seconds",
        "0.6",
    ]);
    assert!(closed["p50_us"].as_u64().unwrap() < 1_000, "{closed}");
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
