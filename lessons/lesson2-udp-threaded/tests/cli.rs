//! Lesson 2's command line: what cannot be parsed is a usage error (status
//! 2), what the kernel refuses is one `error:` line (status 1), never a panic.

#[test]
fn bad_input_gets_a_one_line_error() {
    testkit::udp::check_bad_input("lesson2-udp-threaded");
}
