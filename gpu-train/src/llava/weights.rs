//! Reading HF safetensors checkpoints (single file or sharded with
//! `model.safetensors.index.json`) by hand, so every error names the file,
//! the tensor and the shapes; plus the candle-style builder that creates each
//! weight in a tch `VarStore` under its HF name.
//!
//! Both LLaVA key layouts map to one canonical name:
//! `language_model.model.X` / `model.language_model.X` -> `language_model.X`,
//! `language_model.lm_head.W` / `lm_head.W` -> `lm_head.W`,
//! `[model.]vision_tower[.vision_model].X` -> `vision_tower.X`,
//! `[model.]multi_modal_projector.X` -> `multi_modal_projector.X`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::nn::{Init, Path as VsPath};
use tch::{Device, Kind, Tensor};

/// Maps a checkpoint key of either layout to its canonical name.
pub fn canonical_name(key: &str) -> String {
    let k = key.strip_prefix("model.").unwrap_or(key);
    if let Some(rest) = k.strip_prefix("language_model.") {
        if let Some(head) = rest.strip_prefix("lm_head.") {
            return format!("lm_head.{head}");
        }
        let rest = rest.strip_prefix("model.").unwrap_or(rest);
        return format!("language_model.{rest}");
    }
    if let Some(rest) = k.strip_prefix("vision_tower.") {
        let rest = rest.strip_prefix("vision_model.").unwrap_or(rest);
        return format!("vision_tower.{rest}");
    }
    k.to_string()
}

struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<i64>,
    start: usize,
    end: usize,
}

/// A memory-mapped checkpoint: every tensor of every shard, by canonical name.
pub struct Checkpoint {
    dir: PathBuf,
    shards: Vec<(PathBuf, Mmap)>,
    entries: HashMap<String, Entry>,
}

impl Checkpoint {
    /// Opens `dir/model.safetensors.index.json` and its shards, or `dir/model.safetensors`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let files = if index.exists() {
            shard_files(&index)?
        } else {
            let single = dir.join("model.safetensors");
            if !single.exists() {
                bail!(
                    "{}: neither model.safetensors.index.json nor model.safetensors",
                    dir.display()
                );
            }
            vec!["model.safetensors".to_string()]
        };
        let mut ck = Checkpoint {
            dir: dir.to_path_buf(),
            shards: vec![],
            entries: HashMap::new(),
        };
        for f in files {
            let path = dir.join(&f);
            if !path.exists() {
                bail!(
                    "shard {} listed in {} is missing",
                    path.display(),
                    index.display()
                );
            }
            ck.add_shard(path)?;
        }
        Ok(ck)
    }

    fn add_shard(&mut self, path: PathBuf) -> Result<()> {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: the file is only read; a checkpoint changing under us is not supported.
        let mmap =
            unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        let (n, meta) = SafeTensors::read_metadata(&mmap)
            .with_context(|| format!("reading the header of {}", path.display()))?;
        let shard = self.shards.len();
        for (name, info) in meta.tensors() {
            let canon = canonical_name(&name);
            let entry = Entry {
                shard,
                dtype: info.dtype,
                shape: info.shape.iter().map(|&d| d as i64).collect(),
                start: 8 + n + info.data_offsets.0,
                end: 8 + n + info.data_offsets.1,
            };
            if self.entries.insert(canon.clone(), entry).is_some() {
                bail!(
                    "tensor {name} ({canon}) appears twice in {}",
                    self.dir.display()
                );
            }
        }
        self.shards.push((path, mmap));
        Ok(())
    }

    /// Canonical names of all tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether the checkpoint holds a tensor.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Reads one tensor, checks its shape and converts it to `kind` on `device`.
    pub fn tensor(&self, name: &str, shape: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
        let e = self.entries.get(name).with_context(|| {
            format!(
                "tensor {name} is missing from the checkpoint in {}",
                self.dir.display()
            )
        })?;
        let (path, mmap) = &self.shards[e.shard];
        if e.shape != shape {
            bail!(
                "{name}: expected shape {shape:?}, found {:?} (in {})",
                e.shape,
                path.display()
            );
        }
        let src_kind = match e.dtype {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            other => bail!("{name}: unsupported dtype {other:?} in {}", path.display()),
        };
        let bytes = mmap
            .get(e.start..e.end)
            .with_context(|| format!("{name}: data past the end of {}", path.display()))?;
        let t = Tensor::f_from_data_size(bytes, shape, src_kind)
            .with_context(|| format!("{name}: reading data"))?;
        Ok(t.to_device(device).to_kind(kind))
    }
}

