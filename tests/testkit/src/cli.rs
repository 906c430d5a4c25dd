//! Plumbing for every lesson's command-line tests: run a binary with some
//! arguments and no input, bounded by [`DEADLINE`], and check the two kinds
//! of failure the course promises. What cannot be parsed is a usage error
//! (clap's status 2); what the kernel refuses is one `error:` line and
//! status 1; neither is ever a panic. Which inputs are bad, and the exact
//! messages they get, are each lesson's spec and stay in its `tests/cli.rs`.

use std::process::{Command, Output};

use assert_cmd::Command as AssertCommand;
use assert_cmd::assert::Assert;
use predicates::prelude::*;

use crate::{DEADLINE, privileged_port, unprivileged};

/// Runs workspace binary `name` with `args` and empty input, killed after
/// [`DEADLINE`]; the result is asserted on by the caller.
pub fn run(name: &str, args: &[&str]) -> Assert {
    AssertCommand::new(crate::bin(name))
        .args(args)
        .write_stdin("")
        .timeout(DEADLINE)
        .assert()
}

/// Asserts that `name` with `args` is a usage error: status 2, a message
/// on stderr containing `wanted`, and no panic.
pub fn usage_error(name: &str, args: &[&str], wanted: &str) {
    run(name, args)
        .code(2)
        .stderr(predicate::str::contains(wanted).and(predicate::str::contains("panicked").not()));
}

/// Runs `command` with empty input, killed after [`DEADLINE`]; asserts
/// status 1 and exactly `wanted` on stderr (one `error:` line, perhaps a
/// `hint:` line: whatever `wanted` holds, nothing more).
pub fn runtime_error(command: Command, wanted: &str) {
    let output = AssertCommand::from_std(command)
        .write_stdin("")
        .timeout(DEADLINE)
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert_eq!(String::from_utf8_lossy(&output.stderr), wanted);
}

/// Runs workspace binary `name` with `args` and `input` on stdin, killed
/// after [`DEADLINE`]; returns its status and all it printed.
pub fn output(name: &str, args: &[&str], input: impl Into<Vec<u8>>) -> Output {
    AssertCommand::new(crate::bin(name))
        .args(args)
        .write_stdin(input)
        .timeout(DEADLINE)
        .output()
        .unwrap_or_else(|err| panic!("run {name}: {err}"))
}

/// Runs `name --bind 127.0.0.1:PORT` without privileges (as user nobody
/// when the tests run as root) on a port only a privileged process may bind
/// (see [`privileged_port`]), and returns the address it was given with
/// what it printed. Where that cannot be shown on this machine, prints
/// `skipped: ` and the reason, and returns `None`: the test has nothing to
/// check.
pub fn bind_privileged_port(name: &str) -> Option<(String, Output)> {
    let run = || {
        let port = privileged_port()?;
        let bind = format!("127.0.0.1:{port}");
        let mut command = crate::command(name, &["--bind", &bind]);
        let output = unprivileged(&mut command)
            .output()
            .map_err(|err| format!("cannot start {name} without privileges: {err}"))?;
        Ok::<_, String>((bind, output))
    };
    run().map_err(|reason| println!("skipped: {reason}")).ok()
}
