//! The TIME_WAIT chapter's claims about FIN-WAIT-2, checked on this kernel:
//! a socket whose owner closed it while the other side stays connected (an
//! *orphan*: no process holds it any more) waits for the other side's FIN
//! for `net.ipv4.tcp_fin_timeout` seconds, which tcp(7) documents; a FIN
//! arriving in time moves it on to the 60 seconds of TIME-WAIT; and when
//! the wait runs out, the kernel forgets the connection without telling the
//! other side, whose late FIN is then answered with a reset.
//!
//! Linux keeps such an orphan in the same small structure as a TIME-WAIT
//! socket, so `/proc/net/tcp` (and `ss -tano`) show it with the TIME-WAIT
//! timer, kind 3, counting down from `tcp_fin_timeout`. Only a timeout longer
//! than TIME-WAIT's 60 seconds is counted differently: first the rest on the
//! full socket's keepalive timer (kind 2), then 60 seconds in that structure.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use nix::libc;
use testkit::{DEADLINE, LOCALHOST, TcpSocket, TcpState, tcp_sockets};

/// Linux's TIME-WAIT length (`TCP_TIMEWAIT_LEN`), a compiled-in constant.
const TIME_WAIT: f64 = 60.0;

/// How much a timer may have run down between the close and the look at
/// `/proc/net/tcp` on a slow, busy machine.
const SLACK: f64 = 5.0;

/// `net.ipv4.tcp_fin_timeout`, in seconds, as this kernel has it.
fn tcp_fin_timeout() -> f64 {
    const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_fin_timeout";
    let text =
        std::fs::read_to_string(SYSCTL).unwrap_or_else(|err| panic!("cannot read {SYSCTL}: {err}"));
    let seconds: u32 = text
        .trim()
        .parse()
        .unwrap_or_else(|err| panic!("{SYSCTL} holds {text:?}, not a number: {err}"));
    f64::from(seconds)
}

/// A connection on loopback: (the server's end, the client's end).
fn connection(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().expect("the listener's address"))
        .expect("connect on loopback");
    let (server, _) = listener.accept().expect("accept");
    client
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    (server, client)
}

/// The kernel's row for the socket `local` → `remote`, if there is one.
fn row(local: SocketAddr, remote: SocketAddr) -> Option<TcpSocket> {
    tcp_sockets()
        .into_iter()
        .find(|socket| socket.local == local && socket.remote == remote)
}

