//! The proof that the stages can fail, run by `just practice-ci` (CI):
//! every broken implementation under practice/broken fails exactly its
//! stage and passes every stage before it; a copy of each reference lesson
//! passes every stage through `PRACTICE_BIN_DIR`, as a learner's finished
//! crate would; every untouched practice crate fails stage 1 with the
//! checker's message; and the transcript each lesson's Practice section
//! shows is the checker's real output.
//!
//! All copies live in one temporary workspace with one target folder, so
//! nix, clap and anyhow build once; the checks run two at a time.
//! Ignored in `cargo test --workspace` (they take minutes and run the
//! lessons' tests again): `just practice-ci` runs them, for every lesson
//! with stages. `PRACTICE_LESSONS=7` (or `6,7`) limits a run to those
//! lessons, e.g. while writing a lesson's stages:
//! `PRACTICE_LESSONS=7 just practice-ci`.

// A harness: a file operation that fails is a failed check, said by the panic.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use practice_check::{Built, Lesson, Manifest, Verdict, lessons};

/// What a copy is a copy of.
#[derive(Debug, Clone)]
enum Kind {
    /// The reference lesson as it is.
    Reference,
    /// The reference with `practice/broken/<crate>/<file>` applied, which
    /// must fail `stage`.
    Broken { file: String, stage: usize },
    /// The learner's starting point, practice/<crate>, untouched.
    Untouched,
}

#[derive(Debug)]
struct Run {
    lesson: Lesson,
    kind: Kind,
    verdict: Result<Verdict, String>,
    /// The checker's output, as the learner would see it.
    output: String,
}

fn root() -> PathBuf {
    testkit::workspace_root()
}

/// Where the temporary workspace goes: beside the course's own builds.
fn scratch() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    target.join("practice-broken")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Copies crate `from` to `workspace/member` as package `member`, without
/// its tests and dev-dependencies (the checks are the lesson's own tests).
fn copy_crate(from: &Path, workspace: &Path, member: &str) -> PathBuf {
    let to = workspace.join(member);
    copy_dir(&from.join("src"), &to.join("src"));
    let manifest = std::fs::read_to_string(from.join("Cargo.toml")).unwrap();
    let mut out = String::new();
    let mut skipping = false;
    let mut package = None;
    for line in manifest.lines() {
        if line.starts_with('[') {
            skipping = line.trim() == "[dev-dependencies]";
        }
        if skipping {
            continue;
        }
        if line.starts_with("name = ") && out.starts_with("[package]") && !out.contains("\nname = ")
        {
            package = Some(line["name = ".len()..].trim().trim_matches('"').to_owned());
            out.push_str(&format!("name = \"{member}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    // A library (lesson 6's protocol) keeps its name: the programs `use` it.
    if let Some(package) = package
        && from.join("src/lib.rs").is_file()
        && !manifest.contains("\n[lib]")
    {
        out.push_str(&format!(
            "\n[lib]\nname = \"{}\"\n",
            package.replace('-', "_")
        ));
    }
    std::fs::write(to.join("Cargo.toml"), out).unwrap();
    to
}

/// The lessons that have stages, with their manifests: every one, or
/// those `PRACTICE_LESSONS` lists (`7`, `6,7`).
fn staged_lessons() -> Vec<(Lesson, Manifest)> {
    let only: Option<Vec<u32>> = std::env::var("PRACTICE_LESSONS")
        .ok()
        .filter(|list| !list.trim().is_empty())
        .map(|list| {
            list.split(',')
                .map(|number| {
                    number.trim().parse().unwrap_or_else(|_| {
                        panic!("PRACTICE_LESSONS={list}: not lesson numbers such as 7 or 6,7")
                    })
                })
                .collect()
        });
    let staged: Vec<(Lesson, Manifest)> = lessons(&root())
        .unwrap()
        .into_iter()
        .filter(|lesson| lesson.manifest_path().exists())
        .filter(|lesson| {
            only.as_ref()
                .is_none_or(|only| only.contains(&lesson.number))
        })
        .map(|lesson| {
            let manifest = lesson.manifest().unwrap();
            (lesson, manifest)
        })
        .collect();
    assert!(
        !staged.is_empty(),
        "no lesson with stages{}",
        only.map_or(String::new(), |only| format!(
            " among PRACTICE_LESSONS {only:?}"
        ))
    );
    staged
}

/// `practice/broken/<crate>/*.patch`, with the stage each must fail.
fn broken_patches(lesson: &Lesson) -> Vec<(String, usize)> {
    let dir = root().join("practice/broken").join(&lesson.krate);
    let mut patches: Vec<(String, usize)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".patch"))
                .map(|name| {
                    let stage = name
                        .split('-')
                        .next()
                        .and_then(|k| k.parse().ok())
                        .unwrap_or_else(|| panic!("{name}: not <K>-<slug>.patch"));
                    (name, stage)
                })
                .collect()
        })
        .unwrap_or_default();
    patches.sort();
    patches
}

