//! The practice checker: builds a learner's lesson (or a broken copy, or the
//! reference) and runs the lesson's own tests against it, stage by stage,
//! with `PRACTICE_BIN_DIR` pointing `testkit::bin` at the programs to check.
//! What the learner reads is the tests' own failure messages, cleaned of
//! test-harness noise, plus the stage's hint, book section and man pages.

pub mod manifest;
pub mod patch;
pub mod progress;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub use manifest::{Lesson, Manifest, Stage, TestName, lesson, lessons};

/// The variable testkit::bin reads (testkit::PRACTICE_BIN_DIR).
pub const PRACTICE_BIN_DIR: &str = "PRACTICE_BIN_DIR";

/// What a build produced: the programs, or the compiler's first error.
#[derive(Debug)]
pub enum Built {
    Programs(Vec<PathBuf>),
    Failed { first_error: String, errors: usize },
}

/// Builds the binaries of `package` in the workspace of `manifest_path`
/// into `target_dir`, and reads what cargo reports: the executables, or
/// the first compiler error as rustc rendered it (not a page of them).
pub fn build(manifest_path: &Path, target_dir: &Path, package: &str) -> Result<Built> {
    let output = Command::new(cargo())
        .args(["build", "--bins", "--message-format=json", "-p", package])
        .arg("--manifest-path")
        .arg(manifest_path)
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .context("cannot run cargo build")?;
    let mut programs = Vec::new();
    let mut errors = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match message["reason"].as_str() {
            Some("compiler-artifact") => {
                if let Some(path) = message["executable"].as_str() {
                    programs.push(PathBuf::from(path));
                }
            }
            Some("compiler-message") if message["message"]["level"] == "error" => {
                if let Some(rendered) = message["message"]["rendered"].as_str() {
                    errors.push(rendered.trim_end().to_owned());
                }
            }
            _ => {}
        }
    }
    if output.status.success() {
        return Ok(Built::Programs(programs));
    }
    // Errors that are not the compiler's (a broken Cargo.toml): cargo's own words.
    let first_error = errors.first().cloned().unwrap_or_else(|| {
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter(|line| !line.trim_start().starts_with("Compiling"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(Built::Failed {
        // "aborting due to …" repeats the count: not an error of its own.
        errors: errors
            .iter()
            .filter(|error| !error.starts_with("error: aborting due to"))
            .count()
            .max(1),
        first_error,
    })
}

/// The cargo that runs us (cargo sets `CARGO`), else the one on PATH.
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from)
}

/// Fills `dir` with the programs to check: `own` (the lesson's, as built),
/// and the reference builds of the other lessons' programs the tests start.
pub fn prepare_bin_dir(dir: &Path, own: &[PathBuf], uses: &[String]) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for program in own {
        let name = program.file_name().context("a program has a file name")?;
        // A copy, not a link: the next build may replace the original.
        std::fs::copy(program, dir.join(name))
            .with_context(|| format!("cannot copy {}", program.display()))?;
    }
    for name in uses {
        if dir.join(name).exists() {
            continue;
        }
        let reference = workspace_bin::path(name, workspace_bin::Profile::current())?;
        std::os::unix::fs::symlink(&reference, dir.join(name))
            .with_context(|| format!("cannot link {name} into {}", dir.display()))?;
    }
    Ok(())
}

