//! What the TCP lessons' tests share: start an echo server on a free port
//! and read its address back, talk to it the way `nc` would, make random
//! payloads, and wait for a socket to reach a TCP state.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::socket::{setsockopt, sockopt};

use crate::{DEADLINE, Running, TcpSocket, TcpState, ss_line, tcp_sockets};

/// A [`Command`] for a workspace binary whose SIGINT and SIGQUIT have their
/// default action, whatever this process inherited.
///
/// The TCP lessons install no Ctrl+C handler: SIGINT kills them and the
/// kernel closes their sockets, which is what the TIME_WAIT tests need. A
/// shell without job control starts background commands with SIGINT
/// ignored, and an ignored signal stays ignored across exec, so `cargo test &`
/// in a script would otherwise leave servers that SIGINT cannot stop.
pub fn command_default_signals(name: &str, args: &[&str]) -> Command {
    let mut command = crate::command(name, args);
    // SAFETY: signal() is async-signal-safe, and setting a default action
    // touches no memory of the parent; it runs in the child before exec.
    unsafe {
        command.pre_exec(|| {
            for sig in [Signal::SIGINT, Signal::SIGQUIT] {
                signal(sig, SigHandler::SigDfl).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    command
}

/// Starts server binary `name` (e.g. "lesson3-server") with `--bind bind`
/// and `extra` arguments, waits for its `listening on` line and returns it
/// with the address it printed. Bind to port 0 for a fresh port; pass the
/// returned address to restart on the same one.
pub fn start_server(name: &str, bind: SocketAddr, extra: &[&str]) -> (Running, SocketAddr) {
    let bind = bind.to_string();
    let mut args = vec!["--bind", bind.as_str()];
    args.extend_from_slice(extra);
    listening(Running::start(name, command_default_signals(name, &args)))
}

/// Waits for a started server's `listening on` line; returns the server
/// with the address it printed. For a server started some other way than
/// [`start_server`] (another lesson's, or with a resource limit).
pub fn listening(server: Running) -> (Running, SocketAddr) {
    let line = server.expect_stdout_line("listening on ");
    let addr = crate::find_socket_addr(&line)
        .unwrap_or_else(|| panic!("no address in {line:?}\n{}", server.describe()));
    (server, addr)
}

/// Starts `lesson3-client --server server`, labelled `label`, and waits for
/// its `connected to` line.
pub fn start_client(label: &str, server: SocketAddr) -> Running {
    start_client_bin(label, "lesson3-client", server)
}

/// Starts client binary `bin` (`lesson3-client`, `lesson5-client`) with
/// `--server server`, labelled `label`, and waits for its `connected to`
/// line.
pub fn start_client_bin(label: &str, bin: &str, server: SocketAddr) -> Running {
    let server = server.to_string();
    let client = Running::start(label, command_default_signals(bin, &["--server", &server]));
    client.expect_stdout_line("connected to ");
    client
}

/// Types `line` into a running lesson-3 client and waits for its echo.
pub fn client_chat(client: &mut Running, line: &str) {
    client.type_line(line);
    client.expect_stdout_line(&format!("client receive: {line}"));
}

/// Starts server `name` with `--bind bind` and waits (at most [`DEADLINE`])
/// until it either listens, returned as [`start_server`] returns it, or
/// exits, returned as the error with its status and output.
pub fn try_start_server(name: &str, bind: SocketAddr) -> Result<(Running, SocketAddr), Running> {
    let bind = bind.to_string();
    let mut server = Running::start(name, command_default_signals(name, &["--bind", &bind]));
    let pid = server.pid().as_raw();
    let start = Instant::now();
    // Exited (reaped or a zombie), or listening: whichever comes first.
    while !thread_states(pid).iter().all(|&state| state == 'Z') {
        if server.stdout().contains("listening on ") {
            return Ok(listening(server));
        }
        if start.elapsed() >= DEADLINE {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    if server.stdout().contains("listening on ") {
        return Ok(listening(server));
    }
    server.wait_exit();
    Err(server)
}

/// Starts `name` with `--bind bind`, expecting bind to fail: waits for the
/// exit and returns the process (for its stderr and transcript). Fails the
/// test with the server's output if it started listening or exited other
/// than with status 1.
pub fn start_server_expecting_failure(name: &str, bind: SocketAddr) -> Running {
    match try_start_server(name, bind) {
        Ok((server, _)) => panic!(
            "{name} --bind {bind}: expected bind to fail (the port is taken) and exit 1, \
             but it is listening\n{}",
            server.describe()
        ),
        Err(mut server) => {
            let status = server.wait_exit();
            assert_eq!(
                status.code(),
                Some(1),
                "{name} should fail to bind and exit 1, got {status}\n{}",
                server.describe()
            );
            server
        }
    }
}

/// A TCP connection to `addr`, as `nc` would open it; every read and write
/// gives up after [`DEADLINE`], so a silent server fails the test instead of
/// hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, DEADLINE)
        .unwrap_or_else(|err| panic!("connect to {addr}: {err} (is the server still running?)"));
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(DEADLINE))
        .expect("set a write timeout");
    stream
}

/// Sends `data` on `stream` and returns what comes back, `data.len()` bytes
/// (fewer only if the peer closes first).
///
/// A second thread writes while this one reads: an echo server cannot take
/// more until its echo is read, so writing everything first would deadlock
/// as soon as `data` outgrows the sockets' buffers.
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
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "sent {} bytes to {}; expected them back, but only {} came back \
                         within {DEADLINE:?}",
                        data.len(),
                        describe_peer(reader),
                        back.len()
                    )
                }
                Err(err) => panic!(
                    "sent {} bytes to {}; reading the echo failed after {} bytes: {err}",
                    data.len(),
                    describe_peer(reader),
                    back.len()
                ),
            }
        }
        sending
            .join()
            .expect("writer thread")
            .expect("send the data");
    });
    back
}

