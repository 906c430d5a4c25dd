//! Exercise 3.2: cap the number of client threads.
//!
//! Lesson 3 starts a thread for every client, however many come. A counter
//! of live clients, taken before spawning and given back when the client's
//! thread ends (in a Drop, so that no path forgets it), lets the accept loop
//! turn away the client over the cap with a one-line message.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use anyhow::{Result, ensure};

// ANCHOR: solution
/// One live client; dropping it frees its place.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A place for one more client, unless `max` are already served.
    fn take(live: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        live.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(Arc::clone(live)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, max: usize) {
    let live = Arc::new(AtomicUsize::new(0));
    for mut client in listener.incoming().flatten() {
        match Slot::take(&live, max) {
            // The slot moves into the thread and is dropped when it ends.
            Some(slot) => {
                thread::spawn(move || {
                    let _slot = slot;
                    echo(client)
                });
            }
            None => {
                let _ = client.write_all(b"server full, try again later\n");
            }
        }
    }
}
// ANCHOR_END: solution

fn echo(mut client: TcpStream) {
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = client.read(&mut buffer) {
        if client.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
}

fn main() -> Result<()> {
    // std's listener is fine here: this exercise is not about SO_REUSEADDR.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || accept_loop(listener, 2));
    let mut served = Vec::new();
    for _ in 0..2 {
        let mut client = TcpStream::connect(addr)?;
        client.write_all(b"hi\n")?;
        let mut line = String::new();
        BufReader::new(&client).read_line(&mut line)?;
        ensure!(line == "hi\n", "a client within the cap is echoed");
        served.push(client);
    }
    let third = TcpStream::connect(addr)?;
    let mut line = String::new();
    BufReader::new(&third).read_line(&mut line)?;
    println!("third client got: {}", line.trim_end());
    ensure!(
        line.starts_with("server full"),
        "the client over the cap is turned away"
    );
    Ok(())
}
