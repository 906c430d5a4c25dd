//! The kernel experiments: each file under `tests/` checks on this machine's
//! kernel, over real sockets, a behaviour a chapter of the book states and
//! names the test for. This library is empty; cargo needs a target to hold
//! the tests.