/// `the server at ADDR`, or `the server` if the stream has no peer left.
fn describe_peer(stream: &TcpStream) -> String {
    stream.peer_addr().map_or_else(
        |_| "the server".to_owned(),
        |addr| format!("the server at {addr}"),
    )
}

/// Asserts that `data` sent on `stream` comes back byte for byte.
pub fn assert_echo(stream: &TcpStream, data: &[u8]) {
    let back = echo(stream, data);
    assert!(
        back.len() == data.len(),
        "echo cut short: {} of {} bytes came back",
        back.len(),
        data.len()
    );
    if let Some(at) = back.iter().zip(data).position(|(a, b)| a != b) {
        panic!(
            "echo differs from what was sent at byte {at} of {}",
            data.len()
        );
    }
}

/// A client that vanishes in the middle of an echo: it sends a payload
/// from a second thread and never reads the echo, then [`vanish`]es,
/// closing with unread data, which makes its kernel reset the connection
/// (tcp(7)): the server's next send or recv on it fails.
///
/// [`vanish`]: VanishingClient::vanish
pub struct VanishingClient {
    stream: TcpStream,
    sender: thread::JoinHandle<()>,
}

impl VanishingClient {
    /// Connects to `addr` and starts sending `payload`.
    pub fn start(addr: SocketAddr, payload: Vec<u8>) -> VanishingClient {
        let stream = connect(addr);
        let mut writer = stream.try_clone().expect("clone the stream");
        let sender = thread::spawn(move || {
            // Fails with a reset once the server has given up on us:
            // expected, so the result is not looked at.
            let _ = writer.write_all(&payload);
        });
        VanishingClient { stream, sender }
    }

    /// The client's address, as the server logs it.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// Closes the connection with the echo unread, and waits for the
    /// sending thread, which the reset (or the last byte sent) ends.
    pub fn vanish(self) {
        drop(self.stream);
        self.sender.join().expect("sending thread");
    }
}

