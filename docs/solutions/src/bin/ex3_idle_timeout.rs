//! Exercise 3.3: drop clients that stay silent too long.
//!
//! A client that connects and never sends holds a thread and a descriptor
//! forever. SO_RCVTIMEO on the accepted socket (std: set_read_timeout) makes
//! its recv fail with EAGAIN after a while; the thread then closes it.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

const IDLE_LIMIT: Duration = Duration::from_millis(200);

// ANCHOR: solution
fn serve_client(mut client: TcpStream) {
    if client.set_read_timeout(Some(IDLE_LIMIT)).is_err() {
        return;
    }
    let mut buffer = [0u8; 4096];
    loop {
        match client.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if client.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            // EAGAIN (WouldBlock) or, on some systems, TimedOut: idle too long.
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let _ = client.write_all(b"idle too long, bye\n");
                break;
            }
            Err(_) => break,
        }
    }
}
// ANCHOR_END: solution

fn main() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            thread::spawn(|| serve_client(client));
        }
    });
    let mut idle = TcpStream::connect(addr)?;
    idle.set_read_timeout(Some(Duration::from_secs(5)))?;
    let started = Instant::now();
    let mut goodbye = String::new();
    idle.read_to_string(&mut goodbye)?;
    println!(
        "after {:?} the server said: {}",
        started.elapsed(),
        goodbye.trim_end()
    );
    ensure!(
        goodbye == "idle too long, bye\n",
        "the idle client is dropped"
    );
    Ok(())
}
