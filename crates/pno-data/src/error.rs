//! The error type of `pno-data`.

use std::path::PathBuf;

/// Errors raised by `pno-data`.
///
/// Every variant that concerns a file names it; format errors also name the field that was
/// wrong, what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`read`, `create`, `rename`, ...).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The content of a file does not match its format.
    #[error("{path}: {field}: expected {expected}, got {got}")]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// The field, entry or structure that was wrong.
        field: String,
        /// What a valid value looks like.
        expected: String,
        /// What was found.
        got: String,
    },
    /// The file is valid but uses a feature this crate does not read.
    #[error("{path}: unsupported {field}: {got} ({hint})")]
    Unsupported {
        /// The file concerned.
        path: PathBuf,
        /// The feature concerned.
        field: String,
        /// What was found.
        got: String,
        /// What to do instead.
        hint: String,
    },
    /// The path is not in any format this crate reads.
    #[error("{path}: unknown dataset format; supported: {supported}")]
    UnknownFormat {
        /// The path concerned.
        path: PathBuf,
        /// The supported formats.
        supported: &'static str,
    },
    /// A value passed by the caller is invalid.
    #[error("invalid {field}: expected {expected}, got {got}")]
    Invalid {
        /// The argument or field name.
        field: String,
        /// What a valid value looks like.
        expected: String,
        /// What was found.
        got: String,
    },
    /// A file that would be overwritten already exists.
    #[error("{path} already exists; remove it first to write this dataset (part) again")]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// A sharded dataset lacks some of its part manifests.
    #[error(
        "{dir}: dataset is sharded into {count} parts but parts {missing:?} are missing (expected manifest.part-I-of-{count}.json for each)"
    )]
    MissingParts {
        /// The dataset folder.
        dir: PathBuf,
        /// The number of parts the present manifests declare.
        count: usize,
        /// The zero-based indices of the missing parts.
        missing: Vec<usize>,
    },
    /// A file's SHA-256 does not match the manifest.
    #[error("{path}: sha256 mismatch: expected {expected}, got {got}")]
    Checksum {
        /// The file concerned.
        path: PathBuf,
        /// The checksum recorded in the manifest.
        expected: String,
        /// The checksum of the file on disk.
        got: String,
    },
    /// An error from `pno-core` (atomic writes, shard specs).
    #[error(transparent)]
    Core(#[from] pno_core::Error),
}

impl Error {
    /// A [`Error::Format`] error.
    pub(crate) fn format(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Self::Format {
            path: path.into(),
            field: field.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// A [`Error::Invalid`] error.
    pub(crate) fn invalid(
        field: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// A closure turning an I/O error on `path` into [`Error::Io`].
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { op, path, source }
    }
}

/// Result alias for `pno-data`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