/// A client that sends 16 KiB and closes cleanly before any echo comes back,
/// to the echo server `server` listening on `addr`; asserts that the server
/// logs EPIPE (or ECONNRESET) for it and then serves another client.
///
/// The server is stopped meanwhile, so its first echo comes after the close:
/// it draws a reset, which in CLOSE-WAIT sets the socket's error to EPIPE
/// (tcp_reset); the next send fails with EPIPE and, unless the server sends
/// with MSG_NOSIGNAL or ignores the signal, raises SIGPIPE, which kills it.
pub fn client_closing_before_its_echo(server: &mut Running, addr: SocketAddr) {
    let stream = connect(addr);
    let me = stream.local_addr().expect("local address");
    server.expect_stdout_line(&format!("client {me} connected"));
    // Stopped, the server cannot echo before the client has closed. Every
    // thread stops on its own way out of the kernel: wait until all have.
    server.signal(Signal::SIGSTOP);
    let pid = server.pid().as_raw();
    let stopped = || {
        let states = thread_states(pid);
        !states.is_empty() && states.iter().all(|&state| state == 'T')
    };
    let start = Instant::now();
    while !stopped() {
        assert!(
            start.elapsed() < DEADLINE,
            "SIGSTOP did not stop the server"
        );
        thread::sleep(Duration::from_millis(2));
    }
    let payload = random_letters(11, 16 * 1024);
    (&stream)
        .write_all(&payload)
        .unwrap_or_else(|err| panic!("client {me}: cannot send {} bytes: {err}", payload.len()));
    drop(stream);
    wait_for_socket("the client's end, closed", addr.port(), |s| {
        s.local == me && s.state == TcpState::FinWait2
    });
    server.signal(Signal::SIGCONT);

    let start = Instant::now();
    let error = loop {
        let logged = server.stderr();
        if let Some(line) = logged
            .lines()
            .find(|line| line.contains(&format!("client {me}")))
        {
            break line.to_owned();
        }
        let states = thread_states(pid);
        if states.is_empty() || states.contains(&'Z') {
            let status = server.wait_exit();
            panic!(
                "client {me} sent {} bytes and closed before the first echo; the server \
                 died echoing to it ({status}) instead of logging \
                 EPIPE and going on\n{}",
                payload.len(),
                server.describe()
            );
        }
        assert!(
            start.elapsed() < DEADLINE,
            "client {me} sent {} bytes and closed before the first echo: expected the server \
             to log an EPIPE error for it within {:?}\n{}",
            payload.len(),
            DEADLINE,
            server.describe()
        );
        thread::sleep(Duration::from_millis(10));
    };
    assert!(
        error.contains("EPIPE") || error.contains("ECONNRESET"),
        "client {me} closed before its echo: expected EPIPE (or ECONNRESET) in the server's \
         error line, got {error:?}"
    );
    let polite = connect(addr);
    assert_echo(&polite, b"still serving?\n");
}

/// The state letter (`R`, `S`, `T` stopped, `Z` zombie …) of each thread of
/// process `pid`, from /proc/PID/task/TID/stat; none once it is reaped.
fn thread_states(pid: i32) -> Vec<char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        // The state follows the command name, which ends at the last ')'.
        .filter_map(|stat| stat[stat.rfind(')')? + 1..].trim_start().chars().next())
        .collect()
}

