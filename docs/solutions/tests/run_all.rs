//! Every solution is a program that checks its own claim on loopback and
//! exits non-zero when the claim does not hold; this runs them all.

const SOLUTIONS: &[&str] = &[
    "ex1_msg_trunc",
    "ex1_connected_udp",
    "ex2_self_pipe",
    "ex2_shutdown_wakes_receiver",
    "ex3_client_cap",
    "ex3_idle_timeout",
    "ex4_reuseport",
    "ex4_linger_reset",
];

#[test]
fn every_solution_demonstrates_its_answer() {
    for name in SOLUTIONS {
        let mut solution = testkit::Running::start(name, testkit::command(name, &[]));
        solution.close_stdin();
        let status = solution.wait_exit();
        assert!(status.success(), "{name} failed\n{}", solution.describe());
    }
}
