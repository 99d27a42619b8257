//! Errors of the model crate.

/// Result alias.
pub type Result<T> = std::result::Result<T, ModelError>;

/// What can go wrong building, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration key has a bad value.
    #[error("model config key `{key}`: expected {expected}, got {got}")]
    Config {
        /// The key (dotted path).
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// An input tensor does not fit the model.
    #[error("input `{what}`: expected {expected}, got {got}")]
    Input {
        /// Which input.
        what: String,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// A weights file does not match the architecture.
    #[error("weights `{name}`: expected {expected}, got {got}")]
    Weights {
        /// Tensor name.
        name: String,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// The caller cancelled the prediction (its deadline passed or its client left); it stopped
    /// between chunks of draws.
    #[error("prediction cancelled")]
    Cancelled,
}

pub(crate) fn config_err(
    key: &str,
    expected: impl Into<String>,
    got: impl std::fmt::Display,
) -> ModelError {
    ModelError::Config {
        key: key.to_string(),
        expected: expected.into(),
        got: got.to_string(),
    }
}
