//! Plumbing for the chat tests (lessons 1, 2 and 5): start a chat peer on a
//! free port and read its address back, start two peers that know each
//! other, a plain UDP socket standing in for `nc -u`, and store a chat for
//! the book. What the lessons must do is asserted in their own test files.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::{DEADLINE, Running, command, find_socket_addr, free_udp_addr};

/// A short receive timeout keeps lesson 1's turns and lesson 2's shutdown
/// quick in tests.
pub const FAST: &[&str] = &["--recv-timeout-ms", "100"];

/// The prompt the chats print before reading a line.
pub const PROMPT: &str = "Enter message ('quit' to exit): ";

/// What lesson 2's receiver thread prints once it receives.
pub const RECEIVER_STARTED: &str = "[receiver] started, receiving on ";

/// What chat binary `bin` prints once it is ready for a line: its prompt,
/// except lesson 2, which (as the post's version 2) prints no prompt before
/// the first line; its receiver thread announces itself instead.
pub fn ready_text(bin: &str) -> &'static str {
    if bin == "lesson2-chat" {
        RECEIVER_STARTED
    } else {
        PROMPT
    }
}

/// Starts chat binary `bin` with `--bind bind --peer peer` and `extra`;
/// waits for its `bound to` line and returns it with the bound address.
pub fn start_peer(
    label: &str,
    bin: &str,
    bind: SocketAddr,
    peer: SocketAddr,
    extra: &[&str],
) -> (Running, SocketAddr) {
    let (bind, peer) = (bind.to_string(), peer.to_string());
    let mut args = vec!["--bind", bind.as_str(), "--peer", peer.as_str()];
    args.extend_from_slice(extra);
    let running = Running::start(label, command(bin, &args));
    let line = running.expect_stdout_line("bound to ");
    let addr = find_socket_addr(&line).unwrap_or_else(|| panic!("{label}: no address in {line:?}"));
    (running, addr)
}

/// Two peers that know each other: A (`bin_a`) binds a free port and sends
/// to a port reserved for B; B (`bin_b`) is started with the flags A printed
/// ("start the peer with: --bind … --peer …"), which tests that line.
/// Returns A, A's address, B, B's address.
pub fn start_pair(
    bin_a: &str,
    bin_b: &str,
    ip: IpAddr,
    extra: &[&str],
) -> (Running, SocketAddr, Running, SocketAddr) {
    let b_addr = free_udp_addr(ip);
    let (a, a_addr) = start_peer("peer A", bin_a, SocketAddr::new(ip, 0), b_addr, extra);
    let line = a.expect_stdout_line("start the peer with: ");
    let printed = line
        .split_once("start the peer with: ")
        .map(|(_, command)| command)
        .unwrap_or_default();
    let args: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(
        args,
        ["--bind", &b_addr.to_string(), "--peer", &a_addr.to_string()],
        "peer A prints the flags that start peer B: bind B's address, send to A's"
    );
    let b = Running::start("peer B", command(bin_b, &args));
    let line = b.expect_stdout_line("bound to ");
    assert_eq!(
        find_socket_addr(&line),
        Some(b_addr),
        "peer B binds the address A sends to"
    );
    (a, a_addr, b, b_addr)
}

/// A chat peer whose other side is a plain UDP socket in the test, as
/// `nc -u` would be.
pub struct SocketPeer {
    pub app: Running,
    /// Where the program receives.
    pub app_addr: SocketAddr,
    /// The test's socket: the program's configured peer.
    pub socket: UdpSocket,
}

impl SocketPeer {
    pub fn start(bin: &str, ip: IpAddr, extra: &[&str]) -> SocketPeer {
        let socket = bound_socket(ip);
        let (app, app_addr) = start_peer(
            bin,
            bin,
            SocketAddr::new(ip, 0),
            socket.local_addr().expect("local address"),
            extra,
        );
        app.expect_stdout(ready_text(bin));
        SocketPeer {
            app,
            app_addr,
            socket,
        }
    }

    /// The test socket's address, as the program prints a sender.
    pub fn socket_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local address")
    }

    /// Sends `bytes` from the test socket to the program.
    pub fn send(&self, bytes: &[u8]) {
        self.socket
            .send_to(bytes, self.app_addr)
            .expect("send a datagram to the program");
    }

    /// The next datagram the program sent, waiting at most [`DEADLINE`].
    pub fn receive(&self) -> Vec<u8> {
        receive(&self.socket)
    }

    /// Waits for the next line the program prints for a datagram from the
    /// test socket (`[from IP:PORT] …`) and returns the message in it.
    pub fn printed_message(&self) -> String {
        let from = format!("[from {}] ", self.socket_addr());
        message(&self.app.expect_stdout_line(&from), &from).to_owned()
    }
}

