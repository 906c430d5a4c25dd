//! Lesson 5's client: lesson 3's client with poll(2) on the keyboard and the
//! socket, so it sees a dead server at once and a huge line cannot deadlock
//! it. It sends what the kernel takes, reads every echo as it comes, and at
//! the end of input half-closes and prints the echoes still on their way.
//! Typing `exit` (or Ctrl+D) quits. Why: see lesson 5's client chapter.

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, SockaddrStorage, connect, recv, send,
    shutdown, socket,
};
use nix::unistd;

/// A line-oriented client for the echo server.
#[derive(Parser, Debug)]
#[command(name = "lesson5-client", version, args_override_self = true)]
struct Args {
    /// Address of the echo server (IPv4 or IPv6, e.g. `[::1]:8890`).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8890")]
    server: SocketAddr,
}

// ANCHOR: limits
/// How many bytes one read of the keyboard or the socket may return.
const BUFFER_SIZE: usize = 64 * 1024;

/// Stop reading the keyboard while this many bytes wait to be sent: typed
/// (or piped) input cannot pile up faster than the server takes it.
const MAX_UNSENT: usize = 1024 * 1024;
// ANCHOR_END: limits

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

    // ANCHOR: nonblocking
    // New: from here on the socket is non-blocking. send and recv take or
    // return what they can now, or fail with EAGAIN; the loop then polls.
    fcntl(&socket, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .context("cannot make the socket non-blocking")?;
    // ANCHOR_END: nonblocking

    // ANCHOR: chat_loop
    // 3. Send each line typed and print its echo, whichever comes first.
    let mut state = Chat::default();
    let stdin = std::io::stdin();
    loop {
        // a. Wait for the keyboard while input is wanted; for the socket's
        // echoes (and end) always, and for room to send while bytes wait.
        let watch_keyboard = !state.input_done && state.unsent.len() < MAX_UNSENT;
        let mut socket_events = PollFlags::POLLIN;
        if !state.unsent.is_empty() {
            socket_events |= PollFlags::POLLOUT;
        }
        let mut fds = vec![PollFd::new(socket.as_fd(), socket_events)];
        if watch_keyboard {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err).context("cannot wait with poll"),
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|events| !events.is_empty());
        let socket_ready = ready(&fds[0]);
        // POLLIN, or POLLHUP: the other end of a piped stdin closed.
        let keyboard_ready = fds.get(1).is_some_and(ready);

        // b. Echoes, or the server's end: seen at once, even while nobody
        // types.
        if socket_ready && state.receive(&socket, server)? {
            return Ok(()); // The server closed after every echo came back.
        }

        // c. Typed bytes: cut into lines; a whole line is queued to send.
        if keyboard_ready {
            state
                .read_keyboard()
                .context("cannot read standard input")?;
        }

        // d. Send what the kernel takes now; then, once the input has ended
        // and everything is out, half-close.
        state.send_some(&socket, server)?;
        if state.input_done && state.unsent.is_empty() && !state.shut_down {
            // shutdown(SHUT_WR) sends our FIN but keeps reading: the server
            // sends the echoes it owes, then closes. close() would lose them.
            shutdown(socket.as_raw_fd(), Shutdown::Write)
                .with_context(|| format!("cannot half-close the connection to {server}"))?;
            state.shut_down = true;
        }
    }
    // ANCHOR_END: chat_loop
}

// ANCHOR: state
/// Everything the loop keeps between two waits.
#[derive(Default)]
struct Chat {
    /// Typed bytes not yet cut into a line.
    typed: Vec<u8>,
    /// Whole lines waiting to be sent, as one byte stream (a deque: sent
    /// bytes leave from the front without moving the rest).
    unsent: VecDeque<u8>,
    /// The length of each line whose echo has not come back whole, oldest
    /// first: what cuts the incoming stream back into lines.
    expected: VecDeque<usize>,
    /// Echo bytes received but not printed yet.
    echoed: Vec<u8>,
    /// The input ended, or `exit` was typed: nothing more will be queued.
    input_done: bool,
    /// Said `goodbye` at the end (the user typed `exit`).
    said_exit: bool,
    /// Our end was sent with shutdown(SHUT_WR).
    shut_down: bool,
}
// ANCHOR_END: state

