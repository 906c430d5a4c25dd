//! `practice-check`, behind `just check` and `just practice`: with no
//! lesson, the progress table; with a lesson, build the learner's crate in
//! practice/ and run the lesson's stages against it until one fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use notify_debouncer_mini::new_debouncer;
use notify_debouncer_mini::notify::RecursiveMode;
use practice_check::progress::Progress;
use practice_check::{Built, Lesson, Verdict, lesson, lessons};

/// Checks your practice crates against the lessons' own tests, stage by stage.
#[derive(Parser, Debug)]
#[command(name = "practice-check", version)]
struct Args {
    /// The lesson to check (1-7); without it, the progress table.
    lesson: Option<u32>,

    /// Run only this stage (1-based).
    #[arg(long, value_name = "K", requires = "lesson")]
    stage: Option<usize>,

    /// Check the reference lesson under lessons/ instead of yours.
    #[arg(long, requires = "lesson")]
    reference: bool,

    /// Re-check on every save of practice/<crate> (what `just practice N` runs).
    #[arg(long, requires = "lesson", conflicts_with = "reference")]
    watch: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match (args.lesson, args.watch) {
        (None, _) => table().map(|()| true),
        (Some(number), false) => check(number, args.stage, args.reference, &mut std::io::stdout()),
        (Some(number), true) => watch(number, args.stage),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    workspace_bin::workspace_root()
}

fn progress_path(root: &Path) -> PathBuf {
    root.join("practice/target/progress.json")
}

/// `just check`: lesson × stage, from the stored progress.
fn table() -> Result<()> {
    let root = root();
    let rows: Vec<(Lesson, Option<usize>)> = lessons(&root)?
        .into_iter()
        .map(|lesson| {
            let count = lesson.manifest().ok().map(|m| m.stages.len());
            (lesson, count)
        })
        .collect();
    print!("{}", Progress::load(&progress_path(&root)).table(&rows));
    Ok(())
}

/// `just check N [--stage K] [--reference]`; true when every stage run passed.
fn check(number: u32, only: Option<usize>, reference: bool, out: &mut dyn Write) -> Result<bool> {
    let root = root();
    let lesson = lesson(&root, number)?;
    let manifest = lesson.manifest()?;
    let total = manifest.stages.len();
    let stages: Vec<usize> = match only {
        Some(k) if k == 0 || k > total => {
            anyhow::bail!("lesson {number} has stages 1 to {total}, not {k}")
        }
        Some(k) => vec![k],
        None => (1..=total).collect(),
    };
    if reference {
        writeln!(
            out,
            "Checking the reference lessons/{} ({total} stages)",
            lesson.krate
        )?;
        let verdict = practice_check::run_stages(
            &root,
            &lesson,
            &manifest,
            &stages,
            None,
            out,
            &mut |_, _| {},
        )?;
        return Ok(verdict == Verdict::AllPassed);
    }

    anyhow::ensure!(
        lesson.practice_dir.is_dir(),
        "practice/{0} is missing; restore it with `git checkout practice/{0}`",
        lesson.krate
    );
    writeln!(
        out,
        "Checking practice/{} (lesson {number}, {total} stages)",
        lesson.krate
    )?;
    let target = root.join("practice/target");
    let programs =
        match practice_check::build(&root.join("practice/Cargo.toml"), &target, &lesson.krate)? {
            Built::Programs(programs) => programs,
            Built::Failed {
                first_error,
                errors,
            } => {
                writeln!(
                    out,
                    "{}",
                    practice_check::build_failure_report(&first_error, errors)
                )?;
                return Ok(false);
            }
        };
    let bin_dir = target.join("check").join(&lesson.krate);
    practice_check::prepare_bin_dir(&bin_dir, &programs, &manifest.uses)?;

    let path = progress_path(&root);
    let mut progress = Progress::load(&path);
    let verdict = practice_check::run_stages(
        &root,
        &lesson,
        &manifest,
        &stages,
        Some(&bin_dir),
        out,
        &mut |stage, state| progress.record(&lesson.krate, stage, state),
    )?;
    if let (None, Verdict::FailedAt(k) | Verdict::CannotRun(k)) = (only, &verdict) {
        progress.forget_after(&lesson.krate, *k);
    }
    progress.save(&path)?;

    out.write_all(practice_check::closing_line(&lesson, total, &verdict, only).as_bytes())?;
    Ok(verdict == Verdict::AllPassed)
}

/// `just practice N`: check now, then again after every save.
fn watch(number: u32, only: Option<usize>) -> Result<bool> {
    let root = root();
    let lesson = lesson(&root, number)?;
    let (events, saves) = mpsc::channel();
    // Editors write a file in several steps: one check per burst of events.
    let mut debouncer =
        new_debouncer(Duration::from_millis(250), events).context("cannot watch files")?;
    for path in [
        lesson.practice_dir.join("src"),
        lesson.practice_dir.join("Cargo.toml"),
    ] {
        debouncer
            .watcher()
            .watch(&path, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", path.display()))?;
    }
    loop {
        let checked = fingerprint(&lesson.practice_dir);
        if let Err(err) = check(number, only, false, &mut std::io::stdout()) {
            println!("error: {err:#}");
        }
        println!(
            "\nWatching practice/{}: save a file to check again (Ctrl+C stops).",
            lesson.krate
        );
        // Building reads the files, and some systems report reads too: only
        // a real change (a file's size or time, a file added or removed)
        // starts a check.
        while fingerprint(&lesson.practice_dir) == checked {
            if saves.recv().is_err() {
                return Ok(false);
            }
        }
        println!("\n----- a file changed: checking again -----\n");
    }
}

/// The path, size and modification time of every file of the crate's
/// sources and its Cargo.toml.
fn fingerprint(crate_dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut files = Vec::new();
    let mut folders = vec![crate_dir.join("src")];
    let manifest = crate_dir.join("Cargo.toml");
    if let Ok(meta) = std::fs::metadata(&manifest) {
        files.push((manifest, meta.len(), meta.modified().ok()));
    }
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => folders.push(path),
                Ok(meta) => files.push((path, meta.len(), meta.modified().ok())),
                Err(_) => {}
            }
        }
    }
    files.sort();
    files
}
