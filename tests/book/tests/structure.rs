//! The shape every chapter takes, so that a beginner can finish the course:
//! it opens with what the learner will be able to do, asks them to predict
//! before they run, keeps caveats in folded asides, closes with a recap and
//! three questions, and names its tests only in a "Verified by" list.
//!
//! A chapter is a top-level entry of SUMMARY.md's numbered part; an indented
//! entry is a page of the chapter above it, which shares its objectives and
//! recap but keeps the same budget and the same rule for test names.

use std::collections::BTreeSet;
use std::path::Path;

use book::{code_spans, files_under, fold_summaries, pages};

/// Lines a chapter's main path may take (the benchmark chapter is optional
/// reading, and shorter).
const MAIN_PATH_BUDGET: usize = 250;
const BENCH_BUDGET: usize = 80;

/// (file name, is a chapter rather than one of its pages), from SUMMARY.md.
fn numbered_pages() -> Vec<(String, bool)> {
    let summary = std::fs::read_to_string(docs().join("SUMMARY.md")).expect("read SUMMARY.md");
    summary
        .lines()
        .filter_map(|line| {
            let top = line.starts_with("- [");
            let nested = line.starts_with(' ') && line.trim_start().starts_with("- [");
            if !top && !nested {
                return None;
            }
            let file = line.split("](").nth(1)?.split(')').next()?;
            Some((file.to_owned(), top))
        })
        .collect()
}

fn docs() -> std::path::PathBuf {
    testkit::workspace_root().join("docs/src")
}

fn read(file: &str) -> String {
    let text = std::fs::read_to_string(docs().join(file))
        .unwrap_or_else(|err| panic!("read {file}: {err}"));
    fold_summaries(&text)
}

/// Where the main path ends: the first closing section.
fn is_closing(line: &str) -> bool {
    [
        "## Recap",
        "## Check yourself",
        "## Exercises",
        "## Practice",
        "## Verified by",
    ]
    .iter()
    .any(|heading| line.trim_end() == *heading)
        || line.starts_with("{{#include practice/")
}

/// The main path: the lines before the first closing section, less those
/// inside `<details>` … `</details>` (folded asides and answers).
fn main_path(text: &str) -> Vec<&str> {
    let mut depth = 0usize;
    let mut kept = Vec::new();
    for line in text.lines() {
        if depth == 0 && is_closing(line) {
            break;
        }
        let opens = line.matches("<details").count();
        let closes = line.matches("</details>").count();
        if depth == 0 && opens == 0 {
            kept.push(line);
        }
        depth = (depth + opens).saturating_sub(closes);
    }
    kept
}

/// The lines of section `heading` (up to the next `## ` heading).
fn section<'a>(text: &'a str, heading: &str) -> Option<Vec<&'a str>> {
    let mut lines = text.lines().skip_while(|line| line.trim_end() != heading);
    lines.next()?;
    Some(lines.take_while(|line| !line.starts_with("## ")).collect())
}

/// Top-level bullets (`- `) of a section.
fn bullets(lines: &[&str]) -> usize {
    lines.iter().filter(|line| line.starts_with("- ")).count()
}

#[test]
fn every_chapter_has_objectives_a_prediction_a_recap_and_questions() {
    let mut problems = Vec::new();
    for (file, chapter) in numbered_pages() {
        if !chapter {
            continue;
        }
        let text = read(&file);
        let mut problem = |what: String| problems.push(format!("{file}: {what}"));
        match section(&text, "## What you will be able to do") {
            Some(lines) if bullets(&lines) == 3 => {}
            Some(lines) => problem(format!("{} objectives, not 3", bullets(&lines))),
            None => problem("no `## What you will be able to do`".into()),
        }
        let path = main_path(&text);
        let predicts = text
            .lines()
            .zip(text.lines().skip(1).collect::<Vec<_>>().windows(12))
            .filter(|(line, after)| {
                line.starts_with("> **Predict, then run.**")
                    && after
                        .iter()
                        .any(|next| next.contains("<summary>Answer</summary>"))
            })
            .count();
        if predicts == 0
            || !path
                .iter()
                .any(|line| line.starts_with("> **Predict, then run.**"))
        {
            problem("no `> **Predict, then run.**` on the main path with a folded answer".into());
        }
        match section(&text, "## Recap") {
            Some(lines) if bullets(&lines) == 3 => {}
            Some(lines) => problem(format!("{} recap bullets, not 3", bullets(&lines))),
            None => problem("no `## Recap`".into()),
        }
        match section(&text, "## Check yourself") {
            Some(lines) => {
                let questions = ["1. ", "2. ", "3. "]
                    .iter()
                    .filter(|number| lines.iter().any(|line| line.starts_with(*number)))
                    .count();
                let answers = lines
                    .iter()
                    .filter(|line| line.contains("<summary>Answer</summary>"))
                    .count();
                if questions != 3 || answers != 3 {
                    problem(format!(
                        "{questions} questions, {answers} folded answers: not 3 and 3"
                    ));
                }
            }
            None => problem("no `## Check yourself`".into()),
        }
    }
    assert!(
        problems.is_empty(),
        "chapters without their shape (see docs/src/introduction.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_chapter_main_path_runs_over_its_budget() {
    let mut problems = Vec::new();
    for (file, _) in numbered_pages() {
        let budget = if file == "bench.md" {
            BENCH_BUDGET
        } else {
            MAIN_PATH_BUDGET
        };
        let lines = main_path(&read(&file)).len();
        if lines > budget {
            problems.push(format!("{file}: main path {lines} lines, budget {budget}"));
        }
    }
    assert!(
        problems.is_empty(),
        "move caveats into folded `Going deeper` asides:\n{}",
        problems.join("\n")
    );
}

/// Every function marked `#[test]` in the workspace.
fn test_names() -> BTreeSet<String> {
    let root = testkit::workspace_root();
    ["lessons", "tests", "tools", "docs/solutions"]
        .iter()
        .flat_map(|folder| files_under(&root.join(folder), "rs"))
        .flat_map(|(_, text)| {
            let mut names = Vec::new();
            let mut marked = false;
            for line in text.lines() {
                let line = line.trim();
                if line == "#[test]" {
                    marked = true;
                } else if marked && let Some(rest) = line.strip_prefix("fn ") {
                    names.push(rest.split('(').next().unwrap_or_default().to_owned());
                    marked = false;
                } else if marked && !line.starts_with("#[") && !line.starts_with("//") {
                    marked = false;
                }
            }
            names
        })
        .collect()
}

#[test]
fn test_names_appear_only_in_verified_by() {
    let tests = test_names();
    assert!(
        tests.len() > 100,
        "found only {} tests: is the scan right?",
        tests.len()
    );
    let mut problems = Vec::new();
    for (page, text) in pages() {
        if page
            .parent()
            .is_some_and(|folder| folder.ends_with("generated"))
        {
            continue;
        }
        let body = text.split("\n## Verified by\n").next().unwrap_or_default();
        for span in code_spans(body) {
            if tests.contains(&span) {
                problems.push(format!("{}: `{span}`", name(&page)));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "test names belong in the page's `## Verified by` list, not its body:\n{}",
        problems.join("\n")
    );
}

fn name(page: &Path) -> String {
    page.strip_prefix(docs())
        .unwrap_or(page)
        .display()
        .to_string()
}