impl Chat {
    // ANCHOR: keyboard
    /// One read(2) of the keyboard: poll said it is ready, so this does not
    /// wait for the rest of a line.
    fn read_keyboard(&mut self) -> nix::Result<()> {
        let mut chunk = vec![0u8; BUFFER_SIZE];
        let read = match unistd::read(std::io::stdin().as_fd(), &mut chunk) {
            Ok(read) => read,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(()),
            Err(err) => return Err(err),
        };
        // Only the new bytes can hold a newline: the rest was searched.
        let mut search_from = self.typed.len();
        self.typed.extend_from_slice(&chunk[..read]);
        while let Some(at) = self.typed[search_from..].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.typed.drain(..=search_from + at).collect();
            self.queue_line(line);
            if self.input_done {
                return Ok(());
            }
            search_from = 0;
        }
        if read == 0 {
            // End of input (Ctrl+D). A last line without a newline is
            // still sent, as lesson 3's read_until does.
            let last = std::mem::take(&mut self.typed);
            if !last.is_empty() {
                self.queue_line(last);
            }
            self.input_done = true;
        }
        Ok(())
    }

    /// Queues one typed line (with its newline, if it had one) to be sent.
    fn queue_line(&mut self, line: Vec<u8>) {
        // As in lesson 3: `exit` is a command to this client, never sent.
        // Lines typed before it still get their echoes.
        if trim_newline(&line) == b"exit" {
            self.input_done = true;
            self.said_exit = true;
            self.typed.clear();
            return;
        }
        self.expected.push_back(line.len());
        self.unsent.extend(&line);
    }
    // ANCHOR_END: keyboard

    // ANCHOR: send_some
    /// Sends as much of the queued lines as the kernel takes now.
    fn send_some(&mut self, socket: &OwnedFd, server: SocketAddr) -> Result<()> {
        while !self.unsent.is_empty() {
            // MSG_NOSIGNAL: a server gone is EPIPE, not a SIGPIPE death.
            // The deque's first contiguous part; the rest goes next turn.
            let (unsent, _) = self.unsent.as_slices();
            match send(socket.as_raw_fd(), unsent, MsgFlags::MSG_NOSIGNAL) {
                Ok(sent) => {
                    self.unsent.drain(..sent);
                }
                // The send buffer is full: the rest goes at POLLOUT. The loop
                // reads echoes meanwhile, so the server keeps reading too.
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(err) => {
                    return Err(anyhow!(err).context(format!("cannot send to server {server}")));
                }
            }
        }
        Ok(())
    }
    // ANCHOR_END: send_some

    // ANCHOR: receive
    /// Reads what the server sent and prints every echo now complete.
    /// Returns true when the server closed the connection after sending
    /// every echo it owed, once our end was sent: the normal end.
    fn receive(&mut self, socket: &OwnedFd, server: SocketAddr) -> Result<bool> {
        let mut chunk = vec![0u8; BUFFER_SIZE];
        match recv(socket.as_raw_fd(), &mut chunk, MsgFlags::empty()) {
            Ok(0) => {
                // Fix: lesson 3's client sees the server's end only when it
                // next sends; here it is seen the moment it comes.
                if let Some(&len) = self.expected.front() {
                    bail!(
                        "server {server} closed the connection ({} of {len} bytes of the echo came back)",
                        self.echoed.len()
                    );
                }
                if !self.echoed.is_empty() {
                    // More than was sent came back: shown, not dropped.
                    let text = String::from_utf8_lossy(&self.echoed).into_owned();
                    say(format_args!("client receive: {}", trim_newline_str(&text)))?;
                }
                if !self.shut_down {
                    bail!("server {server} closed the connection");
                }
                if self.said_exit {
                    say(format_args!("goodbye"))?;
                }
                Ok(true)
            }
            Ok(received) => {
                self.echoed.extend_from_slice(&chunk[..received]);
                // Each line's echo is exactly as long as the line: print
                // every one that came back whole.
                while let Some(&len) = self.expected.front() {
                    if self.echoed.len() < len {
                        break;
                    }
                    let echo: Vec<u8> = self.echoed.drain(..len).collect();
                    self.expected.pop_front();
                    let text = String::from_utf8_lossy(trim_newline(&echo)).into_owned();
                    say(format_args!("client receive: {text}"))?;
                }
                Ok(false)
            }
            // Nothing after all: poll will say when.
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(false),
            Err(err) => Err(anyhow!(err).context(format!("cannot receive from server {server}"))),
        }
    }
    // ANCHOR_END: receive
}

/// `line` without one trailing "\n", then one trailing "\r".
fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// [`trim_newline`] for text.
fn trim_newline_str(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

/// Prints one line to stdout; an error (stdout closed) is returned, not a
/// panic as with `println!`.
fn say(line: std::fmt::Arguments) -> Result<()> {
    writeln!(std::io::stdout().lock(), "{line}").context("cannot write to standard output")
}
