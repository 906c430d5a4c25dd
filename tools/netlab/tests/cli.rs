//! The `lab` binary behind `just lab`: its command line, and `up`, `chat`,
//! `status` and `down` on a lab of its own (NETLAB_PREFIX gives its
//! namespaces names no learner's lab has).

mod common;

use std::process::{Command, Output, Stdio};

use common::*;

fn lab(prefix: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        .env(netlab::NAMED_PREFIX_VAR, prefix)
        .stdin(Stdio::null())
        .output()
        .expect("run lab")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn listed() -> String {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn lab_refuses_a_lesson_it_does_not_run() {
    for (args, allowed) in [
        (["chat", "3"], "[possible values: 1, 2, 5]"),
        (["echo", "2"], "[possible values: 3, 4, 5]"),
    ] {
        let output = lab("", &args);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(allowed), "{stderr}");
    }
}

/// Removes the test's named lab however the test ends.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = lab(&self.0, &["down"]);
    }
}

/// `lab up` builds vm1 and vm2 and leaves them up, a second `up` says so,
/// `chat 2` without a terminal prints the two peers' commands with the
/// post's addresses, `status` shows the addresses, and `down` removes the
/// namespaces.
#[test]
fn lab_up_chat_status_and_down() {
    // The gate: a lab can be built here (or the test reruns in a user
    // namespace, or is skipped). This test builds its own, by the binary.
    let Some(gate) = two_vms("lab_up_chat_status_and_down") else {
        return;
    };
    drop(gate);
    let prefix = format!("nl-{}-cli-", std::process::id());
    let _down = Down(prefix.clone());
    let (vm1_ns, vm2_ns) = (format!("{prefix}vm1"), format!("{prefix}vm2"));

    let up = stdout(&lab(&prefix, &["up"]));
    assert!(up.contains("the lab is up"), "{up}");
    let names = listed();
    assert!(
        names.contains(&vm1_ns) && names.contains(&vm2_ns),
        "{names}"
    );
    let again = stdout(&lab(&prefix, &["up"]));
    assert!(again.contains("already up"), "{again}");

    let chat = stdout(&lab(&prefix, &["chat", "2"]));
    assert!(
        chat.contains(&format!("ip netns exec {vm1_ns} "))
            && chat
                .contains("lesson2-chat --bind 192.168.126.129:55566 --peer 192.168.126.128:55577"),
        "{chat}"
    );
    assert!(
        chat.contains(&format!("ip netns exec {vm2_ns} "))
            && chat
                .contains("lesson2-chat --bind 192.168.126.128:55577 --peer 192.168.126.129:55566"),
        "{chat}"
    );
    let status = stdout(&lab(&prefix, &["status"]));
    assert!(
        status.contains("192.168.126.129/24") && status.contains("192.168.126.128/24"),
        "{status}"
    );

    let down = stdout(&lab(&prefix, &["down"]));
    assert!(down.contains("2 hosts removed"), "{down}");
    let names = listed();
    assert!(
        !names.contains(&vm1_ns) && !names.contains(&vm2_ns),
        "{names}"
    );
    let again = stdout(&lab(&prefix, &["down"]));
    assert!(again.contains("was not up"), "{again}");
}
