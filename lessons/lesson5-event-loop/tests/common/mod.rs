//! What only lesson 5's tests need beyond `testkit`: the programs' names,
//! and what the kernel says about a process (CPU time, resident memory).
//! Starting the programs, talking to them and reading their addresses back
//! is `testkit::udp`'s and `testkit::tcp`'s job. No assertions about the
//! lesson live here; they are in the test files.

#![allow(dead_code)] // Each test file uses only some of these.

use nix::unistd::Pid;

pub const CHAT: &str = "lesson5-chat";
pub const SERVER: &str = "lesson5-server";
pub const CLIENT: &str = "lesson5-client";

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