/// Whether the network lab can run here: as root, or with user namespaces.
pub fn lab_available() -> bool {
    if nix_is_root() {
        return true;
    }
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "true"])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .map(|line| line.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// How one stage went.
#[derive(Debug)]
pub enum Outcome {
    Passed,
    /// Each failing test with its cleaned failure message.
    Failed(Vec<(TestName, String)>),
    /// The stage needs the network lab, which cannot run here.
    CannotRun(String),
}

/// Runs `stage` of `lesson` with the programs in `bin_dir` (`None`: the
/// reference lesson's own).
pub fn run_stage(
    root: &Path,
    lesson: &Lesson,
    stage: &Stage,
    bin_dir: Option<&Path>,
) -> Result<Outcome> {
    if stage.lab && !lab_available() {
        return Ok(Outcome::CannotRun(
            "this stage needs the network lab: run it as root, or where user namespaces are \
             allowed (`unshare --user --map-root-user --net true` must work)"
                .into(),
        ));
    }
    let mut failures = Vec::new();
    for (file, functions) in stage.tests_by_file()? {
        let mut command = Command::new(cargo());
        command
            .args(["test", "-q", "-p", &lesson.krate, "--test", &file])
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .args(["--", "--exact", "--color", "never"])
            .args(&functions)
            // A program that panics prints its message, not a backtrace.
            .env("RUST_BACKTRACE", "0")
            // The checker checks a program; it never rewrites the book's
            // generated files with that program's output (a lesson test
            // that records a transcript would, under UPDATE_GENERATED=1).
            .env_remove("UPDATE_GENERATED");
        match bin_dir {
            Some(dir) => command.env(PRACTICE_BIN_DIR, dir),
            None => command.env_remove(PRACTICE_BIN_DIR),
        };
        let output = command
            .output()
            .with_context(|| format!("cannot run cargo test for {}", lesson.krate))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let passed = count_passed(&stdout);
        if output.status.success() {
            if passed != Some(functions.len()) {
                bail!(
                    "cargo test -p {} --test {file} ran {passed:?} tests, not the stage's {}: \
                     is the manifest's list right?",
                    lesson.krate,
                    functions.len()
                );
            }
            continue;
        }
        let blocks = failure_blocks(&stdout);
        if blocks.is_empty() {
            // The tests did not even run: say what cargo said.
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "cargo test -p {} --test {file} failed before running the checks:\n{}",
                lesson.krate,
                tail.join("\n")
            );
        }
        for function in &functions {
            if let Some((_, text)) = blocks.iter().find(|(name, _)| name == function) {
                failures.push((
                    TestName {
                        file: file.clone(),
                        function: function.clone(),
                    },
                    clean_failure(text),
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(Outcome::Passed)
    } else {
        // In the manifest's order, so the report is the same on every run.
        let order = |test: &TestName| stage.tests.iter().position(|t| *t == test.to_string());
        failures.sort_by_key(|(test, _)| order(test));
        Ok(Outcome::Failed(failures))
    }
}

/// libtest's "N passed" from its summary line.
fn count_passed(stdout: &str) -> Option<usize> {
    let line = stdout
        .lines()
        .find(|line| line.starts_with("test result:"))?;
    let before = line.split(" passed").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

/// The `---- NAME stdout ----` blocks libtest prints for failed tests.
fn failure_blocks(stdout: &str) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in stdout.lines() {
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" stdout ----"))
        {
            blocks.extend(current.take());
            current = Some((name.to_owned(), String::new()));
        } else if line == "failures:" || line.starts_with("test result:") {
            blocks.extend(current.take());
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    blocks.extend(current);
    blocks
}

/// A test's failure message without the harness's noise: the `thread …
/// panicked at` location lines and the backtrace notes.
pub fn clean_failure(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| {
            let location = line.starts_with("thread '") && line.contains("panicked at");
            let note = line.contains("note: run with `RUST_BACKTRACE=1`")
                || line.starts_with("stack backtrace:");
            !(location || note)
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// The message of the first `todo!` the program reached, if the failure
/// shows one ("not yet implemented: step 3: …").
pub fn reached_todo(failure: &str) -> Option<String> {
    let at = failure.find("not yet implemented: ")?;
    let rest = &failure[at + "not yet implemented: ".len()..];
    let todo = rest.lines().next().unwrap_or(rest).trim();
    // Some harnesses print stderr escaped (assert_cmd's `\"`).
    Some(todo.replace("\\\"", "\"").replace("\\'", "'"))
}

/// The title of the book section `book` (`lesson1.md#3-bind`) names, read
/// from docs/src; `None` if the page or heading is not there.
pub fn book_section(root: &Path, book: &str) -> Option<String> {
    let (page, id) = book.split_once('#')?;
    let text = std::fs::read_to_string(root.join("docs/src").join(page)).ok()?;
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            // Sections are named by their explicit ids (`## Bind {#3-bind}`),
            // which the Chinese edition keeps when it translates the title.
            let heading = line.trim_start_matches('#').trim();
            if let Some((title, explicit)) = heading
                .strip_suffix('}')
                .and_then(|rest| rest.rsplit_once("{#"))
                && explicit == id
            {
                return Some(title.trim().to_owned());
            }
        }
    }
    None
}

/// The first line of a stage's report: `stage 2/6  name: passed`.
pub fn stage_line(number: usize, total: usize, stage: &Stage, verdict: &str) -> String {
    format!("stage {number}/{total}  {}: {verdict}\n", stage.name)
}

/// What the learner reads when a stage fails: each failing check with its
/// message, the `todo!` reached, the hint, the book section, the man pages.
pub fn failure_report(
    root: &Path,
    lesson: &Lesson,
    stage: &Stage,
    failures: &[(TestName, String)],
) -> String {
    let mut out = String::new();
    for (test, message) in failures {
        let _ = writeln!(
            out,
            "\n  The check {test} (lessons/{}/tests/{}.rs) failed:",
            lesson.krate, test.file
        );
        for line in message.lines() {
            let _ = writeln!(out, "  | {line}");
        }
    }
    if let Some(todo) = failures
        .iter()
        .find_map(|(_, message)| reached_todo(message))
    {
        let _ = writeln!(out, "\n  Your program reached todo!(\"{todo}\").");
    }
    let _ = writeln!(out, "\n  Hint: {}", stage.hint);
    let section =
        book_section(root, &stage.book).map_or_else(String::new, |title| format!("\"{title}\" "));
    let _ = writeln!(out, "  Read: {section}(docs/src/{})", stage.book);
    if !stage.man.is_empty() {
        let _ = writeln!(out, "  Man:  {}", stage.man.join(", "));
    }
    out
}

/// What happened to a whole check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every stage run passed.
    AllPassed,
    /// The first stage (1-based) that failed.
    FailedAt(usize),
    /// The program did not compile.
    DoesNotBuild,
    /// A stage that could not run here (the network lab).
    CannotRun(usize),
}

/// Runs `stages` (1-based numbers, in order) of `lesson` with the programs
/// in `bin_dir`, stopping at the first that fails; writes the report to
/// `out` and calls `record` with each stage's result.
pub fn run_stages(
    root: &Path,
    lesson: &Lesson,
    manifest: &Manifest,
    stages: &[usize],
    bin_dir: Option<&Path>,
    out: &mut dyn std::io::Write,
    record: &mut dyn FnMut(usize, progress::State),
) -> Result<Verdict> {
    let total = manifest.stages.len();
    for &number in stages {
        let stage = manifest
            .stages
            .get(number - 1)
            .with_context(|| format!("lesson {} has stages 1 to {total}", lesson.number))?;
        match run_stage(root, lesson, stage, bin_dir)? {
            Outcome::Passed => {
                record(number, progress::State::Passed);
                out.write_all(stage_line(number, total, stage, "passed").as_bytes())?;
            }
            Outcome::Failed(failures) => {
                record(number, progress::State::Failed);
                out.write_all(stage_line(number, total, stage, "FAILED").as_bytes())?;
                out.write_all(failure_report(root, lesson, stage, &failures).as_bytes())?;
                return Ok(Verdict::FailedAt(number));
            }
            Outcome::CannotRun(why) => {
                out.write_all(stage_line(number, total, stage, "cannot run here").as_bytes())?;
                writeln!(out, "  {why}")?;
                return Ok(Verdict::CannotRun(number));
            }
        }
    }
    Ok(Verdict::AllPassed)
}

/// The line after a check: what to do next.
pub fn closing_line(
    lesson: &Lesson,
    total: usize,
    verdict: &Verdict,
    only: Option<usize>,
) -> String {
    let number = lesson.number;
    match verdict {
        Verdict::AllPassed if only.is_none() => format!(
            "\nLesson {number}: all {total} stages pass. The lesson's own code is in lessons/{}.\n",
            lesson.krate
        ),
        Verdict::FailedAt(k) => format!(
            "\nFix it and run `just check {number}` again (`just check {number} --stage {k}` runs this stage alone).\n"
        ),
        _ => String::new(),
    }
}

/// A check's output made the same on every machine and run, for the book:
/// the build folder `bin_dir` shown as `shown`, paths relative to `root`,
/// ports and thread ids (which the kernel picks) as `PORT` and no id.
pub fn transcript(output: &str, root: &Path, bin_dir: &Path, shown: &str) -> String {
    let text = output
        .replace(&bin_dir.display().to_string(), shown)
        .replace(&format!("{}/", root.display()), "");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find([':', '(']) {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let digits = after[1..].chars().take_while(char::is_ascii_digit).count();
        let is_port = after.starts_with(':')
            && digits > 0
            && (out.ends_with("127.0.0.1") || out.ends_with("[::1]"));
        let is_thread_id = after.starts_with('(')
            && digits > 0
            && after[1 + digits..].starts_with(')')
            && out.ends_with("' ");
        if is_port {
            out.push_str(":PORT");
            rest = &after[1 + digits..];
        } else if is_thread_id {
            out.pop();
            rest = &after[2 + digits..];
        } else {
            out.push_str(&after[..1]);
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The compiler's first error, as the learner sees it.
pub fn build_failure_report(first_error: &str, errors: usize) -> String {
    let mut out = String::from("Your program does not compile");
    if errors > 1 {
        let _ = write!(out, " ({errors} errors; the first one)");
    }
    out.push_str(":\n\n");
    out.push_str(first_error);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_block_is_read_and_cleaned() {
        let stdout = "\nrunning 2 tests\n...\nfailures:\n\n---- a_test stdout ----\n\
            thread 'a_test' panicked at tests/chat.rs:3:5:\nexpected 5 bytes, got 3\n\
            note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n\
            ---- b_test stdout ----\nthread 'b_test' panicked at x.rs:1:1:\n\
            not yet implemented: step 1: create\n\nfailures:\n    a_test\n    b_test\n\n\
            test result: FAILED. 0 passed; 2 failed; 0 ignored\n";
        let blocks = failure_blocks(stdout);
        assert_eq!(blocks.len(), 2, "{blocks:?}");
        assert_eq!(clean_failure(&blocks[0].1), "expected 5 bytes, got 3");
        assert_eq!(
            reached_todo(&blocks[1].1).as_deref(),
            Some("step 1: create")
        );
        assert_eq!(count_passed(stdout), Some(0));
        assert_eq!(
            count_passed("test result: ok. 3 passed; 0 failed; 0 ignored"),
            Some(3)
        );
    }

    #[test]
    fn a_transcript_hides_ports_thread_ids_and_build_paths() {
        let text = transcript(
            "/r/x/bin/chat --bind 127.0.0.1:4321 [::1]:7 thread 'main' (123) panicked (fd 3)\n/r/lessons",
            Path::new("/r"),
            Path::new("/r/x/bin"),
            "practice/target/check/l",
        );
        assert_eq!(
            text,
            "practice/target/check/l/chat --bind 127.0.0.1:PORT [::1]:PORT thread 'main' panicked (fd 3)\nlessons"
        );
    }
}
