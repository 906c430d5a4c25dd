//! One trial of every cell of the NAT matrix (`just lab matrix`), at no
//! loss: lesson 7's peers, in lesson 7's scene with the cell's NATs,
//! connect, take the way RFC 4787 predicts for the cell, and carry a chat
//! message. The full matrix (50 trials per cell, two loss rates) is a
//! benchmark, not a test.
#![allow(clippy::unwrap_used)]

use netlab::lab_for_test;
use netlab::matrix::{Binaries, CELLS, Cell, birthday_formula, trial_in};

fn one_trial(index: usize, test: &str) {
    let cell: &Cell = &CELLS[index];
    let Some(lab) = lab_for_test(&cell.topology().unwrap(), test) else {
        return;
    };
    let bins = Binaries {
        rendezvous: testkit::bin("lesson7-rendezvous"),
        peer: testkit::bin("lesson7-peer"),
    };
    let outcome = trial_in(&lab, cell, 0, &bins).unwrap();
    assert!(
        outcome.failure.is_none() && outcome.first_message.is_some(),
        "{}: {}",
        cell.label(),
        outcome.failure.unwrap_or_default()
    );
    assert_eq!(
        outcome.way,
        Some(cell.predicted),
        "{}: RFC 4787 predicts {} ({})",
        cell.label(),
        cell.predicted.name(),
        cell.why
    );
}

#[test]
fn matrix_cell_no_nat() {
    one_trial(0, "matrix_cell_no_nat");
}

#[test]
fn matrix_cell_eim_eif() {
    one_trial(1, "matrix_cell_eim_eif");
}

#[test]
fn matrix_cell_eim_adf() {
    one_trial(2, "matrix_cell_eim_adf");
}

#[test]
fn matrix_cell_eim_apdf() {
    one_trial(3, "matrix_cell_eim_apdf");
}

#[test]
fn matrix_cell_eim_eif_against_apdm() {
    one_trial(4, "matrix_cell_eim_eif_against_apdm");
}

#[test]
fn matrix_cell_eim_adf_against_apdm() {
    one_trial(5, "matrix_cell_eim_adf_against_apdm");
}

#[test]
fn matrix_cell_eim_apdf_against_apdm_birthday() {
    one_trial(6, "matrix_cell_eim_apdf_against_apdm_birthday");
}

#[test]
fn matrix_cell_apdm_against_apdm_relay() {
    one_trial(7, "matrix_cell_apdm_against_apdm_relay");
}

#[test]
fn matrix_cell_no_firewall() {
    one_trial(8, "matrix_cell_no_firewall");
}

#[test]
fn matrix_cell_one_nat_hairpin() {
    one_trial(9, "matrix_cell_one_nat_hairpin");
}

#[test]
fn matrix_cell_one_nat_no_hairpin() {
    one_trial(10, "matrix_cell_one_nat_no_hairpin");
}

#[test]
fn matrix_cell_cgnat() {
    one_trial(11, "matrix_cell_cgnat");
}

/// Every cell has its test above.
#[test]
fn every_matrix_cell_has_a_test() {
    assert_eq!(CELLS.len(), 12);
}

/// The birthday curve's formula at known points: k = N gives certainty,
/// k/N = 1/32 gives 1 − (31/32)^n.
#[test]
fn birthday_formula_is_one_minus_the_chance_that_every_probe_misses() {
    assert_eq!(birthday_formula(1024, 1024, 1), 1.0);
    let p = birthday_formula(32, 1024, 32);
    assert!((p - (1.0 - (31.0f64 / 32.0).powi(32))).abs() < 1e-12, "{p}");
}
