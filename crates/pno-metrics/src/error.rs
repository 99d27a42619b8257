//! The error type of `pno-metrics`.

/// Errors raised by `pno-metrics`: every variant names the offending argument.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An array has the wrong number of elements for the declared shape.
    #[error("{argument}: expected {expected} elements, got {got}")]
    LengthMismatch {
        /// The argument name (`mean`, `std`, `samples`, `target`, ...).
        argument: &'static str,
        /// The length implied by the declared shape.
        expected: usize,
        /// The length that was passed.
        got: usize,
    },
    /// A size that must be positive (or at least a minimum) is too small.
    #[error("{argument}: expected at least {expected}, got {got}")]
    TooSmall {
        /// The argument name (`n`, `d`, `m`, `bins`, ...).
        argument: &'static str,
        /// The smallest accepted value.
        expected: usize,
        /// The value that was passed.
        got: usize,
    },
    /// An input value is NaN or infinite.
    #[error("{argument}[{index}]: expected a finite value, got {got}")]
    NonFinite {
        /// The argument name.
        argument: &'static str,
        /// Flat index of the first offending element.
        index: usize,
        /// The offending value.
        got: f64,
    },
    /// A standard deviation is negative.
    #[error("{argument}[{index}]: expected a standard deviation >= 0, got {got}")]
    NegativeStd {
        /// The argument name (`std`).
        argument: &'static str,
        /// Flat index of the first offending element.
        index: usize,
        /// The offending value.
        got: f64,
    },
    /// A nominal probability level lies outside the open interval (0, 1).
    #[error("{argument}: expected a level in (0, 1), got {got}")]
    InvalidLevel {
        /// The argument name (`level`, `levels`).
        argument: &'static str,
        /// The offending level.
        got: f64,
    },
    /// A value lies outside its admissible range.
    #[error("{argument}[{index}]: expected a value in {expected}, got {got}")]
    OutOfRange {
        /// The argument name (`pit`).
        argument: &'static str,
        /// Flat index of the first offending element.
        index: usize,
        /// The admissible range, rendered (`[0, 1]`).
        expected: &'static str,
        /// The offending value.
        got: f64,
    },
    /// A relative metric was asked for a target function of zero norm.
    #[error("{argument}: function {index} has zero norm, relative error undefined")]
    ZeroNorm {
        /// The argument name (`target`).
        argument: &'static str,
        /// Index of the function (row) with zero norm.
        index: usize,
    },
    /// Histogram bin edges are not finite and strictly increasing.
    #[error("{argument}: expected finite, strictly increasing edges, got {got} at index {index}")]
    InvalidEdges {
        /// The argument name (`edges`).
        argument: &'static str,
        /// Index of the first edge that breaks the order.
        index: usize,
        /// The offending edge value.
        got: f64,
    },
    /// A grid description does not match the data (or has a non-positive length).
    #[error("{argument}: expected {expected}, got {got}")]
    InvalidDomain {
        /// The field of the domain (`dims`, `lengths`, `channels`).
        argument: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
        /// What was found, rendered.
        got: String,
    },
}

/// Result alias for `pno-metrics`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