/// Starts chat binary `bin` on `ip` with `extra`, sending to a port where
/// nothing listens (and nothing answers), and waits until it is ready.
pub fn start_alone(bin: &str, ip: IpAddr, extra: &[&str]) -> Running {
    let nobody = free_udp_addr(ip);
    let (running, _) = start_peer("alone", bin, SocketAddr::new(ip, 0), nobody, extra);
    running.expect_stdout(ready_text(bin));
    running
}

/// Types `line` into a chat peer waiting for a line, and waits for the
/// `[sent N bytes]` line, N the line's length, and the next prompt.
pub fn send_line(peer: &mut Running, line: &str) {
    peer.type_line(line);
    peer.expect_stdout_line(&format!("[sent {} bytes]", line.len()));
    peer.expect_stdout(PROMPT);
}

/// `len` pseudo-random lowercase letters from `seed`, as a line to type:
/// one that prints as itself.
pub fn random_line(seed: u64, len: usize) -> String {
    String::from_utf8(crate::tcp::random_letters(seed, len)).expect("letters are UTF-8")
}

/// A UDP socket on `ip`, port chosen by the kernel, whose receives give up
/// after [`DEADLINE`].
pub fn bound_socket(ip: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind a UDP socket");
    socket
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    socket
}

/// The next datagram on `socket`; fails the test after [`DEADLINE`].
pub fn receive(socket: &UdpSocket) -> Vec<u8> {
    let mut buffer = vec![0; 65_536];
    let (len, _) = socket.recv_from(&mut buffer).unwrap_or_else(|err| {
        let at = socket
            .local_addr()
            .map_or_else(|_| "?".into(), |addr| addr.to_string());
        panic!("waited {DEADLINE:?} on {at} for a datagram from the program; none came ({err})")
    });
    buffer.truncate(len);
    buffer
}

/// What a printed line holds after `[from IP:PORT] ` (the line may start
/// with a prompt that was on screen when the message came).
pub fn message<'a>(line: &'a str, from: &str) -> &'a str {
    line.split_once(from)
        .map_or_else(|| panic!("{line:?} holds no {from:?}"), |(_, text)| text)
}

/// The replacements that turn a captured run into the book's: A's and B's
/// random ports become the lessons' defaults.
pub fn book_replacements(a: SocketAddr, b: SocketAddr) -> Vec<(String, String)> {
    vec![
        (a.to_string(), "127.0.0.1:55566".into()),
        (b.to_string(), "127.0.0.1:55577".into()),
    ]
}

/// Stores a chat between peers A and B of `lesson` ("lesson1") for the
/// book as `{lesson}-peer-a.txt` and `{lesson}-peer-b.txt` (see
/// [`crate::check_generated`]): their transcripts with random ports made the
/// defaults ([`book_replacements`]), and A's `--bind 127.0.0.1:0` the
/// default address a reader's `just {lesson} a` binds.
pub fn check_book_session(
    lesson: &str,
    (a, a_addr): (&Running, SocketAddr),
    (b, b_addr): (&Running, SocketAddr),
) {
    let mut replacements = book_replacements(a_addr, b_addr);
    replacements.push(("--bind 127.0.0.1:0".into(), "--bind 127.0.0.1:55566".into()));
    for (peer, running) in [("a", a), ("b", b)] {
        crate::check_generated(
            &format!("{lesson}-peer-{peer}.txt"),
            &crate::normalize(&running.transcript(), &replacements),
        );
    }
}

/// How many datagrams the kernel has dropped for the UDP socket bound to
/// `local` because its receive buffer was full: the `drops` column of
/// `/proc/net/udp` (or `udp6`). `None` while no such socket exists.
///
/// Read by hand: the procfs crate's UDP entries leave this column out.
pub fn udp_drops(local: SocketAddr) -> Option<u64> {
    let table = if local.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    text.lines().skip(1).find_map(|row| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let addr = crate::tcp_table::parse_endpoint(fields.get(1)?)?;
        // The last column is `drops`.
        (addr == local).then(|| fields.last()?.parse().ok())?
    })
}

/// Asserts that `got` is `expected` byte for byte. A failure says what was
/// checked, both lengths, where they first differ and a short excerpt of
/// each around it: never a dump of a 60,000-byte line.
pub fn assert_same_bytes(what: &str, expected: &[u8], got: &[u8]) {
    if expected == got {
        return;
    }
    let at = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()));
    let excerpt = |bytes: &[u8]| {
        let start = at.saturating_sub(20);
        let end = (at + 40).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes[start.min(end)..end]);
        let before = if start > 0 { "…" } else { "" };
        let after = if end < bytes.len() { "…" } else { "" };
        format!("{before}{text:?}{after}")
    };
    let cut = if got.len() < expected.len() && expected.starts_with(got) {
        format!(
            " (the first {} bytes are right: it was cut there)",
            got.len()
        )
    } else {
        String::new()
    };
    panic!(
        "{what}\n  expected {} bytes, got {}{cut}; they differ from byte {at}:\n  expected: {}\n  got:      {}",
        expected.len(),
        got.len(),
        excerpt(expected),
        excerpt(got)
    );
}