/// Resets `stream`: SO_LINGER with a zero timeout makes the close send an
/// RST instead of a FIN, as a client that crashes mid-connection might.
pub fn reset(stream: TcpStream) {
    setsockopt(
        &stream,
        sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .expect("set SO_LINGER to reset the connection on close");
    drop(stream);
}

/// Closes `stream` both ways (what `nc` does at end of input).
pub fn close(stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}

/// `len` pseudo-random bytes from `seed`, the same on every run
/// (xorshift64*: plenty for test payloads, no dependency).
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

/// `len` pseudo-random lowercase letters from `seed`: a payload that prints
/// as itself.
pub fn random_letters(seed: u64, len: usize) -> Vec<u8> {
    random_bytes(seed, len)
        .into_iter()
        .map(|byte| b'a' + byte % 26)
        .collect()
}

/// The three values of a TCP buffer sysctl (`tcp_wmem`, `tcp_rmem`), in
/// bytes: see tcp(7).
#[derive(Clone, Copy, Debug)]
pub struct BufferSysctl {
    /// What the kernel guarantees a socket even under memory pressure.
    pub min: usize,
    /// What a new socket starts with.
    pub default: usize,
    /// How far the kernel may grow the buffer by itself.
    pub max: usize,
}

/// Reads `/proc/sys/net/ipv4/{sysctl}` (`tcp_wmem` or `tcp_rmem`).
pub fn buffer_sysctl(sysctl: &str) -> BufferSysctl {
    let path = format!("/proc/sys/net/ipv4/{sysctl}");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {path}: {err}"));
    let values: Vec<usize> = text
        .split_whitespace()
        .map_while(|value| value.parse().ok())
        .collect();
    match values[..] {
        [min, default, max] => BufferSysctl { min, default, max },
        _ => panic!("{path} holds {text:?}, not three numbers"),
    }
}

/// The largest value of a TCP buffer sysctl (`tcp_wmem`, `tcp_rmem`): how
/// far the kernel may grow that buffer by itself.
pub fn buffer_max(sysctl: &str) -> usize {
    buffer_sysctl(sysctl).max
}

/// Waits (at most [`DEADLINE`]) until the kernel's TCP table holds a socket
/// for which `wanted` is true, and returns it; fails the test with `what`
/// and the sockets on `port` otherwise.
pub fn wait_for_socket(what: &str, port: u16, wanted: impl Fn(&TcpSocket) -> bool) -> TcpSocket {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let sockets = tcp_sockets();
        if let Some(found) = sockets.iter().find(|socket| wanted(socket)) {
            return *found;
        }
        if Instant::now() >= deadline {
            panic!(
                "no {what} within {DEADLINE:?}; sockets on port {port}:\n{}",
                sockets_on_port(port)
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The kernel's TCP sockets with `port` at either end, one per line, for
/// failure messages.
pub fn sockets_on_port(port: u16) -> String {
    tcp_sockets()
        .iter()
        .filter(|socket| socket.local.port() == port || socket.remote.port() == port)
        .map(|socket| format!("  {socket}\n"))
        .collect()
}

/// What `ss -tan state time-wait sport = :PORT` shows for `local`: a header
/// and one line per TIME-WAIT socket whose local address is `local`, blanks
/// folded (see [`ss_line`]), sorted. Without `ss` installed, the same lines
/// are made from `/proc/net/tcp` (the Recv-Q and Send-Q of a TIME-WAIT socket
/// are always 0).
pub fn ss_time_wait(local: SocketAddr) -> Vec<String> {
    let mut lines: Vec<String> = match ss_line(TcpState::TimeWait, local) {
        // `ss state time-wait` leaves out the state column.
        Some(lines) => lines
            .iter()
            .map(|line| line.split_once(' ').map_or("", |(_, rest)| rest).to_owned())
            .collect(),
        None => tcp_sockets()
            .iter()
            .filter(|socket| socket.state == TcpState::TimeWait && socket.local == local)
            .map(|socket| format!("0 0 {} {}", socket.local, socket.remote))
            .collect(),
    };
    lines.sort();
    lines.insert(
        0,
        "Recv-Q Send-Q Local Address:Port Peer Address:Port".to_owned(),
    );
    lines
}

/// A running program seen as a terminal window: each call to
/// [`Terminal::more`] returns what appeared in it since the previous call,
/// so a test can tell a story that switches between windows.
pub struct Terminal {
    pub running: Running,
    shown: usize,
}

impl Terminal {
    pub fn new(running: Running) -> Terminal {
        Terminal { running, shown: 0 }
    }

    /// The transcript (command line, output, typed input) added since the
    /// last call.
    pub fn more(&mut self) -> String {
        let transcript = self.running.transcript();
        let new = transcript.get(self.shown..).unwrap_or_default().to_owned();
        self.shown = transcript.len();
        new
    }
}

/// Replacements for [`crate::normalize`] that turn a test's run into what a
/// reader running the defaults would see: each server address becomes
/// `127.0.0.1:8890` (the lessons' default) and `--bind`/`--server` options
/// naming it (or port 0) disappear from command lines; client addresses
/// become `127.0.0.1:50001`, `127.0.0.1:50002`, … in the order given.
pub fn book_replacements(servers: &[SocketAddr], clients: &[SocketAddr]) -> Vec<(String, String)> {
    let mut replacements = vec![(" --bind 127.0.0.1:0\n".to_owned(), "\n".to_owned())];
    for server in servers {
        replacements.push((format!(" --bind {server}\n"), "\n".to_owned()));
        replacements.push((format!(" --server {server}\n"), "\n".to_owned()));
        replacements.push((server.to_string(), "127.0.0.1:8890".to_owned()));
    }
    for (i, client) in clients.iter().enumerate() {
        replacements.push((client.to_string(), format!("127.0.0.1:{}", 50001 + i)));
    }
    replacements
}
