//! What only lesson 5's tests need beyond `testkit`: the programs' names,
//! and what the kernel says about a process (CPU time, resident memory).
//! Starting the programs, talking to them and reading their addresses back
//! is `testkit::udp`'s and `testkit::tcp`'s job. No assertions about the
//! lesson live here; they are in the test files.

#![allow(dead_code)] // Each test file uses only some of these.

use nix::unistd::Pid;
use procfs::process::Process;

pub const CHAT: &str = "lesson5-chat";
pub const SERVER: &str = "lesson5-server";
pub const CLIENT: &str = "lesson5-client";

/// The process as /proc shows it.
pub fn process(pid: Pid) -> Process {
    Process::new(pid.as_raw()).expect("the process is in /proc")
}

/// CPU time the process used so far (user + system), in clock ticks
/// (1/100 s on Linux), from /proc/PID/stat.
pub fn cpu_ticks(pid: Pid) -> u64 {
    let stat = process(pid).stat().expect("read /proc/PID/stat");
    stat.utime + stat.stime
}

/// The process's resident memory (VmRSS in /proc/PID/status), in KiB.
pub fn rss_kib(pid: Pid) -> u64 {
    let status = process(pid).status().expect("read /proc/PID/status");
    status.vmrss.expect("a VmRSS line")
}

/// The number of threads of a process (/proc/PID/status).
pub fn threads(pid: Pid) -> u64 {
    process(pid)
        .status()
        .expect("read /proc/PID/status")
        .threads
}
