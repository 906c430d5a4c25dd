//! Exercise 3.1: lesson 3's echo, sending back every ASCII letter in upper case.
//!
//! The change is two lines in `serve_client`: the bytes received are logged
//! as they came and sent back upper-cased. This demo serves one client on
//! loopback with that loop and checks what comes back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Result, ensure};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};

/// Sends every byte of `data`, as lesson 3's `send_all` does.
fn send_all(client: &TcpStream, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match send(client.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(sent) => data = &data[sent..],
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Lesson 3's `serve_client`, upper-casing what it sends back.
fn serve_client(client: TcpStream) {
    let mut buffer = [0u8; 1024];
    loop {
        let received = match recv(client.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
            Ok(0) | Err(_) => break,
            Ok(received) => received,
        };
        let data = &buffer[..received];
        println!("recv: {}", String::from_utf8_lossy(data).trim_end());
        // ANCHOR: solution
        // Log what came, send back the letters upper-cased: a copy, since
        // `to_ascii_uppercase` leaves every other byte (UTF-8 included) as it is.
        let upper = data.to_ascii_uppercase();
        if send_all(&client, &upper).is_err() {
            break;
        }
        // ANCHOR_END: solution
    }
}

fn main() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (accepted, _) = listener.accept()?;
    let server = std::thread::spawn(move || serve_client(accepted));

    let line = "hello, wörld 3.1\n";
    client.write_all(line.as_bytes())?;
    let mut back = vec![0u8; line.len()];
    client.read_exact(&mut back)?;
    let back = String::from_utf8(back)?;
    println!("sent {line:?}, got back {back:?}");
    ensure!(
        back == "HELLO, WöRLD 3.1\n",
        "the echo should upper-case ASCII letters only"
    );
    drop(client);
    server
        .join()
        .expect("the server thread ends when the client leaves");
    Ok(())
}
