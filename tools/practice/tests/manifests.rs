//! The stage manifests are right before anything runs (fast, in `cargo
//! test --workspace`): each lesson with stages has 5 to 8; every test they
//! name exists; every test of the lesson is in exactly one stage or listed
//! as unstaged; every book section exists; every stage has a broken
//! implementation that still applies to the lesson; the practice crate is
//! there with the lesson's programs.

use std::collections::BTreeMap;
use std::path::Path;

use practice_check::{Lesson, lessons};

/// `file::function` for each `#[test]` function in `dir/*.rs`.
fn test_functions(dir: &Path) -> Vec<String> {
    let mut tests = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the lesson's tests folder") {
        let path = entry.expect("a folder entry").path();
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let file = path
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("a test file");
        let mut after_test = false;
        for line in text.lines().map(str::trim) {
            if line == "#[test]" {
                after_test = true;
            } else if after_test && let Some(rest) = line.strip_prefix("fn ") {
                let name = rest.split('(').next().unwrap_or_default();
                tests.push(format!("{file}::{name}"));
                after_test = false;
            }
        }
    }
    tests.sort();
    tests
}

fn staged_lessons() -> Vec<Lesson> {
    let root = testkit::workspace_root();
    let staged: Vec<Lesson> = lessons(&root)
        .expect("the lessons")
        .into_iter()
        .filter(|lesson| lesson.manifest_path().exists())
        .collect();
    assert!(!staged.is_empty(), "no lessons/*/tests/stages.toml");
    staged
}

#[test]
fn every_lesson_test_is_in_exactly_one_stage_or_listed_as_unstaged() {
    let mut problems = Vec::new();
    for lesson in staged_lessons() {
        let manifest = lesson.manifest().unwrap_or_else(|err| panic!("{err:#}"));
        let name = &lesson.krate;
        let count = manifest.stages.len();
        if !(5..=8).contains(&count) {
            problems.push(format!("{name}: {count} stages; a lesson has 5 to 8"));
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let staged = manifest.stages.iter().flat_map(|stage| &stage.tests);
        let unstaged = manifest
            .unstaged
            .iter()
            .flat_map(|unstaged| &unstaged.tests);
        for test in staged.chain(unstaged) {
            *seen.entry(test.clone()).or_default() += 1;
        }
        let existing = test_functions(&lesson.reference_dir.join("tests"));
        for test in &existing {
            match seen.get(test) {
                None => problems.push(format!("{name}: {test} is in no stage (nor [unstaged])")),
                Some(&n) if n > 1 => problems.push(format!("{name}: {test} is listed {n} times")),
                Some(_) => {}
            }
        }
        for test in seen.keys() {
            if !existing.contains(test) {
                problems.push(format!(
                    "{name}: stages.toml names {test}, which is no #[test] there"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_stage_names_a_book_section_that_exists() {
    let root = testkit::workspace_root();
    let mut problems = Vec::new();
    for lesson in staged_lessons() {
        for (k, stage) in lesson
            .manifest()
            .expect("a manifest")
            .stages
            .iter()
            .enumerate()
        {
            if practice_check::book_section(&root, &stage.book).is_none() {
                problems.push(format!(
                    "{} stage {}: no heading for {} under docs/src",
                    lesson.krate,
                    k + 1,
                    stage.book
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each stage has a broken implementation, and each patch still applies to
/// the lesson (building and running them is `just practice-ci`'s job).
#[test]
fn every_stage_has_a_broken_implementation_that_applies() {
    let root = testkit::workspace_root();
    let scratch = std::env::temp_dir().join(format!("practice-manifests-{}", std::process::id()));
    let mut problems = Vec::new();
    for lesson in staged_lessons() {
        let manifest = lesson.manifest().expect("a manifest");
        let dir = root.join("practice/broken").join(&lesson.krate);
        let patches: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.ends_with(".patch"))
                    .collect()
            })
            .unwrap_or_default();
        for k in 1..=manifest.stages.len() {
            if !patches
                .iter()
                .any(|name| name.starts_with(&format!("{k}-")))
            {
                problems.push(format!(
                    "{}: no practice/broken/{0}/{k}-<slug>.patch for stage {k}",
                    lesson.krate
                ));
            }
        }
        for name in &patches {
            let stage: Option<usize> = name.split('-').next().and_then(|k| k.parse().ok());
            if stage.is_none_or(|k| k == 0 || k > manifest.stages.len()) {
                problems.push(format!(
                    "{}/{name}: not <K>-<slug>.patch with K a stage",
                    lesson.krate
                ));
            }
            let copy = scratch.join(&lesson.krate).join(name);
            std::fs::create_dir_all(&copy).expect("a scratch folder");
            copy_src(&lesson.reference_dir.join("src"), &copy.join("src"));
            let patch = std::fs::read_to_string(dir.join(name)).expect("a patch");
            if let Err(err) = practice_check::patch::apply(&patch, &copy) {
                problems.push(format!("{}/{name}: {err:#}", lesson.krate));
            }
        }
        if let Some(chosen) = &manifest.transcript {
            if !patches.contains(&format!("{chosen}.patch")) {
                problems.push(format!(
                    "{}: transcript = {chosen:?} names no patch",
                    lesson.krate
                ));
            }
        } else {
            problems.push(format!("{}: stages.toml names no transcript", lesson.krate));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn copy_src(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a scratch folder");
    for entry in std::fs::read_dir(from).expect("a source folder").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_src(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a source file");
        }
    }
}

#[test]
fn every_staged_lesson_has_its_practice_crate_with_the_same_programs() {
    let mut problems = Vec::new();
    for lesson in staged_lessons() {
        let reference = Lesson::binaries(&lesson.reference_dir).expect("the lesson's programs");
        match Lesson::binaries(&lesson.practice_dir) {
            Ok(practice) if practice == reference => {}
            Ok(practice) => problems.push(format!(
                "practice/{} has programs {practice:?}; the lesson has {reference:?}",
                lesson.krate
            )),
            Err(err) => problems.push(format!("practice/{}: {err:#}", lesson.krate)),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
