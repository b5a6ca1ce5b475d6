//! The one error type of the evaluation metrics: what went wrong, and where
//! (file, line, image id, field), in words a user can act on.

use alloc::string::String;
use core::fmt;

/// What kind of problem an [`EvalError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalErrorKind {
    /// Malformed input: bad JSON, a missing or mistyped field.
    Parse,
    /// A caption or answer names an image id the annotations do not know.
    UnknownImage,
    /// An empty caption, answer list or reference set.
    Empty,
    /// Inputs that disagree with each other (different lengths, bad values).
    Invalid,
    /// Reading a file or running an external tool failed.
    Io,
}

/// An evaluation error naming the line, image id or field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    kind: EvalErrorKind,
    message: String,
}

impl EvalError {
    /// An error of `kind` with a complete, user-facing message.
    pub fn new(kind: EvalErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The kind of problem.
    pub fn kind(&self) -> EvalErrorKind {
        self.kind
    }

    /// The message (also what `Display` prints).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl core::error::Error for EvalError {}
