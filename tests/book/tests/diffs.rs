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

/// Lesson 2 is lesson 1 plus a receiver thread, signal handlers, a clean
/// shutdown and the peer filter: its diff adds those, keeps what lesson 1
/// does that is not the lesson (the `[sent N bytes]` report, the inet_pton
/// comment, reporting receive errors without an extra ICMP branch), and
/// stays small enough to walk through in the chapter.
#[test]
fn lesson1_to_lesson2_is_a_diff_about_the_receiver_thread() {
    let main = lesson_diff(
        "lessons/lesson1-udp-alternating/src/main.rs",
        "lessons/lesson2-udp-threaded/src/main.rs",
    );
    let cli = lesson_diff(
        "lessons/lesson1-udp-alternating/src/cli.rs",
        "lessons/lesson2-udp-threaded/src/cli.rs",
    );
    for wanted in [
        "+fn receive_loop(",
        "+    thread::scope(",
        "+        unsafe { signal::sigaction(stop_signal, &action) }",
        "+        RUNNING.store(false, Ordering::SeqCst);",
        "+                let from_peer =",
    ] {
        assert!(
            main.contains(wanted),
            "the diff should add {wanted:?}\n{main}"
        );
    }
    let changed: Vec<&str> = changed_lines(&main)
        .into_iter()
        .chain(changed_lines(&cli))
        .collect();
    for kept in ["[sent {sent} bytes]", "inet_pton", "BUFFER_SIZE: usize"] {
        assert!(
            !changed.iter().any(|line| line.contains(kept)),
            "lesson 2 changes lesson 1's {kept:?}, which is not its lesson\n{main}"
        );
    }
    for icmp in ["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH"] {
        assert!(
            !changed.iter().any(|line| line.contains(icmp)),
            "an ICMP error branch is not lesson 2's subject\n{main}"
        );
    }
    assert!(
        changed.len() < 300,
        "{} changed lines: the 1→2 diff should be the lesson, not a rewrite\n{main}{cli}",
        changed.len()
    );
}

/// Lesson 4's server is lesson 3's plus SO_REUSEADDR "and nothing else":
/// its diff must stay small enough to read as the lesson.
#[test]
fn lesson3_to_lesson4_is_a_small_diff_about_reuseaddr() {
    let diff = lesson_diff(
        "lessons/lesson3-tcp-thread-per-client/src/bin/lesson3-server.rs",
        "lessons/lesson4-tcp-reuseaddr/src/main.rs",
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
