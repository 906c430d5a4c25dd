//! `just timewait`: reproduces the post's restart bug live on loopback and
//! prints what each terminal shows. The steps are testkit's `Reproduction`,
//! the code lesson 4's test `the_posts_reproduction_for_the_book` checks;
//! this program only prints them as they happen, with the real ports.

use std::io::Write;

use testkit::timewait::Reproduction;

fn main() {
    println!(
        "The post's steps, run for real with lesson 3's server, then lesson 4's \
         (each on a port the kernel picks, so a server of yours on 8890 is left alone).\n"
    );
    Reproduction::run(&mut |piece| {
        print!("{piece}");
        // Show each step as it happens, not when the buffer fills.
        let _ = std::io::stdout().flush();
    });
    println!(
        "\nLesson 3 could not restart while its old connections sat in TIME-WAIT \
         (60 s on Linux); lesson 4 (SO_REUSEADDR) restarted at once."
    );
}
