//! Why lessons 3 and 4 answer a 4 KiB message slowly, checked on this
//! kernel: they echo in pieces of at most 1024 bytes (the original's
//! buffer). The first piece leaves at once; Nagle's algorithm (tcp(7),
//! TCP_NODELAY) holds each later small piece while data is unacknowledged,
//! and the client, which sends nothing while it waits for the whole echo,
//! delays its acknowledgement (Linux waits at least 40 ms). So each round
//! trip waits for a delayed ACK; with TCP_NODELAY on the echoing socket it
//! does not.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use testkit::LOCALHOST;

const MESSAGE: usize = 4096;
const ROUNDS: usize = 30;

/// The median of the last 10 of `ROUNDS` round trips of a 4 KiB message
/// through an echo that reads and writes at most 1024 bytes at a time
/// (the first rounds may be acknowledged at once: Linux starts a
/// connection in quick-ACK mode).
fn median_round_trip(nodelay: bool) -> Duration {
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind a listener");
    let address = listener.local_addr().expect("the listener's address");
    let server = thread::spawn(move || {
        let (mut echo, _) = listener.accept().expect("accept");
        echo.set_nodelay(nodelay).expect("TCP_NODELAY");
        let mut piece = [0u8; 1024];
        loop {
            match echo.read(&mut piece) {
                Ok(0) | Err(_) => return,
                Ok(read) => echo.write_all(&piece[..read]).expect("echo a piece"),
            }
        }
    });
    let mut client = TcpStream::connect(address).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    let message = [7u8; MESSAGE];
    let mut echoed = [0u8; MESSAGE];
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        client.write_all(&message).expect("send 4 KiB");
        client.read_exact(&mut echoed).expect("read the 4 KiB echo");
        times.push(start.elapsed());
    }
    drop(client);
    server.join().expect("the echo thread ends");
    let mut last: Vec<Duration> = times[ROUNDS - 10..].to_vec();
    last.sort();
    last[last.len() / 2]
}

#[test]
fn an_echo_in_1024_byte_pieces_waits_for_delayed_acks_unless_nodelay() {
    let nagle = median_round_trip(false);
    let nodelay = median_round_trip(true);
    assert!(
        nagle >= Duration::from_millis(30),
        "a 4 KiB echo in 1024-byte pieces took {nagle:?} per round trip: expected a delayed ACK's wait (≥ 30 ms)"
    );
    assert!(
        nodelay < Duration::from_millis(20),
        "with TCP_NODELAY it took {nodelay:?} per round trip: expected no delayed-ACK wait (< 20 ms)"
    );
}
