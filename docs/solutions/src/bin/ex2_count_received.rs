//! Exercise 2.1: the receiver thread counts what it showed, and the main
//! thread prints the count after the join.
//!
//! A scoped thread's `join` returns the thread's value: no atomic or lock
//! is needed to hand the count back. This program runs such a receiver on
//! a real UDP socket, sends it three datagrams, stops it with the flag, and
//! checks that the join returns 3.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Result, anyhow, ensure};

static RUNNING: AtomicBool = AtomicBool::new(true);

// ANCHOR: solution
/// Lesson 2's receiver loop, returning how many messages it showed. It
/// stops at the first timeout after the flag is cleared, so that what is
/// already queued is shown first.
fn receive_loop(socket: &UdpSocket) -> usize {
    let mut shown = 0;
    let mut buffer = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buffer) {
            Ok((len, sender)) => {
                println!(
                    "[from {sender}] {}",
                    String::from_utf8_lossy(&buffer[..len])
                );
                shown += 1;
            }
            // The timeout (or EINTR): look at the flag.
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                if !RUNNING.load(Ordering::SeqCst) {
                    return shown;
                }
            }
            Err(err) => {
                eprintln!("error: cannot receive: {err}; the receiver stops");
                return shown;
            }
        }
    }
}
// ANCHOR_END: solution

fn main() -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    // ANCHOR: join
    let shown = thread::scope(|scope| -> Result<usize> {
        let receiver = scope.spawn(|| receive_loop(&socket));
        for text in ["one", "two", "three"] {
            sender.send_to(text.as_bytes(), socket.local_addr()?)?;
        }
        // On loopback, send_to returns with the datagram already queued at
        // the receiver: the three are there before the flag is cleared.
        RUNNING.store(false, Ordering::SeqCst);
        receiver
            .join()
            .map_err(|_| anyhow!("the receiver thread panicked"))
    })?;
    println!("[main] the receiver showed {shown} messages.");
    // ANCHOR_END: join
    ensure!(shown == 3, "expected 3 messages, the join returned {shown}");
    Ok(())
}
