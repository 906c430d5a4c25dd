//! Out of descriptors: with a low RLIMIT_NOFILE the server cannot accept
//! every client. It must not spin (a queued connection keeps the listener
//! readable, and a level-triggered loop that just retried would burn a
//! CPU); it turns the extra clients away with the spare-descriptor trick,
//! keeps serving the ones it holds, and takes new ones once some leave.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::thread;
use std::time::Duration;

use common::{SERVER, connect, cpu_ticks, echo, server_from};
use nix::sys::resource::{Resource, setrlimit};
use testkit::{LOCALHOST, Running, command};

/// The server's descriptor limit. It holds 0, 1, 2, the signalfd, the
/// listener, the epoll instance and the spare: 7, so at most 9 clients fit
/// (fewer if the test runner let the child inherit descriptors).
const NOFILE: u64 = 16;

fn start_limited_server() -> (Running, SocketAddr) {
    let bind = SocketAddr::new(LOCALHOST, 0).to_string();
    let mut cmd = command(SERVER, &["--bind", &bind, "--backlog", "32"]);
    // SAFETY: setrlimit is async-signal-safe and touches only the child,
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            setrlimit(Resource::RLIMIT_NOFILE, NOFILE, NOFILE).map_err(std::io::Error::from)
        });
    }
    server_from(Running::start("server", cmd))
}

/// The echo of a short `text`, or None if the server closed the
/// connection instead (end of stream, or a reset if our bytes arrived
/// after its close).
fn try_echo(mut stream: &TcpStream, text: &[u8]) -> Option<Vec<u8>> {
    stream.write_all(text).ok()?;
    let mut back = vec![0u8; text.len()];
    stream.read_exact(&mut back).ok()?;
    Some(back)
}

fn assert_echoes(stream: &TcpStream, text: &str) {
    assert_eq!(echo(stream, text.as_bytes()), text.as_bytes());
}

#[test]
fn out_of_descriptors_it_turns_clients_away_without_spinning_and_recovers() {
    let (server, addr) = start_limited_server();
    // Connect clients one by one until the server turns one away.
    let mut served: Vec<TcpStream> = Vec::new();
    loop {
        let stream = connect(addr);
        let text = format!("client {}\n", served.len());
        let Some(back) = try_echo(&stream, text.as_bytes()) else {
            break; // Closed at once: no descriptor left for it.
        };
        assert_eq!(back, text.as_bytes());
        served.push(stream);
        assert!(served.len() < NOFILE as usize, "no limit reached");
    }
    server.expect_stderr_line("EMFILE");
    let fit = served.len();
    assert!(
        (5..=9).contains(&fit),
        "{fit} clients fit under a limit of {NOFILE}"
    );

    let ticks_before = cpu_ticks(server.pid());
    // The kernel completes these connections (they are queued), but the
    // server has no descriptor left for them.
    let mut extra: Vec<TcpStream> = (0..6).map(|_| connect(addr)).collect();
    for _ in 0..6 {
        server.expect_stderr_line("EMFILE");
    }
    // Each one is closed at once: it reads the end (or a reset), not
    // silence until the deadline.
    for stream in &mut extra {
        let mut buffer = [0u8; 16];
        match stream.read(&mut buffer) {
            Ok(0) => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a turned-away client read {other:?}"),
        }
    }
    thread::sleep(Duration::from_millis(500));
    let used = cpu_ticks(server.pid()) - ticks_before;
    // A spinning server would use about as many ticks as 1/100 s passed.
    assert!(
        used <= 10,
        "the server used {used} ticks over ~0.5 s at its descriptor limit"
    );

    // The clients it holds are still served...
    assert_echoes(&served[0], "still here\n");
    // ...and once some leave, new clients are served again.
    drop(served);
    for _ in 0..fit {
        server.expect_stdout_line(" left");
    }
    let newcomer = connect(addr);
    assert_echoes(&newcomer, "room again\n");
    let error = server.stderr();
    let first = error.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("cannot serve client 127.0.0.1:")
            && first.ends_with("EMFILE: Too many open files; closed its connection at once"),
        "{first}"
    );
}
