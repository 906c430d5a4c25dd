//! Ctrl+Z then `fg` (SIGSTOP or SIGTSTP, then SIGCONT) with no signal
//! handler installed: signal(7) lists the calls that fail with EINTR all
//! the same ("Interruption of system calls and library functions by stop
//! signals"). epoll_wait is on that list, poll is not: the kernel restarts
//! poll. The chat's poll and the server's epoll_wait both retry on EINTR.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe, write};

/// The child's exit status: the wait returned because the pipe became
/// readable, or failed with EINTR.
const READY: i32 = 0;
const INTERRUPTED: i32 = 1;
const OTHER: i32 = 2;

/// The state letter of `pid` in /proc/PID/stat (`S`: asleep in a call).
fn state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Forks a child that runs `wait_once` on the read end of a pipe, stops it
/// with SIGSTOP while it waits, continues it with SIGCONT, then makes the
/// pipe readable; returns the child's exit status.
fn stop_and_continue_while_waiting(wait_once: fn(&OwnedFd) -> i32) -> i32 {
    let (read_end, write_end) = pipe().expect("pipe");
    // SAFETY: the child only makes system calls (no allocation, no lock)
    // and then _exit, which is safe after fork in a threaded process.
    let child = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let status = wait_once(&read_end);
            // SAFETY: _exit ends the child at once, without running the
            // parent's atexit handlers or destructors.
            unsafe { nix::libc::_exit(status) }
        }
        ForkResult::Parent { child } => child,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(child) != Some('S') {
        assert!(Instant::now() < deadline, "the child never started waiting");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(child, Signal::SIGSTOP).expect("SIGSTOP");
    let stopped = waitpid(child, Some(WaitPidFlag::WUNTRACED)).expect("waitpid");
    assert_eq!(stopped, WaitStatus::Stopped(child, Signal::SIGSTOP));
    kill(child, Signal::SIGCONT).expect("SIGCONT");
    // Long enough for a failed call to end the child before the pipe is
    // written; a restarted one is still waiting.
    std::thread::sleep(Duration::from_millis(200));
    write(&write_end, b"x").expect("write to the pipe");
    match waitpid(child, None).expect("waitpid") {
        WaitStatus::Exited(_, status) => status,
        other => panic!("the child did not exit: {other:?}"),
    }
}

fn poll_once(fd: &OwnedFd) -> i32 {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(1) => READY,
        Err(Errno::EINTR) => INTERRUPTED,
        _ => OTHER,
    }
}

fn epoll_wait_once(fd: &OwnedFd) -> i32 {
    let Ok(epoll) = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) else {
        return OTHER;
    };
    if epoll
        .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 0))
        .is_err()
    {
        return OTHER;
    }
    let mut events = [EpollEvent::empty(); 1];
    match epoll.wait(&mut events, EpollTimeout::NONE) {
        Ok(1) => READY,
        Err(Errno::EINTR) => INTERRUPTED,
        _ => OTHER,
    }
}

#[test]
fn after_a_stop_and_continue_poll_is_restarted_and_epoll_wait_fails_with_eintr() {
    assert_eq!(
        stop_and_continue_while_waiting(poll_once),
        READY,
        "poll is restarted: it returns when the pipe becomes readable"
    );
    assert_eq!(
        stop_and_continue_while_waiting(epoll_wait_once),
        INTERRUPTED,
        "epoll_wait fails with EINTR at SIGCONT, with no handler installed"
    );
}
