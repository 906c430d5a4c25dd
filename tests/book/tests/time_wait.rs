//! The TIME_WAIT chapter's claims about the state itself, checked on this
//! kernel: only the side that closes first enters TIME-WAIT, and it stays
//! there for 60 seconds on Linux (`TCP_TIMEWAIT_LEN`). The lesson tests show
//! what this does to a server's restart; this one reads the timer.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use nix::unistd::{SysconfVar, sysconf};
use testkit::{DEADLINE, LOCALHOST, TcpState, tcp_sockets};

/// The seconds left on the TIME-WAIT timer of the IPv4 socket `local` →
/// `remote`, read from `/proc/net/tcp`, or `None` while there is no such row.
/// For a TIME-WAIT row the kernel prints `03:<ticks left>` in the `tr:tm->when`
/// column (timer kind 3 is the TIME-WAIT timer), in clock ticks (USER_HZ).
fn time_wait_seconds_left(local: SocketAddr, remote: SocketAddr) -> Option<f64> {
    let ticks_per_second = sysconf(SysconfVar::CLK_TCK)
        .expect("sysconf(_SC_CLK_TCK)")
        .expect("a clock tick rate") as f64;
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).find_map(|row| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        // sl local remote st tx_queue:rx_queue tr:tm->when …; ports are hex.
        let ours = fields.get(1)?.ends_with(&format!(":{:04X}", local.port()))
            && fields.get(2)?.ends_with(&format!(":{:04X}", remote.port()))
            && *fields.get(3)? == "06";
        if !ours {
            return None;
        }
        let (kind, ticks) = fields.get(5)?.split_once(':')?;
        assert_eq!(
            kind, "03",
            "a TIME-WAIT row runs the TIME-WAIT timer: {row}"
        );
        Some(u64::from_str_radix(ticks, 16).ok()? as f64 / ticks_per_second)
    })
}

#[test]
fn time_wait_lasts_60_seconds_on_the_side_that_closed_first() {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let server = listener.local_addr().unwrap();
    let mut client_stream = TcpStream::connect(server).unwrap();
    let client = client_stream.local_addr().unwrap();
    let (accepted, _) = listener.accept().unwrap();

    // The server's end closes first (FIN), as when Ctrl+C kills the server;
    // the client reads the end of the stream, then closes its own end.
    drop(accepted);
    client_stream.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(
        client_stream.read(&mut [0; 16]).unwrap(),
        0,
        "end of stream"
    );
    drop(client_stream);

    let start = Instant::now();
    let left = loop {
        if let Some(left) = time_wait_seconds_left(server, client) {
            break left;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no TIME-WAIT socket {server} → {client} after {DEADLINE:?}: {:?}",
            tcp_sockets()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // Fresh from the close: just under 60 s left (a slow machine loses a few).
    assert!(
        (50.0..=60.0).contains(&left),
        "TIME-WAIT timer: {left} s left, expected just under 60"
    );

    // The side that closed second went through LAST-ACK to CLOSED: no
    // TIME-WAIT (nor any other) socket is left with the client's port.
    let start = Instant::now();
    while let Some(socket) = tcp_sockets()
        .into_iter()
        .find(|socket| socket.local == client && socket.remote == server)
    {
        assert_ne!(socket.state, TcpState::TimeWait, "{socket}");
        assert!(
            start.elapsed() < DEADLINE,
            "the client's socket lingers: {socket}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