/// Builds every copy in the one workspace, then runs every check; once.
fn runs() -> &'static [Run] {
    static RUNS: OnceLock<Vec<Run>> = OnceLock::new();
    RUNS.get_or_init(build_and_check)
}

fn build_and_check() -> Vec<Run> {
    let root = root();
    let workspace = scratch();
    // Keep the target folder (dependencies stay built); replace the copies.
    if let Ok(entries) = std::fs::read_dir(&workspace) {
        for entry in entries.flatten() {
            if entry.file_name() != "target" {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
    }
    std::fs::create_dir_all(&workspace).unwrap();

    let mut copies: Vec<(Lesson, Kind, String)> = Vec::new();
    for (lesson, _) in staged_lessons() {
        let n = lesson.number;
        let reference = copy_crate(
            &lesson.reference_dir,
            &workspace,
            &format!("l{n}-reference"),
        );
        let _ = reference;
        copies.push((lesson.clone(), Kind::Reference, format!("l{n}-reference")));
        for (file, stage) in broken_patches(&lesson) {
            let member = format!("l{n}-broken-{}", file.trim_end_matches(".patch"));
            let dir = copy_crate(&lesson.reference_dir, &workspace, &member);
            let patch = std::fs::read_to_string(
                root.join("practice/broken").join(&lesson.krate).join(&file),
            )
            .unwrap();
            practice_check::patch::apply(&patch, &dir)
                .unwrap_or_else(|err| panic!("{}/{file}: {err:#}", lesson.krate));
            copies.push((lesson.clone(), Kind::Broken { file, stage }, member));
        }
        if lesson.practice_dir.is_dir() {
            copy_crate(&lesson.practice_dir, &workspace, &format!("l{n}-untouched"));
            copies.push((lesson.clone(), Kind::Untouched, format!("l{n}-untouched")));
        }
    }

    // The practice workspace's settings and lock file, with these members.
    let practice = std::fs::read_to_string(root.join("practice/Cargo.toml")).unwrap();
    let members: Vec<String> = copies.iter().map(|(_, _, m)| format!("{m:?}")).collect();
    let manifest = practice.replace(
        "members = [\"lesson*\"]",
        &format!("members = [{}]", members.join(", ")),
    );
    assert_ne!(
        manifest, practice,
        "practice/Cargo.toml lists members = [\"lesson*\"]"
    );
    std::fs::write(workspace.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(
        root.join("practice/Cargo.lock"),
        workspace.join("Cargo.lock"),
    )
    .unwrap();

    // The lessons' tests, built once before the checks run in parallel.
    for (lesson, _) in staged_lessons() {
        let status = std::process::Command::new(practice_check::cargo())
            .args(["test", "--no-run", "-q", "-p", &lesson.krate])
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot build lesson {}'s tests",
            lesson.number
        );
    }

    let manifests: BTreeMap<u32, Manifest> = staged_lessons()
        .into_iter()
        .map(|(lesson, manifest)| (lesson.number, manifest))
        .collect();
    let target = workspace.join("target");
    let mut jobs = Vec::new();
    for (lesson, kind, member) in copies {
        let manifest = &manifests[&lesson.number];
        let header = match &kind {
            Kind::Untouched | Kind::Broken { .. } => format!(
                "Checking practice/{} (lesson {}, {} stages)\n",
                lesson.krate,
                lesson.number,
                manifest.stages.len()
            ),
            Kind::Reference => String::new(),
        };
        let mut output = header;
        let built = practice_check::build(&workspace.join("Cargo.toml"), &target, &member).unwrap();
        let bin_dir = workspace.join("bins").join(&member);
        let verdict = match built {
            Built::Programs(programs) => {
                practice_check::prepare_bin_dir(&bin_dir, &programs, &manifest.uses).unwrap();
                None
            }
            Built::Failed {
                first_error,
                errors,
            } => {
                output.push_str(&practice_check::build_failure_report(&first_error, errors));
                Some(Ok(Verdict::DoesNotBuild))
            }
        };
        jobs.push((lesson, kind, bin_dir, output, verdict));
    }

    let jobs = Mutex::new(jobs.into_iter());
    let results = Mutex::new(Vec::new());
    let workers: usize = std::env::var("PRACTICE_JOBS")
        .ok()
        .and_then(|jobs| jobs.parse().ok())
        .unwrap_or(2);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let Some((lesson, kind, bin_dir, mut output, verdict)) =
                        jobs.lock().unwrap().next()
                    else {
                        break;
                    };
                    let manifest = &manifests[&lesson.number];
                    let verdict = verdict.unwrap_or_else(|| {
                        let stages: Vec<usize> = match &kind {
                            Kind::Reference => (1..=manifest.stages.len()).collect(),
                            Kind::Broken { stage, .. } => (1..=*stage).collect(),
                            Kind::Untouched => vec![1],
                        };
                        let mut out = Vec::new();
                        let verdict = practice_check::run_stages(
                            &root,
                            &lesson,
                            manifest,
                            &stages,
                            Some(&bin_dir),
                            &mut out,
                            &mut |_, _| {},
                        )
                        .map_err(|err| format!("{err:#}"));
                        output.push_str(&String::from_utf8_lossy(&out));
                        if let (Kind::Broken { .. }, Ok(verdict)) = (&kind, &verdict) {
                            let total = manifest.stages.len();
                            output.push_str(&practice_check::closing_line(
                                &lesson, total, verdict, None,
                            ));
                        }
                        verdict
                    });
                    results.lock().unwrap().push(Run {
                        lesson,
                        kind,
                        verdict,
                        output,
                    });
                }
            });
        }
    });
    let mut runs = results.into_inner().unwrap();
    runs.sort_by_key(|run| (run.lesson.number, format!("{:?}", run.kind)));
    runs
}

