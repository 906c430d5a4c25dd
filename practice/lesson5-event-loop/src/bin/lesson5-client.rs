//! Lesson 3's client: sends each line typed on stdin to the echo server and
//! prints the echo; `exit` (or Ctrl+D) quits. It serves lesson 4 as well.
//!
//! The step numbers are the course's. Kept from the post: it does one thing
//! at a time, so a huge line deadlocks it and it sees a dead server only
//! when it next sends (see lesson 3, "The client"; lesson 5 fixes both).

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, connect, recv, send, socket,
};

/// A line-oriented client for the echo server.
#[derive(Parser, Debug)]
// A later occurrence of a flag replaces an earlier one.
#[command(name = "lesson5-client", version, args_override_self = true)]
struct Args {
    /// Address of the echo server (IPv4 or IPv6, e.g. `[::1]:8890`).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8890")]
    server: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(server: SocketAddr) -> Result<()> {
    let family = match server {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };

    // ANCHOR: connect
    // 1. Create the socket: TCP, of the server address's family.
    let socket = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .context("cannot create a TCP socket")?;

    // 2. Connect to the server. The kernel picks this side's port.
    match connect(socket.as_raw_fd(), &SockaddrStorage::from(server)) {
        Ok(()) => {}
        Err(Errno::ECONNREFUSED) => {
            bail!(
                "cannot connect to {server}: {}; is the server running?",
                Errno::ECONNREFUSED
            )
        }
        Err(err) => return Err(anyhow!(err).context(format!("cannot connect to {server}"))),
    }
    say(format_args!("connected to {server}"))?;
    // ANCHOR_END: connect

    // ANCHOR: chat_loop
    // 3. Send each line typed and print its echo.
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Raw bytes: a line that is not UTF-8 is still sent as typed.
        if stdin
            .read_until(b'\n', &mut line)
            .context("cannot read standard input")?
            == 0
        {
            return Ok(()); // End of input (Ctrl+D).
        }
        // Fix: the original sends "exit" and quits without its echo; it is
        // a command to this client, never sent.
        if trim_newline(&line) == b"exit" {
            return say(format_args!("goodbye"));
        }
        send_all(&socket, &line).with_context(|| format!("cannot send to server {server}"))?;
        let echo = read_echo(&socket, line.len(), server)?;
        let text = String::from_utf8_lossy(trim_newline(&echo));
        say(format_args!("client receive: {text}"))?;
    }
    // ANCHOR_END: chat_loop
}

/// Sends every byte of `data`: a send may return short (after a signal,
/// for instance), and the loop sends the rest.
fn send_all(socket: &OwnedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        // MSG_NOSIGNAL: a server gone is an EPIPE error, not a SIGPIPE death.
        match send(socket.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(sent) => data = &data[sent..],
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

// ANCHOR: read_echo
/// Receives exactly `len` bytes: the echo of the line just sent.
///
/// Fix: the original calls recv once, but TCP is a byte stream: one recv
/// may return part of an echo. Counting bytes keeps each echo whole.
fn read_echo(socket: &OwnedFd, len: usize, server: SocketAddr) -> Result<Vec<u8>> {
    let mut echo = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match recv(socket.as_raw_fd(), &mut echo[filled..], MsgFlags::empty()) {
            Ok(0) => bail!(
                "server {server} closed the connection ({filled} of {len} bytes of the echo came back)"
            ),
            Ok(received) => filled += received,
            Err(Errno::EINTR) => {}
            Err(err) => {
                return Err(anyhow!(err).context(format!("cannot receive from server {server}")));
            }
        }
    }
    Ok(echo)
}
// ANCHOR_END: read_echo

/// `line` without one trailing "\n", then one trailing "\r".
fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Prints one line to stdout; an error (stdout closed) is returned, not a
/// panic as with `println!`.
fn say(line: std::fmt::Arguments) -> Result<()> {
    writeln!(std::io::stdout().lock(), "{line}").context("cannot write to standard output")
}
