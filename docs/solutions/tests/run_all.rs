//! Every solution is a program that checks its own claim on loopback and
//! exits non-zero when the claim does not hold; this runs them all: every
//! binary in src/bin, so a new solution cannot be forgotten here.

#[test]
fn every_solution_demonstrates_its_answer() {
    let bins = testkit::workspace_root().join("docs/solutions/src/bin");
    let mut names: Vec<String> = std::fs::read_dir(&bins)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Two exercises per lesson chapter, four chapters.
    assert!(names.len() >= 8, "only {names:?} in {}", bins.display());
    for name in &names {
        let mut solution = testkit::Running::start(name, testkit::command(name, &[]));
        solution.close_stdin();
        let status = solution.wait_exit();
        assert!(status.success(), "{name} failed\n{}", solution.describe());
    }
}
