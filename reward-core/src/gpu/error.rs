//! Errors of the GPU verifier: no adapter, a refused device, limits that a
//! weight exceeds, out-of-memory, a lost device, or a shader/validation fault.
//!
//! Every wgpu failure is turned into one of these values; nothing here
//! panics or waits forever on a faulty device.

use alloc::string::String;
use core::fmt;

use crate::clip::ClipError;

/// What went wrong on the GPU path.
#[derive(Debug)]
pub enum GpuError {
    /// No adapter (no Vulkan/Metal/DX12/WebGPU device, or no driver).
    NoAdapter(String),
    /// The adapter refused the device request (features or limits).
    RequestDevice(String),
    /// A buffer does not fit the device limits.
    TooLarge {
        /// What the buffer holds (a tensor name or an activation).
        what: String,
        /// Its size in bytes.
        bytes: u64,
        /// The limit it exceeds, in bytes.
        limit: u64,
        /// The limit's name in `wgpu::Limits`.
        limit_name: &'static str,
    },
    /// The device ran out of memory.
    OutOfMemory(String),
    /// The device was lost (driver reset, removed GPU, timeout).
    DeviceLost(String),
    /// A wgpu validation or internal error (a bug, or an unsupported device).
    Device(String),
    /// Waiting for the GPU took longer than the context's timeout.
    Timeout(String),
    /// Bad input (shapes, lengths) or a tensor the model cannot use.
    Input(String),
    /// Loading the checkpoint failed (the CPU loader's error).
    Clip(ClipError),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAdapter(m) => write!(
                f,
                "no GPU adapter found ({m}); the CPU backend needs none (`--backend cpu`)"
            ),
            Self::RequestDevice(m) => write!(f, "the GPU adapter refused the device request: {m}"),
            Self::TooLarge {
                what,
                bytes,
                limit,
                limit_name,
            } => write!(
                f,
                "{what} needs {bytes} bytes, more than the device's {limit_name} of {limit} bytes"
            ),
            Self::OutOfMemory(m) => write!(f, "GPU out of memory: {m}"),
            Self::DeviceLost(m) => write!(f, "GPU device lost: {m}"),
            Self::Device(m) => write!(f, "GPU error: {m}"),
            Self::Timeout(m) => write!(f, "GPU timeout: {m}"),
            Self::Input(m) => write!(f, "invalid input: {m}"),
            Self::Clip(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GpuError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Clip(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ClipError> for GpuError {
    fn from(e: ClipError) -> Self {
        Self::Clip(e)
    }
}

impl GpuError {
    /// Maps a wgpu error-scope error to ours.
    pub(crate) fn from_wgpu(e: wgpu::Error, during: &str) -> Self {
        use alloc::format;
        match e {
            wgpu::Error::OutOfMemory { source } => {
                Self::OutOfMemory(format!("while {during}: {source}"))
            }
            // The description carries the cause ("Buffer size ... is greater
            // than the maximum buffer size ..."); Display alone does not.
            wgpu::Error::Validation { description, .. }
            | wgpu::Error::Internal { description, .. } => {
                Self::Device(format!("while {during}: {}", description.trim_end()))
            }
        }
    }
}
