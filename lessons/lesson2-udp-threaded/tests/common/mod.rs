//! Where a thread of a running program waits, read from /proc: the tests
//! that send signals wait until the wait they mean to interrupt has begun.

// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use std::time::Instant;

use nix::unistd::Pid;
use testkit::DEADLINE;

/// The kernel function thread `tid` of process `pid` sleeps in (its
/// `wchan`), or "" when it runs.
pub fn wchan(pid: Pid, tid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan")).unwrap_or_default()
}

/// Waits (at most [`DEADLINE`]) until a thread of `pid` named `thread` (any
/// thread: `None`) sleeps in a kernel function whose name contains `wait`:
/// `pipe_read` for a read of a pipe, `wait_for_more_packets` for a UDP
/// receive.
pub fn wait_until_blocked_in(pid: Pid, thread: Option<&str>, wait: &str) {
    let start = Instant::now();
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the program's threads");
        let blocked = tasks.flatten().any(|task| {
            let tid = task.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            thread.is_none_or(|name| comm.trim_end() == name) && wchan(pid, &tid).contains(wait)
        });
        if blocked {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no thread {thread:?} of {pid} waited in {wait:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits (at most [`DEADLINE`]) until process `pid` is stopped (`T`) or,
/// with `stopped` false, no longer is.
pub fn wait_until_stopped(pid: Pid, stopped: bool) {
    let start = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let is_stopped = status
            .lines()
            .any(|line| line.starts_with("State:") && line.contains("T (stopped)"));
        if is_stopped == stopped {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "process {pid} never became {}",
            if stopped { "stopped" } else { "running" }
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
