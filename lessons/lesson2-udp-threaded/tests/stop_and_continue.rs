//! Ctrl+Z then `fg`: SIGSTOP, then SIGCONT. signal(7) lists the socket
//! receive calls on a socket with a receive timeout (SO_RCVTIMEO) among the
//! calls that fail with EINTR after a stop and a continue, although no
//! handler runs. The original's receiver takes that EINTR for an error and
//! stops; lesson 2 keeps receiving.

mod common;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{wait_until_blocked_in, wait_until_stopped};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{SockaddrStorage, recvfrom};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe, read, write};
use testkit::udp::{SocketPeer, bound_socket};
use testkit::{DEADLINE, LOCALHOST};

const BIN: &str = "lesson2-chat";

/// The kernel function a UDP receive sleeps in.
const UDP_WAIT: &str = "wait_for_more_packets";

/// Stops process `pid` and continues it, as Ctrl+Z and `fg` do.
fn stop_and_continue(pid: Pid) {
    kill(pid, Signal::SIGSTOP).expect("send SIGSTOP");
    wait_until_stopped(pid, true);
    kill(pid, Signal::SIGCONT).expect("send SIGCONT");
    wait_until_stopped(pid, false);
}

#[test]
fn keeps_receiving_after_ctrl_z_and_fg() {
    // The default one-second timeout, as a learner runs it.
    let mut chat = SocketPeer::start(BIN, LOCALHOST, &[]);
    let pid = chat.app.pid();
    wait_until_blocked_in(pid, Some("receiver"), UDP_WAIT);
    stop_and_continue(pid);
    chat.send(b"still listening?");
    testkit::udp::assert_same_bytes(
        "stopped and continued the program (Ctrl+Z, fg), then sent \"still listening?\": it is printed",
        b"still listening?",
        chat.printed_message().as_bytes(),
    );
    chat.app.type_line("quit");
    assert!(chat.app.wait_exit().success(), "{}", chat.app.describe());
    assert_eq!(chat.app.stderr(), "", "no receive error after the stop");
}

/// What one recvfrom in a child process returns when the child is stopped
/// and continued during the call; with `then_send`, a datagram is sent to
/// the socket after the continue. The socket's receive timeout is `timeout`.
fn recvfrom_across_stop_and_continue(timeout: Option<Duration>, then_send: bool) -> i64 {
    let socket = bound_socket(LOCALHOST);
    socket.set_read_timeout(timeout).expect("set the timeout");
    let addr = socket.local_addr().expect("local address");
    let (result_read, result_write) = pipe().expect("a pipe");
    // SAFETY: the child only makes system calls (recvfrom, write, _exit)
    // on memory of its own stack: nothing that another thread could have
    // left locked at the fork.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let mut buffer = [0u8; 64];
            let result = match recvfrom::<SockaddrStorage>(socket.as_raw_fd(), &mut buffer) {
                Ok((len, _)) => len as i64,
                Err(errno) => -(errno as i64),
            };
            let _ = write(&result_write, &result.to_ne_bytes());
            // SAFETY: _exit ends the child at once, running nothing else.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(result_write);
            wait_until_blocked_in(child, None, UDP_WAIT);
            stop_and_continue(child);
            if then_send {
                UdpSocket::bind((LOCALHOST, 0))
                    .and_then(|sender| sender.send_to(b"hello", addr))
                    .expect("send a datagram");
            }
            let mut fds = [PollFd::new(
                std::os::fd::AsFd::as_fd(&result_read),
                PollFlags::POLLIN,
            )];
            let within = PollTimeout::try_from(DEADLINE).expect("a poll timeout");
            let ready = poll(&mut fds, within).expect("poll the pipe");
            if ready == 0 {
                let _ = kill(child, Signal::SIGKILL);
            }
            let mut bytes = [0u8; 8];
            let got = if ready == 0 {
                0
            } else {
                read(&result_read, &mut bytes).expect("read the result")
            };
            waitpid(child, None).expect("reap the child");
            assert_eq!(got, 8, "recvfrom did not return within {DEADLINE:?}");
            i64::from_ne_bytes(bytes)
        }
    }
}

/// With a receive timeout far longer than the test, only the stop and the
/// continue can end the call: with EINTR.
#[test]
fn recvfrom_with_a_timeout_fails_with_eintr_after_stop_and_continue() {
    let result = recvfrom_across_stop_and_continue(Some(Duration::from_secs(60)), false);
    assert_eq!(result, -(Errno::EINTR as i64), "{result}");
}

/// Without a timeout the same call resumes after the continue and gets the
/// datagram sent then.
#[test]
fn recvfrom_without_a_timeout_resumes_after_stop_and_continue() {
    let result = recvfrom_across_stop_and_continue(None, true);
    assert_eq!(result, 5, "{result}");
}
