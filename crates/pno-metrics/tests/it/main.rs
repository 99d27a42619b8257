//! Integration tests of pno-metrics: golden values, properties, bad input.
// Tests may unwrap (house rule); helpers outside #[test] fns need the explicit allow.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod drift;
mod golden;
mod properties;
