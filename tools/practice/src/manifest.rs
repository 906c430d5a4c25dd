//! A lesson's stage manifest, `lessons/<crate>/tests/stages.toml`: which of
//! the lesson's own tests make up each stage, in the order the chapter
//! teaches, with the hint, book section and man pages the checker prints
//! when a stage fails. The tests stay the one source of truth; the manifest
//! only groups and explains them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The whole manifest of one lesson.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Other lessons' programs the tests start (lesson 1's tests chat with
    /// `lesson2-chat`): the checker gives them the reference builds.
    #[serde(default)]
    pub uses: Vec<String>,
    /// The broken implementation (`<K>-<slug>`, a patch under
    /// practice/broken/<crate>) whose check output the book shows.
    #[serde(default)]
    pub transcript: Option<String>,
    #[serde(rename = "stage")]
    pub stages: Vec<Stage>,
    /// Tests that belong to no stage, and why (kernel experiments, the
    /// book's transcripts).
    #[serde(default)]
    pub unstaged: Option<Unstaged>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    /// `<tests file>::<test function>`, e.g. `cli::bad_input_gets_a_one_line_error`.
    pub tests: Vec<String>,
    pub hint: String,
    /// `lessonN.md#heading-id`, a section of the book under docs/src.
    pub book: String,
    #[serde(default)]
    pub man: Vec<String>,
    /// Needs the network lab (root, or user namespaces).
    #[serde(default)]
    pub lab: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unstaged {
    pub tests: Vec<String>,
    pub reason: String,
}

/// One test of a stage: the integration-test file (without `.rs`) and the
/// test function's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TestName {
    pub file: String,
    pub function: String,
}

impl TestName {
    pub fn parse(text: &str) -> Result<TestName> {
        match text.split_once("::") {
            Some((file, function))
                if !file.is_empty() && !function.is_empty() && !function.contains("::") =>
            {
                Ok(TestName {
                    file: file.to_owned(),
                    function: function.to_owned(),
                })
            }
            _ => bail!("{text:?} is not <tests file>::<test function>"),
        }
    }
}

impl std::fmt::Display for TestName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}::{}", self.file, self.function)
    }
}

impl Stage {
    /// The stage's tests grouped by file, in the manifest's order within each.
    pub fn tests_by_file(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for test in &self.tests {
            let test = TestName::parse(test)?;
            files.entry(test.file).or_default().push(test.function);
        }
        Ok(files)
    }
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest> {
        let manifest: Manifest = toml::from_str(text)?;
        if manifest.stages.is_empty() {
            bail!("no [[stage]]");
        }
        for (number, stage) in manifest.stages.iter().enumerate() {
            if stage.tests.is_empty() {
                bail!("stage {} ({:?}) has no tests", number + 1, stage.name);
            }
            for test in &stage.tests {
                TestName::parse(test)?;
            }
        }
        Ok(manifest)
    }

    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Manifest::parse(&text)
            .with_context(|| format!("{} is not a stage manifest", path.display()))
    }
}

/// A lesson of the course: its number, crate and folders.
#[derive(Debug, Clone)]
pub struct Lesson {
    pub number: u32,
    /// The crate's name, the same under lessons/ and practice/.
    pub krate: String,
    pub reference_dir: PathBuf,
    pub practice_dir: PathBuf,
}

impl Lesson {
    pub fn manifest_path(&self) -> PathBuf {
        self.reference_dir.join("tests/stages.toml")
    }

    pub fn manifest(&self) -> Result<Manifest> {
        Manifest::load(&self.manifest_path())
    }

    /// The lesson's programs: the file names under `src/bin` of `crate_dir`.
    pub fn binaries(crate_dir: &Path) -> Result<Vec<String>> {
        let dir = crate_dir.join("src/bin");
        let mut names = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry?.path();
            if let Some(stem) = path
                .file_stem()
                .filter(|_| path.extension().is_some_and(|ext| ext == "rs"))
            {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Every lesson under `root/lessons`, by number (`lessonN-…` folders).
pub fn lessons(root: &Path) -> Result<Vec<Lesson>> {
    let mut lessons = Vec::new();
    let dir = root.join("lessons");
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let number = name
            .strip_prefix("lesson")
            .and_then(|rest| rest.split('-').next())
            .and_then(|digits| digits.parse().ok());
        if let Some(number) = number {
            lessons.push(Lesson {
                number,
                reference_dir: dir.join(&name),
                practice_dir: root.join("practice").join(&name),
                krate: name,
            });
        }
    }
    lessons.sort_by_key(|lesson| lesson.number);
    Ok(lessons)
}

/// Lesson `number`, or an error that lists the lessons there are.
pub fn lesson(root: &Path, number: u32) -> Result<Lesson> {
    let all = lessons(root)?;
    let known: Vec<String> = all.iter().map(|lesson| lesson.number.to_string()).collect();
    all.into_iter()
        .find(|lesson| lesson.number == number)
        .with_context(|| {
            format!(
                "there is no lesson {number}; the lessons are {}",
                known.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_parses_and_groups_tests_by_file() {
        let manifest = Manifest::parse(
            r#"
            uses = ["lesson2-chat"]
            [[stage]]
            name = "binds"
            tests = ["cli::a", "chat::b", "cli::c"]
            hint = "Bind first."
            book = "lesson1.md#3-bind"
            man = ["bind(2)"]
            [unstaged]
            tests = ["chat::book_session"]
            reason = "the book's transcript"
            "#,
        )
        .unwrap();
        let files = manifest.stages[0].tests_by_file().unwrap();
        assert_eq!(files["cli"], ["a", "c"]);
        assert_eq!(files["chat"], ["b"]);
        assert!(!manifest.stages[0].lab);
        assert_eq!(manifest.uses, ["lesson2-chat"]);
    }

    #[test]
    fn a_test_without_its_file_is_refused() {
        let err = Manifest::parse(
            r#"
            [[stage]]
            name = "x"
            tests = ["just_a_function"]
            hint = "h"
            book = "lesson1.md"
            "#,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("<tests file>::<test function>"),
            "{err:#}"
        );
    }
}
