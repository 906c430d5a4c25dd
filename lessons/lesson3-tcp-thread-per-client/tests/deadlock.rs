//! A limit of the client's design, shown for real: it sends a whole line
//! before it reads any of the echo, so a line larger than the sockets'
//! buffers deadlocks it with the server. The server echoes as it receives;
//! the echo fills the client's receive buffer and the server's send buffer,
//! the server blocks in `send` and stops reading; then the server's receive
//! buffer and the client's send buffer fill, and the client blocks in `send`
//! too. Each waits for the other to read.
//!
//! The evidence is the kernel's, not a timeout: both programs sit blocked
//! in `send` with all four queues of the connection holding data, and a
//! second later they still do, the server has received nothing more and
//! the client has printed no echo.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use nix::libc;
use procfs::ProcError;
use procfs::process::{Process, Syscall};
use testkit::tcp::{buffer_max, start_client, start_server};
use testkit::{DEADLINE, LOCALHOST, TcpSocket, find_socket_addr};

/// The kernel's row for the TCP socket `local` → `remote`: its send and
/// receive queues are what `ss` calls Send-Q and Recv-Q.
fn row(local: SocketAddr, remote: SocketAddr) -> Option<TcpSocket> {
    testkit::tcp_sockets()
        .into_iter()
        .find(|socket| socket.local == local && socket.remote == remote)
}

/// The system call each thread of process `pid` is blocked in, from
/// `/proc/PID/task/TID/syscall`: its number, or `None` for a thread that is
/// running. (The kernel shows that file to the process's parent, as here.)
fn blocked_syscalls(pid: i32) -> Vec<Option<libc::c_long>> {
    let tasks = Process::new(pid)
        .and_then(|process| process.tasks())
        .unwrap_or_else(|err| panic!("cannot list the threads of process {pid}: {err}"));
    tasks
        // A thread that ended meanwhile is skipped.
        .filter_map(|task| task.ok())
        .filter_map(|task| match task.syscall() {
            Ok(Syscall::Blocked { syscall_number, .. }) => Some(Some(syscall_number)),
            Ok(_) => Some(None),
            Err(ProcError::NotFound(_)) => None,
            Err(err) => panic!(
                "cannot read /proc/{pid}/task/{}/syscall: {err} (the kernel shows it only \
                 to processes allowed to ptrace this one: see kernel.yama.ptrace_scope)",
                task.tid
            ),
        })
        .collect()
}

/// The connection as the kernel sees it, from both ends.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Snapshot {
    client: Option<TcpSocket>,
    server: Option<TcpSocket>,
    client_threads: Vec<Option<libc::c_long>>,
    server_threads: Vec<Option<libc::c_long>>,
}

impl Snapshot {
    /// Both sides are blocked in `send` (the C library makes it the system
    /// call `sendto`), with every queue of the connection holding data.
    fn deadlocked(&self) -> bool {
        let full = |row: Option<TcpSocket>| {
            row.is_some_and(|row| row.send_queue > 0 && row.receive_queue > 0)
        };
        let waits = |threads: &[Option<libc::c_long>]| threads.contains(&Some(libc::SYS_sendto));
        full(self.client)
            && full(self.server)
            && waits(&self.client_threads)
            && waits(&self.server_threads)
    }
}

#[test]
fn a_line_larger_than_both_socket_buffers_deadlocks_client_and_server() {
    let (server, server_addr) = start_server("lesson3-server", SocketAddr::new(LOCALHOST, 0), &[]);
    let mut client = start_client("client", server_addr);
    let line = server.expect_stdout_line("connected");
    let client_addr =
        find_socket_addr(&line).unwrap_or_else(|| panic!("no client address in {line:?}"));
    let (client_pid, server_pid) = (client.pid().as_raw(), server.pid().as_raw());
    let snapshot = || Snapshot {
        client: row(client_addr, server_addr),
        server: row(server_addr, client_addr),
        client_threads: blocked_syscalls(client_pid),
        server_threads: blocked_syscalls(server_pid),
    };

    // More than all four buffers hold, each at the largest size the kernel
    // may grow it to on its own: two send buffers (tcp_wmem) and two
    // receive buffers (tcp_rmem).
    let size = 2 * (buffer_max("tcp_wmem") + buffer_max("tcp_rmem")) + 1024 * 1024;
    let mut line = vec![b'x'; size];
    line.push(b'\n');
    client.type_bytes(&line);

    // Wait (bounded) until both sides are blocked in send, with every
    // queue of the connection holding data.
    let start = Instant::now();
    let mut now = snapshot();
    while !now.deadlocked() {
        assert!(
            start.elapsed() < DEADLINE,
            "no deadlock after {DEADLINE:?}: {now:?}\n{}\n{}",
            client.describe(),
            server.describe()
        );
        thread::sleep(Duration::from_millis(50));
        now = snapshot();
    }
    let took = start.elapsed();

    // And it lasts. The server logs every piece it receives, so a log that
    // stops growing shows it reads nothing more. (The kernel may still grow
    // a send buffer towards its maximum for a while, and the queues'
    // figures with it; what the programs see cannot change.)
    thread::sleep(Duration::from_millis(300));
    let logged = server.stdout().len();
    thread::sleep(Duration::from_millis(700));
    let deadlock = snapshot();
    assert!(
        deadlock.deadlocked(),
        "the deadlock came undone: {deadlock:?}"
    );
    assert_eq!(
        server.stdout().len(),
        logged,
        "the server logged more: it was still receiving"
    );
    assert!(
        !client.stdout().contains("client receive"),
        "the client printed an echo: {}",
        client.describe()
    );
    let (Some(client_end), Some(server_end)) = (deadlock.client, deadlock.server) else {
        unreachable!("a deadlocked snapshot has both rows")
    };
    let held = client_end.send_queue
        + client_end.receive_queue
        + server_end.send_queue
        + server_end.receive_queue;
    assert!(
        held < size as u64,
        "the kernel holds {held} bytes, fewer than the {size}-byte line: the rest waits in the client"
    );
    eprintln!(
        "a line of {size} bytes: both blocked in send after {took:?}; one second later, \
         the kernel holds {held} bytes: {deadlock:?}"
    );
    // Dropping both kills them.
}
