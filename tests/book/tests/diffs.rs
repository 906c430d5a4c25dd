//! The diffs between stages that the book walks through are generated from
//! the lesson sources; this fails when a committed one is stale, so the text
//! cannot show a change the code no longer makes. `just diffs` rewrites them.

use book::{DIFFS, lesson_diff};

#[test]
fn lesson_diffs_are_fresh() {
    for (name, old, new) in DIFFS {
        testkit::check_generated(name, &lesson_diff(old, new));
    }
}

/// The `+` and `-` lines of a unified diff, without its two header lines.
fn changed_lines(diff: &str) -> Vec<&str> {
    diff.lines()
        .filter(|line| {
            (line.starts_with('+') || line.starts_with('-'))
                && !line.starts_with("+++")
                && !line.starts_with("---")
        })
        .collect()
}

/// The text between `// ANCHOR: name` and its `// ANCHOR_END: name` in the
/// lesson source `path` (workspace-relative).
fn anchored(path: &str, name: &str) -> String {
    let full = testkit::workspace_root().join(path);
    let text = std::fs::read_to_string(&full)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", full.display()));
    let (start, end) = (
        format!("// ANCHOR: {name}\n"),
        format!("// ANCHOR_END: {name}"),
    );
    let from = text
        .find(&start)
        .unwrap_or_else(|| panic!("{path} has no anchor {name:?}"));
    let body = &text[from + start.len()..];
    let to = body
        .find(&end)
        .unwrap_or_else(|| panic!("{path} never ends anchor {name:?}"));
    body[..to].to_owned()
}

/// Lesson 2 is lesson 1 plus a receiver thread, signal handlers and a clean
/// shutdown, as the post's version 2 is version 1 plus those (about 190
/// changed lines between the seeds). Everything else is lesson 1's, byte
/// for byte: the steps 1 to 4 and 6, the receive timeout (still set in
/// `run`), the buffer, `receive_one`, `send_message` and the line reader.
#[test]
fn lesson1_to_lesson2_is_a_diff_about_the_receiver_thread() {
    let (one, two) = (
        "lessons/lesson1-udp-alternating/src/bin/lesson1-chat.rs",
        "lessons/lesson2-udp-threaded/src/bin/lesson2-chat.rs",
    );
    let diff = lesson_diff(one, two);
    for unchanged in [
        "socket",
        "my_addr",
        "bind",
        "peer",
        "timeout",
        "buffer",
        "receive",
        "send",
        "read_line",
        "close",
    ] {
        assert_eq!(
            anchored(one, unchanged),
            anchored(two, unchanged),
            "lesson 2 changes lesson 1's {unchanged:?}, which is not its lesson"
        );
    }
    for wanted in [
        "+fn receive_loop(",
        "+fn send_loop(",
        "+    thread::scope(",
        "+        unsafe { signal::sigaction(stop_signal, &action) }",
        "+        RUNNING.store(false, Ordering::SeqCst);",
    ] {
        assert!(
            diff.contains(wanted),
            "the diff should add {wanted:?}\n{diff}"
        );
    }
    let changed = changed_lines(&diff).len();
    assert!(
        changed <= 190,
        "{changed} changed lines: the 1→2 diff should be the lesson, not a rewrite\n{diff}"
    );
}

/// Lesson 4's server is lesson 3's plus SO_REUSEADDR "and nothing else":
/// its diff must stay small enough to read as the lesson.
#[test]
fn lesson3_to_lesson4_is_a_small_diff_about_reuseaddr() {
    let diff = lesson_diff(
        "lessons/lesson3-tcp-thread-per-client/src/bin/lesson3-server.rs",
        "lessons/lesson4-tcp-reuseaddr/src/bin/lesson4-server.rs",
    );
    let changed = changed_lines(&diff).len();
    assert!(
        diff.contains("+    setsockopt(&listener, sockopt::ReuseAddr, &true)"),
        "{diff}"
    );
    assert!(
        changed < 50,
        "{changed} changed lines: the 3→4 diff should be the lesson, not a rewrite\n{diff}"
    );
}
