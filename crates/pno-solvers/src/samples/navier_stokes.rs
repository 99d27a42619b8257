//! Exact and manufactured solutions for navier_stokes (being implemented).
