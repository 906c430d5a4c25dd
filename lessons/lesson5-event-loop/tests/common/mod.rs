//! Plumbing the lesson's tests share: start the programs on free ports and
//! read their addresses back, talk to them as `nc` would, and read what the
//! kernel says about a process (CPU time, resident memory). No assertions
//! about the lesson live here; they are in the test files.

#![allow(dead_code)] // Each test file uses only some of these.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::thread;

use nix::unistd::Pid;
use testkit::{DEADLINE, Running, command, find_socket_addr};

pub const CHAT: &str = "lesson5-chat";
pub const SERVER: &str = "lesson5-server";
pub const CLIENT: &str = "lesson5-client";

/// The prompt every chat lesson prints before reading a line.
pub const PROMPT: &str = "Enter message ('quit' to exit): ";

/// Starts chat binary `bin` with `--bind bind --peer peer` and `extra`,
/// waits for its `bound to` line and returns it with the bound address.
pub fn start_chat(
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

/// A UDP socket on `ip` (port chosen by the kernel) standing in for
/// `nc -u`; its receives give up after [`DEADLINE`].
pub fn udp_socket(ip: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind a UDP socket");
    socket
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    socket
}

/// The next datagram on `socket`; fails the test after [`DEADLINE`].
pub fn receive(socket: &UdpSocket) -> Vec<u8> {
    let mut buffer = vec![0; 65_536];
    let (len, _) = socket
        .recv_from(&mut buffer)
        .expect("a datagram within the deadline");
    buffer.truncate(len);
    buffer
}

/// Starts `lesson5-server --bind bind` with `extra`, waits for its
/// `listening on` line and returns it with the address it printed.
pub fn start_server(bind: SocketAddr, extra: &[&str]) -> (Running, SocketAddr) {
    let bind = bind.to_string();
    let mut args = vec!["--bind", bind.as_str()];
    args.extend_from_slice(extra);
    server_from(Running::start("server", command(SERVER, &args)))
}

/// Waits for a started server's `listening on` line; returns it with the
/// address.
pub fn server_from(server: Running) -> (Running, SocketAddr) {
    let line = server.expect_stdout_line("listening on ");
    let addr = find_socket_addr(&line)
        .unwrap_or_else(|| panic!("no address in {line:?}\n{}", server.describe()));
    (server, addr)
}

/// Starts client binary `bin` (`lesson5-client` or `lesson3-client`) with
/// `--server server`, labelled `label`, and waits for `connected to`.
pub fn start_client(label: &str, bin: &str, server: SocketAddr) -> Running {
    let server = server.to_string();
    let client = Running::start(label, command(bin, &["--server", &server]));
    client.expect_stdout_line("connected to ");
    client
}

/// Types `line` into a running client and waits for its echo.
pub fn client_chat(client: &mut Running, line: &str) {
    client.type_line(line);
    client.expect_stdout_line(&format!("client receive: {line}"));
}

/// A TCP connection to `addr` whose reads and writes give up after
/// [`DEADLINE`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, DEADLINE)
        .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.set_write_timeout(Some(DEADLINE)).expect("timeout");
    stream
}

/// Sends `data` and returns what comes back (`data.len()` bytes, fewer if
/// the server closes first). A second thread writes while this one reads,
/// as any client of an echo server must once `data` outgrows the buffers.
pub fn echo(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = stream;
    let mut back = Vec::with_capacity(data.len());
    thread::scope(|scope| {
        let sending = scope.spawn(move || writer.write_all(data));
        let mut buffer = vec![0; 64 * 1024];
        while back.len() < data.len() {
            let wanted = (data.len() - back.len()).min(buffer.len());
            match reader.read(&mut buffer[..wanted]) {
                Ok(0) => break,
                Ok(n) => back.extend_from_slice(&buffer[..n]),
                Err(err) => panic!("reading the echo ({} bytes so far): {err}", back.len()),
            }
        }
        sending.join().expect("writer").expect("send the data");
    });
    back
}

/// `len` pseudo-random bytes from `seed`, the same on every run
/// (xorshift64*).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// `len` pseudo-random lowercase letters: a payload that prints as itself.
pub fn random_letters(seed: u64, len: usize) -> Vec<u8> {
    random_bytes(seed, len)
        .into_iter()
        .map(|byte| b'a' + byte % 26)
        .collect()
}

/// CPU time the process used so far (user + system), in clock ticks
/// (1/100 s on Linux): fields 14 and 15 of /proc/PID/stat.
pub fn cpu_ticks(pid: Pid) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after its closing parenthesis, which is field 3's start.
    let after_name = &stat[stat.rfind(')').expect("a (comm) field") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields[14 - 3].parse().expect("utime");
    let stime: u64 = fields[15 - 3].parse().expect("stime");
    utime + stime
}

/// The process's resident memory (VmRSS in /proc/PID/status), in KiB.
pub fn rss_kib(pid: Pid) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("a VmRSS line")
}

/// Replacements for [`testkit::normalize`] that turn a run into what a
/// reader running the defaults sees: the server becomes `127.0.0.1:8890`
/// and `--bind`/`--server` options naming it disappear; clients become
/// `127.0.0.1:50001`, `127.0.0.1:50002`, … in the order given.
pub fn book_replacements(server: SocketAddr, clients: &[SocketAddr]) -> Vec<(String, String)> {
    let mut replacements = vec![
        (" --bind 127.0.0.1:0\n".to_owned(), "\n".to_owned()),
        (format!(" --server {server}\n"), "\n".to_owned()),
        (server.to_string(), "127.0.0.1:8890".to_owned()),
    ];
    for (i, client) in clients.iter().enumerate() {
        replacements.push((client.to_string(), format!("127.0.0.1:{}", 50001 + i)));
    }
    replacements
}
