//! Lesson code says *why* in a line or two and leaves the story to the
//! chapter: in every lesson source file, no run of comment lines is longer
//! than six lines and comments are under 30% of the non-blank lines.

use book::{CommentBudget, files_under};

/// The longest run of consecutive comment lines a lesson file may hold.
const LONGEST_RUN: usize = 6;
/// The largest share of comment lines among non-blank lines.
const LARGEST_SHARE: f64 = 0.30;

#[test]
fn the_comment_budget_counts_runs_and_share_as_the_convention_says() {
    let text = "//! Module.\n\
                // ANCHOR: main\n\
                fn main() {\n\
                \n\
                    // one\n\
                    // ANCHOR_END: main\n\
                    // two\n\
                    let x = 1; // trailing\n\
                    /// three\n\
                }\n";
    let budget = CommentBudget::of(text);
    assert_eq!(budget.runs, vec![(1, 1), (5, 7), (9, 9)]);
    assert_eq!((budget.comments, budget.non_blank), (4, 7));
}

#[test]
fn lesson_comments_are_short_and_under_30_percent() {
    let root = testkit::workspace_root();
    let lessons = std::fs::read_dir(root.join("lessons")).expect("the lessons folder");
    let mut files = Vec::new();
    for lesson in lessons {
        let src = lesson.expect("a lesson folder").path().join("src");
        if src.is_dir() {
            files.extend(files_under(&src, "rs"));
        }
    }
    assert!(files.len() >= 6, "found only {} lesson files", files.len());

    let mut problems = Vec::new();
    for (path, text) in &files {
        let name = path.strip_prefix(&root).unwrap_or(path).display();
        let budget = CommentBudget::of(text);
        for (first, last) in &budget.runs {
            let length = last - first + 1;
            if length > LONGEST_RUN {
                problems.push(format!(
                    "{name}:{first}-{last}: {length} comment lines in a row (at most {LONGEST_RUN})"
                ));
            }
        }
        if budget.share() >= LARGEST_SHARE {
            problems.push(format!(
                "{name}: {:.0}% comment lines ({} of {} non-blank; under {:.0}% allowed)",
                budget.share() * 100.0,
                budget.comments,
                budget.non_blank,
                LARGEST_SHARE * 100.0
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "lesson comments over budget (COMMON convention 5: keep the why in a line or two, \
         point to the chapter):\n{}",
        problems.join("\n")
    );
}
