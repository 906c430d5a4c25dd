//! The book backs its claims by naming the test that checks each one
//! (`a_lesson3_server_stopped_before_its_client_cannot_restart`), the
//! function that does a thing (`send_loop`) or the file to read
//! (`tests/shutdown.rs`). A renamed test or a moved file would leave the
//! text pointing at nothing; this fails instead.

use std::collections::BTreeSet;

use book::{code_spans, files_under, pages};

/// snake_case names the book quotes that are not this repository's: the C
/// originals' and the C library's, and std's. Anything else must be a
/// function (most often a test) or a solution binary in the workspace.
const NOT_OURS: &[&str] = &[
    "die_with_error",
    "epoll_ctl",
    "inet_pton",
    "insert_failed",
    "mm_struct",
    "pthread_create",
    "pthread_detach",
    "pthread_sigmask",
    "pid_max",
    "pre_exec",
    "pthread_t",
    "read_until",
    "set_read_timeout",
    "sin_family",
    "sockaddr_in",
    "sockaddr_in6",
    "socklen_t",
    "spawn_scoped",
    "task_struct",
];

/// Every `fn name` defined in the workspace's Rust sources.
fn defined_functions() -> BTreeSet<String> {
    let root = testkit::workspace_root();
    ["lessons", "tests", "tools", "docs/solutions"]
        .iter()
        .flat_map(|folder| files_under(&root.join(folder), "rs"))
        .flat_map(|(_, text)| {
            text.match_indices("fn ")
                .map(|(at, keyword)| {
                    text[at + keyword.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn is_snake_case_name(span: &str) -> bool {
    span.contains('_')
        && span.starts_with(|c: char| c.is_ascii_lowercase())
        && span
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[test]
fn every_test_function_and_file_the_book_names_exists() {
    let root = testkit::workspace_root();
    let functions = defined_functions();
    let rust_files: Vec<String> = ["lessons", "tests", "tools", "docs/solutions"]
        .iter()
        .flat_map(|folder| files_under(&root.join(folder), "rs"))
        .map(|(path, _)| path.to_string_lossy().into_owned())
        .collect();
    let solution_bin = |name: &str| {
        root.join(format!("docs/solutions/src/bin/{name}.rs"))
            .is_file()
    };

    let mut problems = Vec::new();
    let mut names = 0;
    for (page, text) in pages() {
        if page.parent().is_some_and(|p| p.ends_with("generated")) {
            continue;
        }
        for span in code_spans(&text) {
            if is_snake_case_name(&span) {
                names += 1;
                if !NOT_OURS.contains(&span.as_str())
                    && !functions.contains(&span)
                    && !solution_bin(&span)
                {
                    problems.push(format!(
                        "{}: `{span}` is no function or solution in the workspace \
                         (if it names something outside it, add it to NOT_OURS)",
                        page.display()
                    ));
                }
            } else if span.ends_with(".rs") && !span.contains(' ') {
                // A path from the workspace root must be exact (a moved file
                // leaves it pointing at nothing); a shorter one is from a
                // lesson crate (`tests/shutdown.rs` in a chapter about it).
                let from_root = [
                    "lessons/",
                    "tools/",
                    "docs/",
                    "tests/book/",
                    "tests/kernel/",
                    "tests/testkit/",
                ]
                .iter()
                .any(|top| span.starts_with(top));
                let found = root.join(&span).is_file()
                    || (!from_root
                        && rust_files
                            .iter()
                            .any(|file| file.ends_with(&format!("/{span}"))));
                if !found {
                    problems.push(format!("{}: `{span}`: no such file", page.display()));
                }
            }
        }
    }
    assert!(names > 10, "found only {names} names: is the parser right?");
    assert!(
        problems.is_empty(),
        "the book names what does not exist:\n{}",
        problems.join("\n")
    );
}
