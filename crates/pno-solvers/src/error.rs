//! The error type of `pno-solvers`.

/// Errors raised while configuring or running a solver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid config field `{field}`: expected {expected}, got {got}")]
    Config {
        /// Dotted config key, e.g. `resolution` or `solve_resolution`.
        field: String,
        /// What a valid value looks like.
        expected: String,
        /// What was found.
        got: String,
    },
    /// The config could not be deserialised (unknown key, wrong type).
    #[error("invalid {pde} config")]
    Deserialize {
        /// The PDE whose config was being read.
        pde: String,
        /// The serde error, which names the offending key.
        #[source]
        source: serde_json::Error,
    },
    /// The PDE name is not one of the generators.
    #[error("unknown pde `{got}`: expected one of {expected}")]
    UnknownPde {
        /// The list of known PDE names.
        expected: String,
        /// What was asked for.
        got: String,
    },
    /// A linear solve failed (matrix not SPD, singular, ...).
    #[error("{solver} failed on sample {index}: {reason}")]
    Solve {
        /// Which solver.
        solver: &'static str,
        /// Sample index.
        index: u64,
        /// Why.
        reason: String,
    },
    /// The numerical solution blew up (NaN/Inf), typically a CFL violation.
    #[error("{pde} sample {index} became non-finite at t = {t}: {hint}")]
    NonFinite {
        /// Which PDE.
        pde: &'static str,
        /// Sample index.
        index: u64,
        /// Simulation time of the blow-up.
        t: f64,
        /// Likely cause and fix.
        hint: String,
    },
}

/// Result alias for `pno-solvers`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that a config value is finite and strictly positive, naming `field` otherwise.
pub(crate) fn positive(field: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::config(field, "a finite number > 0", v))
    }
}

impl Error {
    /// Shorthand for a [`Error::Config`] error.
    pub fn config(field: &str, expected: impl Into<String>, got: impl std::fmt::Display) -> Self {
        Error::Config {
            field: field.to_string(),
            expected: expected.into(),
            got: got.to_string(),
        }
    }
}

/// `e` and its whole `source()` chain joined by `": "` (what an error reporter prints); tests
/// use it to find the offending key, which lives in the serde source since `Display` stopped
/// repeating it.
#[cfg(test)]
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