/// Waits (at most [`DEADLINE`]) until the row `local` → `remote` is in
/// `state`, and returns it.
fn wait_for_state(local: SocketAddr, remote: SocketAddr, state: TcpState) -> TcpSocket {
    let start = Instant::now();
    loop {
        match row(local, remote) {
            Some(socket) if socket.state == state => return socket,
            found => assert!(
                start.elapsed() < DEADLINE,
                "no {} socket {local} → {remote} after {DEADLINE:?}; found {found:?}",
                state.ss_name()
            ),
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Closes `server` (its owner is gone: the socket is an orphan) while
/// `client` stays connected, and checks that the client reads the FIN. Returns
/// the server's row once its end waits in FIN-WAIT-2.
fn orphan_in_fin_wait_2(server: TcpStream, client: &mut TcpStream) -> TcpSocket {
    let (local, remote) = (
        server.local_addr().expect("the server's address"),
        server.peer_addr().expect("the client's address"),
    );
    drop(server); // The server's FIN; the client's kernel acknowledges it.
    assert_eq!(client.read(&mut [0; 16]).expect("read"), 0, "end of stream");
    let client_end = wait_for_state(remote, local, TcpState::CloseWait);
    assert_eq!(client_end.timer, None, "{client_end} waits for nothing");
    wait_for_state(local, remote, TcpState::FinWait2)
}

#[test]
fn an_orphaned_fin_wait_2_socket_waits_tcp_fin_timeout() {
    let fin_timeout = tcp_fin_timeout();
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let (server, mut client) = connection(&listener);
    let orphan = orphan_in_fin_wait_2(server, &mut client);
    let timer = orphan
        .timer
        .unwrap_or_else(|| panic!("an orphan in FIN-WAIT-2 runs a timer: {orphan}"));
    let left = timer.left.as_secs_f64();

    // What the timer has left, fresh from the close, must add up to the
    // sysctl: all of it on the TIME-WAIT timer, or the part beyond 60 s on
    // the keepalive timer first.
    let (kind, expected) = if fin_timeout <= TIME_WAIT {
        (3, fin_timeout)
    } else {
        (2, fin_timeout - TIME_WAIT)
    };
    assert_eq!(
        timer.kind, kind,
        "with tcp_fin_timeout = {fin_timeout} s, {orphan} runs timer kind {kind}: {timer:?}"
    );
    assert!(
        expected - SLACK <= left && left <= expected,
        "{orphan}: {left:.2} s left on timer kind {kind}; tcp_fin_timeout = {fin_timeout} s, \
         so just under {expected} s were expected"
    );

    // The client's FIN, in time: the orphan moves on to TIME-WAIT, whose
    // timer starts again from the full 60 seconds.
    client.shutdown(Shutdown::Write).expect("the client's FIN");
    let time_wait = wait_for_state(orphan.local, orphan.remote, TcpState::TimeWait);
    let left = time_wait.timer.map(|timer| (timer.kind, timer.left));
    assert!(
        matches!(left, Some((3, left)) if left.as_secs_f64() > TIME_WAIT - SLACK),
        "{time_wait}: expected the TIME-WAIT timer (kind 3) with just under 60 s, got {left:?}"
    );
}

/// `TCP_LINGER2`, which tcp(7) documents as "the lifetime of orphaned
/// FIN_WAIT2 state sockets", overrides `tcp_fin_timeout` for one socket: one
/// second lets this test watch the wait run out.
fn set_linger2(socket: &TcpStream, seconds: libc::c_int) {
    // SAFETY: the option value is a live c_int and its exact size is passed.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_LINGER2,
            (&raw const seconds).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        result,
        0,
        "setsockopt(TCP_LINGER2): {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn an_orphaned_fin_wait_2_socket_is_dropped_when_its_timer_expires() {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let (server, mut client) = connection(&listener);
    drop(listener);
    set_linger2(&server, 1);
    let orphan = orphan_in_fin_wait_2(server, &mut client);
    let closed = Instant::now();
    let timer = orphan.timer.map(|timer| (timer.kind, timer.left));
    assert!(
        matches!(timer, Some((3, left)) if left <= Duration::from_secs(1)),
        "{orphan}: expected the TIME-WAIT timer (kind 3) with at most 1 s, got {timer:?}"
    );

    // The timer runs out: the row goes, straight from FIN-WAIT-2, with no
    // TIME-WAIT after it.
    while let Some(socket) = row(orphan.local, orphan.remote) {
        assert_eq!(socket.state, TcpState::FinWait2, "{socket}");
        assert!(
            closed.elapsed() < DEADLINE,
            "{socket} still there after {DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }

    // The client was told nothing: its end still waits in CLOSE-WAIT, with
    // no error.
    let client_end = row(orphan.remote, orphan.local)
        .unwrap_or_else(|| panic!("the client's end {} is gone", orphan.remote));
    assert_eq!(client_end.state, TcpState::CloseWait, "{client_end}");
    assert!(client.take_error().expect("SO_ERROR").is_none());

    // Its FIN now finds no socket on the server's side, and the kernel
    // answers with a reset: the client's end closes with ECONNRESET (an
    // acknowledgment would have closed it without an error), and the
    // server's side enters no TIME-WAIT.
    client.shutdown(Shutdown::Write).expect("the client's FIN");
    while let Some(socket) = row(orphan.remote, orphan.local) {
        assert!(
            closed.elapsed() < 2 * DEADLINE,
            "{socket} still there after its FIN"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let error = client.take_error().expect("SO_ERROR");
    assert_eq!(
        error.as_ref().and_then(std::io::Error::raw_os_error),
        Some(libc::ECONNRESET),
        "the client's FIN is answered with a reset: {error:?}"
    );
    assert_eq!(row(orphan.local, orphan.remote), None);
}
