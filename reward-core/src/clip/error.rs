//! Errors of the CLIP verifier.
//!
//! Every variant names what went wrong where: the file, the tensor, the
//! expected and found shapes, the config key. Loading and inference never
//! panic on bad input; they return one of these.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use std::path::PathBuf;

/// An error from loading or running a CLIP model.
///
/// The enum is `#[non_exhaustive]`: image decoding and embedding caches add
/// their own variants.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClipError {
    /// A file could not be read (missing, unreadable, cannot be mapped).
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file (config.json, the shard index, tokenizer.json) is not valid
    /// JSON or does not have the expected structure.
    Json {
        /// Which file (a path, or a name such as `config.json` for in-memory bytes).
        file: String,
        /// What the parser said, with line and column.
        message: String,
    },
    /// The config is well-formed JSON but describes a model this crate cannot run.
    UnsupportedConfig {
        /// The HF config key, e.g. `vision_config.hidden_act`.
        key: String,
        /// Why it is refused.
        message: String,
    },
    /// A safetensors file is malformed (bad header, truncated data).
    Safetensors {
        /// Which file (path or shard name).
        file: String,
        /// What the safetensors parser said.
        message: String,
    },
    /// A tensor the model needs is in no weight file.
    MissingTensor {
        /// The HF weight key, e.g. `text_model.final_layer_norm.weight`.
        name: String,
    },
    /// A tensor has a shape other than the config implies.
    Shape {
        /// The HF weight key.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype other than f32, f16 or bf16.
    Dtype {
        /// The HF weight key.
        name: String,
        /// The dtype in the file.
        dtype: String,
    },
    /// The tokenizer could not be loaded or failed on a text.
    Tokenizer {
        /// What the tokenizer said.
        message: String,
    },
    /// An inference input is malformed (e.g. a pixel buffer of the wrong length).
    Input {
        /// What is wrong with it.
        message: String,
    },
    /// An image could not be decoded (not a PNG/JPEG/WebP, corrupt data).
    Image {
        /// The file (or the name given to in-memory bytes).
        source: String,
        /// What the decoder said.
        message: String,
    },
    /// An image's header announces more pixels than the limit (decompression bomb).
    ImageTooLarge {
        /// The file (or the name given to in-memory bytes).
        source: String,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit on `width * height`.
        max_pixels: u64,
    },
    /// An embedding cache is malformed or does not fit this run (other model,
    /// template or preprocessing; missing entry).
    Cache {
        /// The cache file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for ClipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::Json { file, message } => write!(f, "{file}: invalid JSON: {message}"),
            Self::UnsupportedConfig { key, message } => {
                write!(f, "unsupported CLIP config: {key}: {message}")
            }
            Self::Safetensors { file, message } => {
                write!(f, "{file}: invalid safetensors: {message}")
            }
            Self::MissingTensor { name } => write!(f, "tensor {name} not found in the weights"),
            Self::Shape {
                name,
                expected,
                found,
            } => {
                write!(f, "{name}: expected shape {expected:?}, found {found:?}")
            }
            Self::Dtype { name, dtype } => {
                write!(
                    f,
                    "{name}: dtype {dtype} is not supported (f32, f16, bf16 are)"
                )
            }
            Self::Tokenizer { message } => write!(f, "tokenizer: {message}"),
            Self::Input { message } => write!(f, "bad input: {message}"),
            Self::Image { source, message } => {
                write!(f, "{source}: cannot decode image: {message}")
            }
            Self::ImageTooLarge {
                source,
                width,
                height,
                max_pixels,
            } => write!(
                f,
                "{source}: image too large: {width}x{height} exceeds the limit of {max_pixels} pixels (decompression bomb?)"
            ),
            Self::Cache { file, message } => write!(f, "{file}: embedding cache: {message}"),
        }
    }
}

impl core::error::Error for ClipError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ClipError {
    /// An [`ClipError::Io`] for `path`.
    // Only the file-reading paths call this, and wasm32 has none (bytes come from JS).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`ClipError::UnsupportedConfig`] for `key`.
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::UnsupportedConfig {
            key: key.into(),
            message: message.into(),
        }
    }

    /// An [`ClipError::Input`].
    pub(crate) fn input(message: impl Into<String>) -> Self {
        Self::Input {
            message: message.into(),
        }
    }
}
