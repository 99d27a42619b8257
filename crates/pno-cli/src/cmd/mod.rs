//! One module per subcommand.

pub(crate) mod active;
pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod calibrate;
pub(crate) mod data;
pub(crate) mod doctor;
pub(crate) mod eval;
pub(crate) mod generate;
pub(crate) mod keys;
pub(crate) mod opts;
pub(crate) mod predict;
pub(crate) mod promote;
pub(crate) mod repository;
pub(crate) mod serve;
pub(crate) mod train;
