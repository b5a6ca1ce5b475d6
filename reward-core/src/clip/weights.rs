//! Safetensors weights: one file or HF shards, memory-mapped natively or
//! borrowed from in-memory bytes, read as f32 whatever the stored dtype.
//!
//! Mirrors the role of candle's `VarBuilder`: a component asks for a tensor
//! by its HF key and the shape its config implies, and gets an error that
//! names the tensor and both shapes when they differ.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use safetensors::{Dtype, SafeTensors};
use sha2::Digest;

use super::error::ClipError;

/// All tensors of a checkpoint, across its shards, by HF key.
pub(crate) struct WeightFiles<'a> {
    /// Each tensor's shard and view, sorted by name (the hash relies on the order).
    tensors: BTreeMap<String, (usize, safetensors::tensor::TensorView<'a>)>,
}

impl<'a> WeightFiles<'a> {
    /// Parses every shard's header; a tensor found in two shards is an error.
    pub(crate) fn parse(shards: &[(String, &'a [u8])]) -> Result<Self, ClipError> {
        let mut tensors: BTreeMap<String, (usize, safetensors::tensor::TensorView<'a>)> =
            BTreeMap::new();
        for (index, (label, bytes)) in shards.iter().enumerate() {
            let file = SafeTensors::deserialize(bytes).map_err(|e| ClipError::Safetensors {
                file: label.clone(),
                message: e.to_string(),
            })?;
            for (name, view) in file.tensors() {
                if let Some((other, _)) = tensors.get(&name) {
                    let message = format!("tensor {name} is also in {}", shards[*other].0);
                    return Err(ClipError::Safetensors {
                        file: label.clone(),
                        message,
                    });
                }
                tensors.insert(name, (index, view));
            }
        }
        Ok(Self { tensors })
    }

    /// The tensor `name` as f32, checked against `shape`.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ClipError> {
        let view = self.view(name, shape)?;
        to_f32(name, view.dtype(), view.data())
    }

    /// The stored bytes of `name` when it is f16 (little-endian, as a GPU
    /// buffer holds them), checked against `shape`; `None` for other dtypes.
    /// Lets an f16 device take f16 weights without a round trip through f32.
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn f16_bytes(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<Option<&'a [u8]>, ClipError> {
        let view = self.view(name, shape)?;
        Ok((view.dtype() == Dtype::F16).then(|| view.data()))
    }

    /// The view of `name`; an error naming it when it is missing or its
    /// shape is not `shape`.
    fn view(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<&safetensors::tensor::TensorView<'a>, ClipError> {
        let (_, view) = self
            .tensors
            .get(name)
            .ok_or_else(|| ClipError::MissingTensor {
                name: name.to_owned(),
            })?;
        if view.shape() != shape {
            return Err(ClipError::Shape {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        Ok(view)
    }

    /// Feeds every tensor (name, dtype, shape, bytes) to `hasher` in name
    /// order, so one model hashes the same whether sharded or not.
    pub(crate) fn hash_into(&self, hasher: &mut sha2::Sha256) {
        for (name, (_, view)) in &self.tensors {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update(format!("{:?}{:?}", view.dtype(), view.shape()).as_bytes());
            hasher.update((view.data().len() as u64).to_le_bytes());
            hasher.update(view.data());
        }
    }
}

/// Decodes little-endian f32, f16 or bf16 bytes to f32.
fn to_f32(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, ClipError> {
    let out = match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => super::halves::f16_to_f32(data),
        Dtype::BF16 => super::halves::bf16_to_f32(data),
        other => {
            return Err(ClipError::Dtype {
                name: name.to_owned(),
                dtype: format!("{other:?}"),
            });
        }
    };
    Ok(out)
}

/// A view of [`WeightFiles`] under a key prefix, like candle's `vb.pp("...")`.
#[derive(Clone)]
pub(crate) struct VarBuilder<'w, 'a> {
    files: &'w WeightFiles<'a>,
    prefix: String,
}

impl<'w, 'a> VarBuilder<'w, 'a> {
    /// The root of `files`.
    pub(crate) fn new(files: &'w WeightFiles<'a>) -> Self {
        Self {
            files,
            prefix: String::new(),
        }
    }

    /// The same files under `prefix.segment`.
    pub(crate) fn pp(&self, segment: impl core::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() {
            segment.to_string()
        } else {
            format!("{}.{segment}", self.prefix)
        };
        Self {
            files: self.files,
            prefix,
        }
    }

    /// The tensor `prefix.name`, checked against `shape`.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ClipError> {
        self.files.get(&self.pp(name).prefix, shape)
    }

    /// [`WeightFiles::f16_bytes`] of `prefix.name`.
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn f16_bytes(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<Option<&'a [u8]>, ClipError> {
        self.files.f16_bytes(&self.pp(name).prefix, shape)
    }
}

/// Reading a checkpoint directory from disk (not on wasm32: no file system there).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod disk {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The weight files of `dir`: the shards listed by
    /// `model.safetensors.index.json` when it exists, else `model.safetensors`.
    pub(crate) fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>, ClipError> {
        let index = dir.join("model.safetensors.index.json");
        if !index.exists() {
            return Ok(alloc::vec![dir.join("model.safetensors")]);
        }
        let bytes = read(&index)?;
        let parsed: Index = serde_json::from_slice(&bytes).map_err(|e| ClipError::Json {
            file: index.display().to_string(),
            message: e.to_string(),
        })?;
        // BTreeSet: each shard once, in a stable order.
        let files: alloc::collections::BTreeSet<String> = parsed.weight_map.into_values().collect();
        Ok(files.into_iter().map(|f| dir.join(f)).collect())
    }

    /// The `weight_map` of an HF shard index.
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }

    /// Reads a whole small file (config, index, tokenizer).
    pub(crate) fn read(path: &Path) -> Result<Vec<u8>, ClipError> {
        std::fs::read(path).map_err(|e| ClipError::io(path, e))
    }

    /// Memory-maps a weight file read-only.
    pub(crate) fn map(path: &Path) -> Result<memmap2::Mmap, ClipError> {
        let file = std::fs::File::open(path).map_err(|e| ClipError::io(path, e))?;
        // SAFETY: the map is read-only and lives only while the model is built;
        // a checkpoint changed on disk meanwhile is the caller's race, as in candle.
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ClipError::io(path, e))
    }
}
