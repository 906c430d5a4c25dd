//! The diffs between stages that the book walks through are generated from
//! the lesson sources; this fails when a committed one is stale, so the text
//! cannot show a change the code no longer makes. `just diffs` rewrites them.

use book_checks::{DIFFS, lesson_diff};

#[test]
fn lesson_diffs_are_fresh() {
    for (name, old, new) in DIFFS {
        testkit::check_generated(name, &lesson_diff(old, new));
    }
}

/// Lesson 4's server is lesson 3's plus SO_REUSEADDR "and nothing else":
/// its diff must stay small enough to read as the lesson.
#[test]
fn lesson3_to_lesson4_is_a_small_diff_about_reuseaddr() {
    let diff = lesson_diff(
        "lessons/lesson3-tcp-thread-per-client/src/bin/lesson3-server.rs",
        "lessons/lesson4-tcp-reuseaddr/src/main.rs",
    );
    let changed = diff
        .lines()
        .filter(|line| {
            (line.starts_with('+') || line.starts_with('-'))
                && !line.starts_with("+++")
                && !line.starts_with("---")
        })
        .count();
    assert!(
        diff.contains("+    setsockopt(&listener, sockopt::ReuseAddr, &true)"),
        "{diff}"
    );
    assert!(
        changed < 50,
        "{changed} changed lines: the 3→4 diff should be the lesson, not a rewrite\n{diff}"
    );
}