fn shard_files(index: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(index).with_context(|| format!("reading {}", index.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{}: no weight_map object", index.display()))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// How a weight starts when there is no checkpoint (training from scratch).
#[derive(Debug, Clone, Copy)]
pub enum InitHint {
    /// Normal with the config's `initializer_range`.
    Normal,
    /// All ones (norm scales).
    Ones,
    /// All zeros (biases).
    Zeros,
}

/// Creates weights in a `VarStore` under their canonical HF names: copied from a
/// checkpoint (frozen), or freshly initialised (trainable) when there is none.
#[derive(Clone)]
pub struct WeightBuilder<'a> {
    path: VsPath<'a>,
    name: String,
    ckpt: Option<&'a Checkpoint>,
    kind: Kind,
    init_std: f64,
}

impl<'a> WeightBuilder<'a> {
    /// A builder at the root of `path`'s store.
    pub fn new(path: VsPath<'a>, ckpt: Option<&'a Checkpoint>, kind: Kind, init_std: f64) -> Self {
        WeightBuilder {
            path,
            name: String::new(),
            ckpt,
            kind,
            init_std,
        }
    }

    /// The builder one segment deeper (`vb.pp("self_attn")`).
    pub fn pp<S: ToString>(&self, seg: S) -> Self {
        let seg = seg.to_string();
        let name = if self.name.is_empty() {
            seg.clone()
        } else {
            format!("{}.{seg}", self.name)
        };
        WeightBuilder {
            path: &self.path / seg,
            name,
            ckpt: self.ckpt,
            kind: self.kind,
            init_std: self.init_std,
        }
    }

    /// Dotted HF prefix of this builder.
    pub fn prefix(&self) -> &str {
        &self.name
    }

    /// The weight `name` of `shape` below this prefix.
    pub fn get(&self, name: &str, shape: &[i64], init: InitHint) -> Result<Tensor> {
        let full = format!("{}.{name}", self.name);
        match self.ckpt {
            Some(ck) => {
                let t = ck.tensor(&full, shape, self.kind, self.path.device())?;
                Ok(self.path.add(name, t, false))
            }
            None => {
                let init = match init {
                    InitHint::Normal => Init::Randn {
                        mean: 0.0,
                        stdev: self.init_std,
                    },
                    InitHint::Ones => Init::Const(1.0),
                    InitHint::Zeros => Init::Const(0.0),
                };
                let t = tch::nn::f_init(init, shape, self.path.device(), self.kind)?;
                Ok(self.path.add(name, t, true))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_name;

    #[test]
    fn both_layouts_map_to_one_name() {
        let pairs = [
            (
                "language_model.model.layers.0.mlp.up_proj.weight",
                "model.language_model.layers.0.mlp.up_proj.weight",
            ),
            ("language_model.lm_head.weight", "lm_head.weight"),
            (
                "vision_tower.vision_model.embeddings.class_embedding",
                "model.vision_tower.vision_model.embeddings.class_embedding",
            ),
            (
                "multi_modal_projector.linear_1.bias",
                "model.multi_modal_projector.linear_1.bias",
            ),
        ];
        for (hub, new) in pairs {
            assert_eq!(canonical_name(hub), canonical_name(new));
        }
        assert_eq!(
            canonical_name("language_model.model.norm.weight"),
            "language_model.norm.weight"
        );
        // transformers 5 save_pretrained drops `vision_model.` from the tower.
        assert_eq!(
            canonical_name("vision_tower.pre_layrnorm.bias"),
            "vision_tower.pre_layrnorm.bias"
        );
        assert_eq!(
            canonical_name("vision_tower.vision_model.pre_layrnorm.bias"),
            "vision_tower.pre_layrnorm.bias"
        );
    }
}
