//! Integration tests of pno-data (one binary).

mod common;
mod format;
mod fuzz;
mod gate;
mod readers;
mod writers;
