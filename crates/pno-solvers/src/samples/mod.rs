//! Exact, manufactured and reference solutions used as test oracles.
//!
//! Each submodule holds closed-form solutions of its PDE (Cole–Hopf for Burgers, the
//! single-shell Navier–Stokes solution, manufactured Darcy problems, exact Fourier-mode heat
//! and wave evolution, linear KS evolution) that tests compare the generators against.

pub mod burgers;
pub mod darcy;
pub mod heat;
pub mod ks;
pub mod navier_stokes;
pub mod wave;