#[test]
#[ignore = "minutes of lesson tests: `just practice-ci` runs it"]
fn a_copy_of_each_reference_lesson_passes_every_stage() {
    let mut problems = Vec::new();
    for run in runs()
        .iter()
        .filter(|run| matches!(run.kind, Kind::Reference))
    {
        if run.verdict != Ok(Verdict::AllPassed) {
            problems.push(format!(
                "lesson {}'s reference: {:?}\n{}",
                run.lesson.number, run.verdict, run.output
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
#[ignore = "minutes of lesson tests: `just practice-ci` runs it"]
fn every_broken_implementation_fails_exactly_its_stage() {
    let mut problems = Vec::new();
    let mut count = 0;
    for run in runs() {
        let Kind::Broken { file, stage } = &run.kind else {
            continue;
        };
        count += 1;
        if run.verdict != Ok(Verdict::FailedAt(*stage)) {
            problems.push(format!(
                "practice/broken/{}/{file} must pass stages 1 to {} and fail stage {stage}; got {:?}\n{}",
                run.lesson.krate,
                stage - 1,
                run.verdict,
                run.output
            ));
        }
    }
    assert!(count > 0, "no broken implementations under practice/broken");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
#[ignore = "minutes of lesson tests: `just practice-ci` runs it"]
fn every_untouched_practice_crate_fails_stage_1_with_the_checkers_message() {
    let mut problems = Vec::new();
    for run in runs()
        .iter()
        .filter(|run| matches!(run.kind, Kind::Untouched))
    {
        let n = run.lesson.number;
        let skeleton = practice_check::Lesson::binaries(&run.lesson.practice_dir)
            .unwrap()
            .iter()
            .any(|bin| {
                std::fs::read_to_string(run.lesson.practice_dir.join(format!("src/bin/{bin}.rs")))
                    .unwrap()
                    .contains("todo!(")
            });
        let clean = !run.output.contains("stack backtrace")
            && !run.output.contains("RUST_BACKTRACE")
            && !run.output.contains("does not compile");
        let todo_shown = !skeleton || run.output.contains("Your program reached todo!(\"step ");
        if run.verdict != Ok(Verdict::FailedAt(1)) || !clean || !todo_shown {
            problems.push(format!(
                "practice/{} (lesson {n}) as committed must fail stage 1 cleanly{}; got {:?}\n{}",
                run.lesson.krate,
                if skeleton {
                    ", naming the todo!() it reached"
                } else {
                    ""
                },
                run.verdict,
                run.output
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The checker's output for each lesson's chosen broken implementation
/// (`transcript` in its stages.toml), as its Practice section shows it:
/// docs/src/generated/practice-lessonN.txt.
#[test]
#[ignore = "minutes of lesson tests: `just practice-ci` runs it"]
fn the_practice_transcripts_are_the_checkers_output() {
    for (lesson, manifest) in staged_lessons() {
        let chosen = manifest.transcript.as_deref().unwrap_or_else(|| {
            panic!(
                "lessons/{}/tests/stages.toml names no transcript",
                lesson.krate
            )
        });
        let run = runs()
            .iter()
            .find(|run| {
                run.lesson.number == lesson.number
                    && matches!(&run.kind, Kind::Broken { file, .. } if file.trim_end_matches(".patch") == chosen)
            })
            .unwrap_or_else(|| panic!("no practice/broken/{}/{chosen}.patch", lesson.krate));
        let bin_dir = scratch()
            .join("bins")
            .join(format!("l{}-broken-{chosen}", lesson.number));
        let text = practice_check::transcript(
            &run.output,
            &root(),
            &bin_dir,
            &format!("practice/target/check/{}", lesson.krate),
        );
        testkit::check_generated(&format!("practice-lesson{}.txt", lesson.number), &text);
    }
}
