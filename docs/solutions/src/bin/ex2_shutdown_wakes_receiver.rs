//! Exercise 2.2: stop the receiver at once instead of within a timeout.
//!
//! Lesson 2's receiver notices the shutdown within one receive timeout. On
//! Linux, shutdown(2) with SHUT_RD on a UDP socket wakes a thread blocked in
//! recvfrom(2): the call returns 0 bytes. So the receiver can wait without
//! any timeout, and the main thread wakes it when it is time to go.
//!
//! This is Linux behaviour, not POSIX: on an unconnected UDP socket the
//! shutdown call itself fails with ENOTCONN (there is no connection to shut
//! down), and Linux marks the socket shut and wakes its waiters anyway.
//! Other systems may only fail. So the error is checked and reported, not
//! thrown away, and the program checks that the receiver did wake.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use nix::errno::Errno;
use nix::sys::socket::{Shutdown, shutdown};

// ANCHOR: solution
/// Waits for datagrams with no timeout; returns when the socket is shut down.
fn receive_loop(socket: &UdpSocket) -> usize {
    let mut buffer = [0u8; 65_536];
    let mut received = 0;
    // After shutdown(SHUT_RD) recv_from returns Ok((0, _)) at once.
    while let Ok((len, _)) = socket.recv_from(&mut buffer) {
        if len == 0 {
            break;
        }
        received += 1;
    }
    received
}
// ANCHOR_END: solution

fn main() -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let started = Instant::now();
    let (received, shut) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| receive_loop(&socket));
        std::thread::sleep(Duration::from_millis(100));
        // The shutdown that lesson 2 signals with RUNNING and a timeout.
        // ANCHOR: wake
        // Linux: fails with ENOTCONN on an unconnected UDP socket, and
        // still wakes the receiver. Any other outcome is worth reporting.
        let shut = shutdown(socket.as_raw_fd(), Shutdown::Read);
        match shut {
            Err(Errno::ENOTCONN) => {
                println!(
                    "shutdown: ENOTCONN (unconnected UDP socket; Linux wakes the receiver anyway)"
                )
            }
            Ok(()) => println!("shutdown: succeeded"),
            Err(err) => eprintln!("warning: shutdown failed: {err}"),
        }
        // ANCHOR_END: wake
        (receiver.join().unwrap_or(0), shut)
    });
    let took = started.elapsed();
    println!("receiver stopped after {took:?} ({received} datagrams)");
    ensure!(
        shut == Err(Errno::ENOTCONN),
        "on Linux, shutdown on an unconnected UDP socket fails with ENOTCONN; got {shut:?}"
    );
    ensure!(
        took < Duration::from_secs(1),
        "the receiver should stop at once"
    );
    Ok(())
}
