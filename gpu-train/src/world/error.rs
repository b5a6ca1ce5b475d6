//! Errors of the synthetic world: every message names the world file (when
//! there is one) and the field at fault, e.g.
//! `worlds/bad.toml: pairs[1].objects: "cat" is not one of the world's classes`.

use std::fmt;

/// Why a world file could not be loaded or a world artefact not written.
#[derive(Debug)]
pub struct WorldError {
    origin: Option<String>,
    field: Option<String>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The file could not be read or written.
    Io(std::io::Error),
    /// The TOML did not parse or did not match the schema (its message
    /// carries the line, column and key).
    Toml(Box<toml::de::Error>),
    /// A value is out of range or inconsistent with the rest of the file.
    Invalid(String),
    /// PNG encoding failed.
    Png(String),
}

impl WorldError {
    /// A value that is out of range or inconsistent; `field` is its TOML path.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            origin: None,
            field: Some(field.into()),
            kind: Kind::Invalid(message.into()),
        }
    }

    pub(crate) fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        Self {
            origin: Some(path.display().to_string()),
            field: None,
            kind: Kind::Io(err),
        }
    }

    pub(crate) fn toml(err: toml::de::Error) -> Self {
        Self {
            origin: None,
            field: None,
            kind: Kind::Toml(Box::new(err)),
        }
    }

    pub(crate) fn png(path: &std::path::Path, message: impl Into<String>) -> Self {
        Self {
            origin: Some(path.display().to_string()),
            field: None,
            kind: Kind::Png(message.into()),
        }
    }

    /// Attaches the name of the file (or other source) the error came from.
    pub(crate) fn in_origin(mut self, origin: &str) -> Self {
        if self.origin.is_none() {
            self.origin = Some(origin.to_string());
        }
        self
    }

    /// The TOML path of the offending field, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl fmt::Display for WorldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        match &self.kind {
            Kind::Io(e) => write!(f, "{e}"),
            Kind::Toml(e) => write!(f, "invalid world file: {}", e.to_string().trim_end()),
            Kind::Invalid(m) => write!(f, "{m}"),
            Kind::Png(m) => write!(f, "PNG encoding failed: {m}"),
        }
    }
}

impl std::error::Error for WorldError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io(e) => Some(e),
            Kind::Toml(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}
