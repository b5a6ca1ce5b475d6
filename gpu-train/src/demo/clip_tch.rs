//! A trainable CLIP in tch whose `VarStore` names are exactly the keys of
//! HF `CLIPModel` (`text_model.encoder.layers.0.self_attn.q_proj.weight`,
//! `vision_model.pre_layrnorm.bias`, `logit_scale`, ...), so saving is a
//! plain dump of the variables.
//!
//! Mirrors `CLIPModel`, `CLIPTextTransformer`, `CLIPVisionTransformer`,
//! `CLIPEncoderLayer` and `CLIPAttention` of
//! `transformers/models/clip/modeling_clip.py` (quick_gelu MLPs, pre-norm
//! layers, causal text attention, pooling at the first `eos_token_id`,
//! class-token pooling with `post_layernorm`, bias-free projections), and
//! writes the matching `config.json` (`CLIPConfig`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Layer-norm epsilon of both towers (CLIP's).
const LN_EPS: f64 = 1e-5;
/// Standard deviation of embedding and class-token initialisation (CLIP's `initializer_range`).
const INIT_STD: f64 = 0.02;
/// Largest `logit_scale` (ln 100), as CLIP clamps it during training.
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_092;

/// One tower's transformer shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TowerSize {
    /// Width of the residual stream.
    pub hidden: i64,
    /// Encoder layers.
    pub layers: i64,
    /// Attention heads (must divide `hidden`).
    pub heads: i64,
    /// Width of the MLP.
    pub mlp: i64,
}

/// Everything that fixes the tensor shapes of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipShape {
    /// Image side in pixels.
    pub image_size: i64,
    /// Patch side in pixels.
    pub patch_size: i64,
    /// The image tower.
    pub vision: TowerSize,
    /// The text tower.
    pub text: TowerSize,
    /// Token vocabulary size.
    pub vocab_size: i64,
    /// Text window (`max_position_embeddings`).
    pub max_positions: i64,
    /// `<|startoftext|>` id.
    pub bos_token_id: i64,
    /// `<|endoftext|>` id: the pooled token.
    pub eos_token_id: i64,
    /// Width of the shared embedding space.
    pub projection_dim: i64,
    /// Initial `logit_scale` (log of the cosine multiplier).
    pub logit_scale_init: f64,
}

impl ClipShape {
    /// Checks the sizes before any tensor is made.
    pub fn validate(&self) -> Result<()> {
        for (name, t) in [("vision", self.vision), ("text", self.text)] {
            if t.hidden <= 0 || t.layers <= 0 || t.heads <= 0 || t.mlp <= 0 {
                bail!("{name} tower sizes must be positive, found {t:?}");
            }
            if t.hidden % t.heads != 0 {
                bail!(
                    "{name} tower: hidden {} is not a multiple of {} heads",
                    t.hidden,
                    t.heads
                );
            }
        }
        // The patch convolution floors, as in PyTorch and reward-core.
        if self.patch_size <= 0 || self.image_size < self.patch_size {
            bail!(
                "image_size {} must be at least patch_size {} (positive)",
                self.image_size,
                self.patch_size
            );
        }
        if self.projection_dim <= 0 || self.vocab_size <= 0 || self.max_positions < 2 {
            bail!(
                "projection_dim {}, vocab_size {} must be positive and max_positions {} at least 2",
                self.projection_dim,
                self.vocab_size,
                self.max_positions
            );
        }
        Ok(())
    }

    /// Patches plus the class token.
    pub fn num_positions(&self) -> i64 {
        let side = self.image_size / self.patch_size;
        side * side + 1
    }

    /// HF `config.json` of a `CLIPModel` with these sizes.
    pub fn config_json(&self) -> serde_json::Value {
        let t = self.text;
        let v = self.vision;
        json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "dtype": "float32",
            "initializer_factor": 1.0,
            "logit_scale_init_value": self.logit_scale_init,
            "projection_dim": self.projection_dim,
            "text_config": {
                "model_type": "clip_text_model",
                "vocab_size": self.vocab_size,
                "hidden_size": t.hidden,
                "intermediate_size": t.mlp,
                "num_hidden_layers": t.layers,
                "num_attention_heads": t.heads,
                "max_position_embeddings": self.max_positions,
                "hidden_act": "quick_gelu",
                "layer_norm_eps": LN_EPS,
                "attention_dropout": 0.0,
                "initializer_range": INIT_STD,
                "initializer_factor": 1.0,
                "bos_token_id": self.bos_token_id,
                "eos_token_id": self.eos_token_id,
                "pad_token_id": self.eos_token_id,
                "projection_dim": self.projection_dim,
            },
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": v.hidden,
                "intermediate_size": v.mlp,
                "num_hidden_layers": v.layers,
                "num_attention_heads": v.heads,
                "num_channels": 3,
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "hidden_act": "quick_gelu",
                "layer_norm_eps": LN_EPS,
                "attention_dropout": 0.0,
                "initializer_range": INIT_STD,
                "initializer_factor": 1.0,
                "projection_dim": self.projection_dim,
            },
        })
    }

    /// Reads the sizes back from a `config.json` this module wrote.
    pub fn from_config_json(v: &serde_json::Value, file: &str) -> Result<Self> {
        let get = |path: &[&str]| -> Result<&serde_json::Value> {
            let mut cur = v;
            for k in path {
                cur = cur
                    .get(k)
                    .with_context(|| format!("{file}: missing key {}", path.join(".")))?;
            }
            Ok(cur)
        };
        let int = |path: &[&str]| -> Result<i64> {
            get(path)?
                .as_i64()
                .with_context(|| format!("{file}: {} is not an integer", path.join(".")))
        };
        let tower = |t: &str| -> Result<TowerSize> {
            Ok(TowerSize {
                hidden: int(&[t, "hidden_size"])?,
                layers: int(&[t, "num_hidden_layers"])?,
                heads: int(&[t, "num_attention_heads"])?,
                mlp: int(&[t, "intermediate_size"])?,
            })
        };
        let shape = Self {
            image_size: int(&["vision_config", "image_size"])?,
            patch_size: int(&["vision_config", "patch_size"])?,
            vision: tower("vision_config")?,
            text: tower("text_config")?,
            vocab_size: int(&["text_config", "vocab_size"])?,
            max_positions: int(&["text_config", "max_position_embeddings"])?,
            bos_token_id: int(&["text_config", "bos_token_id"])?,
            eos_token_id: int(&["text_config", "eos_token_id"])?,
            projection_dim: int(&["projection_dim"])?,
            logit_scale_init: get(&["logit_scale_init_value"])?
                .as_f64()
                .with_context(|| format!("{file}: logit_scale_init_value is not a number"))?,
        };
        shape.validate().with_context(|| file.to_string())?;
        Ok(shape)
    }
}

fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    let cfg = nn::LayerNormConfig {
        eps: LN_EPS,
        ..Default::default()
    };
    nn::layer_norm(p, vec![dim], cfg)
}

fn linear(p: nn::Path, i: i64, o: i64, bias: bool) -> nn::Linear {
    let cfg = nn::LinearConfig {
        bias,
        ..Default::default()
    };
    nn::linear(p, i, o, cfg)
}

/// `CLIPEncoderLayer` (pre-norm attention, then pre-norm quick_gelu MLP).
#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: nn::LayerNorm,
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    layer_norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
}

impl EncoderLayer {
    fn new(p: nn::Path, t: TowerSize) -> Self {
        let at = &p / "self_attn";
        let mlp = &p / "mlp";
        Self {
            layer_norm1: layer_norm(&p / "layer_norm1", t.hidden),
            q_proj: linear(&at / "q_proj", t.hidden, t.hidden, true),
            k_proj: linear(&at / "k_proj", t.hidden, t.hidden, true),
            v_proj: linear(&at / "v_proj", t.hidden, t.hidden, true),
            out_proj: linear(&at / "out_proj", t.hidden, t.hidden, true),
            layer_norm2: layer_norm(&p / "layer_norm2", t.hidden),
            fc1: linear(&mlp / "fc1", t.hidden, t.mlp, true),
            fc2: linear(&mlp / "fc2", t.mlp, t.hidden, true),
            heads: t.heads,
        }
    }

    fn attention(&self, x: &Tensor, causal: bool) -> Tensor {
        let s = x.size();
        let split = |t: Tensor| t.view([s[0], s[1], self.heads, -1]).transpose(1, 2);
        let q = split(self.q_proj.forward(x));
        let k = split(self.k_proj.forward(x));
        let v = split(self.v_proj.forward(x));
        // Default scale head_dim^-0.5, as CLIPAttention.
        let o = Tensor::scaled_dot_product_attention::<Tensor>(
            &q, &k, &v, None, 0.0, causal, None, false,
        );
        self.out_proj
            .forward(&o.transpose(1, 2).reshape([s[0], s[1], s[2]]))
    }

    fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        let x = x + self.attention(&self.layer_norm1.forward(x), causal);
        let h = self.fc1.forward(&self.layer_norm2.forward(&x));
        // quick_gelu: x * sigmoid(1.702 x).
        let h = &h * (&h * 1.702).sigmoid();
        x + self.fc2.forward(&h)
    }
}

fn encoder(p: nn::Path, t: TowerSize) -> Vec<EncoderLayer> {
    let layers = &p / "layers";
    (0..t.layers)
        .map(|i| EncoderLayer::new(&layers / i, t))
        .collect()
}

fn run_encoder(layers: &[EncoderLayer], x: Tensor, causal: bool) -> Tensor {
    layers.iter().fold(x, |h, l| l.forward(&h, causal))
}

/// `CLIPModel` with trainable variables under the HF key names.
#[derive(Debug)]
pub struct ClipTch {
    shape: ClipShape,
    token_embedding: nn::Embedding,
    text_position: Tensor,
    text_layers: Vec<EncoderLayer>,
    final_layer_norm: nn::LayerNorm,
    class_embedding: Tensor,
    patch_embedding: Tensor,
    vision_position: Tensor,
    pre_layrnorm: nn::LayerNorm,
    vision_layers: Vec<EncoderLayer>,
    post_layernorm: nn::LayerNorm,
    text_projection: nn::Linear,
    visual_projection: nn::Linear,
    logit_scale: Tensor,
}

impl ClipTch {
    /// Creates the variables under `root` (normally the VarStore's root)
    /// with tch's default initialisers (Kaiming-uniform linears, unit
    /// LayerNorms) and N(0, 0.02) embeddings, drawn from tch's global seed.
    pub fn new(root: &nn::Path, shape: &ClipShape) -> Result<Self> {
        shape.validate()?;
        let (t, v) = (shape.text, shape.vision);
        let normal = nn::Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        };
        let tm = root / "text_model";
        let temb = &tm / "embeddings";
        let vm = root / "vision_model";
        let vemb = &vm / "embeddings";
        let emb_cfg = nn::EmbeddingConfig {
            ws_init: normal,
            ..Default::default()
        };
        let p = shape.patch_size;
        Ok(Self {
            token_embedding: nn::embedding(
                &temb / "token_embedding",
                shape.vocab_size,
                t.hidden,
                emb_cfg,
            ),
            text_position: (&temb / "position_embedding").var(
                "weight",
                &[shape.max_positions, t.hidden],
                normal,
            ),
            text_layers: encoder(&tm / "encoder", t),
            final_layer_norm: layer_norm(&tm / "final_layer_norm", t.hidden),
            class_embedding: vemb.var("class_embedding", &[v.hidden], normal),
            patch_embedding: (&vemb / "patch_embedding").var(
                "weight",
                &[v.hidden, 3, p, p],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: (3.0 * (p * p) as f64).powf(-0.5),
                },
            ),
            vision_position: (&vemb / "position_embedding").var(
                "weight",
                &[shape.num_positions(), v.hidden],
                normal,
            ),
            pre_layrnorm: layer_norm(&vm / "pre_layrnorm", v.hidden),
            vision_layers: encoder(&vm / "encoder", v),
            post_layernorm: layer_norm(&vm / "post_layernorm", v.hidden),
            text_projection: linear(
                root / "text_projection",
                t.hidden,
                shape.projection_dim,
                false,
            ),
            visual_projection: linear(
                root / "visual_projection",
                v.hidden,
                shape.projection_dim,
                false,
            ),
            logit_scale: root.var("logit_scale", &[], nn::Init::Const(shape.logit_scale_init)),
            shape: shape.clone(),
        })
    }

    /// The sizes.
    pub fn shape(&self) -> &ClipShape {
        &self.shape
    }

    /// The raw `logit_scale` parameter (0-dim); CLIP multiplies cosines by its exp.
    pub fn logit_scale(&self) -> &Tensor {
        &self.logit_scale
    }

    /// `get_image_features`: `[n, projection_dim]` for normalised pixels `[n, 3, S, S]`.
    pub fn image_features(&self, pixels: &Tensor) -> Tensor {
        let s = self.shape.patch_size;
        let patches = pixels
            .conv2d::<Tensor>(&self.patch_embedding, None, [s, s], [0, 0], [1, 1], 1)
            .flatten(2, -1)
            .transpose(1, 2);
        let (n, d) = (patches.size()[0], self.shape.vision.hidden);
        let cls = self
            .class_embedding
            .view([1, 1, d])
            .expand([n, 1, d], false);
        let x = Tensor::cat(&[&cls, &patches], 1) + self.vision_position.unsqueeze(0);
        let x = run_encoder(&self.vision_layers, self.pre_layrnorm.forward(&x), false);
        let pooled = self.post_layernorm.forward(&x.select(1, 0));
        self.visual_projection.forward(&pooled)
    }

    /// `get_text_features`: `[n, projection_dim]` for token ids `[n, L]`
    /// (any padding after the pooled token) pooled at `eos_positions` `[n]`
    /// (the first `<|endoftext|>` of each row, see [`eos_positions`]).
    pub fn text_features(&self, ids: &Tensor, eos_positions: &Tensor) -> Tensor {
        let len = ids.size()[1];
        let x =
            self.token_embedding.forward(ids) + self.text_position.narrow(0, 0, len).unsqueeze(0);
        let x = run_encoder(&self.text_layers, x, true);
        let d = self.shape.text.hidden;
        let idx = eos_positions.view([-1, 1, 1]).expand([-1, 1, d], false);
        let pooled = x.gather(1, &idx, false).squeeze_dim(1);
        self.text_projection
            .forward(&self.final_layer_norm.forward(&pooled))
    }

    /// `logits_per_image`: `exp(logit_scale) * cos(image_i, text_j)`.
    pub fn logits_per_image(&self, images: &Tensor, texts: &Tensor) -> Tensor {
        let norm = |t: &Tensor| t / t.norm_scalaropt_dim(2, [-1], true);
        norm(images).matmul(&norm(texts).tr()) * self.logit_scale.exp()
    }
}

/// Pads token sequences with `eos_id` into `[n, max_len]` i64 ids and
/// returns them with the position of each row's first `eos_id`.
pub fn pad_tokens(seqs: &[Vec<u32>], eos_id: u32) -> Result<(Tensor, Tensor)> {
    let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
    if len == 0 {
        bail!("no token sequences to embed");
    }
    let mut ids = Vec::with_capacity(seqs.len() * len);
    let mut eos = Vec::with_capacity(seqs.len());
    for (i, s) in seqs.iter().enumerate() {
        let pos = s
            .iter()
            .position(|&t| t == eos_id)
            .with_context(|| format!("token sequence {i} has no <|endoftext|> ({eos_id})"))?;
        eos.push(pos as i64);
        ids.extend(s.iter().map(|&t| i64::from(t)));
        ids.extend(std::iter::repeat_n(i64::from(eos_id), len - s.len()));
    }
    let n = seqs.len() as i64;
    Ok((
        Tensor::from_slice(&ids).view([n, len as i64]),
        Tensor::from_slice(&eos),
    ))
}

/// Re-draws every variable of `vs` from a ChaCha stream keyed by `seed`
/// and the variable's name, so the initial weights do not depend on tch's
/// global generator, on creation order or on other threads: LayerNorm
/// weights 1, biases 0, scalars kept, embeddings and the class token
/// N(0, 0.02), linear and patch weights U(-b, b) with b = fan_in^-1/2
/// (PyTorch's default for `nn.Linear`).
pub fn init_weights(vs: &nn::VarStore, seed: u64) {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    for (name, mut var) in vars {
        let size = var.size();
        if size.is_empty() {
            // Scalars (`logit_scale`, the training bias) keep their set value.
            continue;
        }
        let numel: i64 = size.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name.as_bytes()));
        let values: Vec<f32> = if name.contains("layer_norm") || name.contains("layrnorm") {
            let v = if name.ends_with(".weight") { 1.0 } else { 0.0 };
            vec![v; numel as usize]
        } else if name.ends_with(".bias") {
            vec![0.0; numel as usize]
        } else if name.contains("embedding") && !name.contains("patch_embedding") {
            (0..numel)
                .map(|_| normal(&mut rng) * INIT_STD as f32)
                .collect()
        } else {
            let fan_in: i64 = size[1..].iter().product();
            let b = (fan_in.max(1) as f32).powf(-0.5);
            (0..numel)
                .map(|_| (uniform(&mut rng) * 2.0 - 1.0) * b)
                .collect()
        };
        let t = Tensor::from_slice(&values).view(size.as_slice());
        tch::no_grad(|| var.copy_(&t));
    }
}

/// FNV-1a: a fixed hash of a variable name (std's hasher is randomised).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Uniform in [0, 1) from the top 24 bits.
fn uniform(rng: &mut ChaCha8Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Standard normal by Box-Muller (exact f64 libm calls; only the
/// initial weights depend on them).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1 = (f64::from(rng.next_u32()) + 1.0) / 4_294_967_297.0;
    let u2 = f64::from(rng.next_u32()) / 4_294_967_296.0;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Writes every variable of `vs` whose name does not start with one of
/// `skip` to `path` as f32 safetensors under its VarStore name.
pub fn save_weights(vs: &nn::VarStore, skip: &[&str], path: &Path) -> Result<()> {
    let vars: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| !skip.iter().any(|s| k.starts_with(s)))
        .collect();
    let named: Vec<(String, Tensor)> = vars.into_iter().collect();
    crate::llava::write_safetensors(&named, path)
}

/// Loads a `model.safetensors` written by [`save_weights`] into the model's
/// variables; every variable must be present with its shape.
pub fn load_weights(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    let file =
        Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
    let file: BTreeMap<String, Tensor> = file.into_iter().collect();
    for (name, mut var) in vs.variables() {
        let t = file
            .get(&name)
            .with_context(|| format!("{}: tensor {name} is missing", path.display()))?;
        if t.size() != var.size() {
            bail!(
                "{}: tensor {name} has shape {:?}, expected {:?}",
                path.display(),
                t.size(),
                var.size()
            );
        }
        tch::no_grad(|| var.copy_(&t.to_device(Device::Cpu).to_kind(Kind::Float)));
    }
    Ok(())
}

/// Loads a saved verifier (`config.json` + `model.safetensors`) into a new
/// CPU VarStore.
pub fn load_clip(dir: &Path) -> Result<(nn::VarStore, ClipTch)> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("reading {}", cfg_path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", cfg_path.display()))?;
    let shape = ClipShape::from_config_json(&value, &cfg_path.display().to_string())?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = ClipTch::new(&vs.root(), &shape)?;
    load_weights(&mut vs, &dir.join("model.safetensors"))?;
    Ok((vs, model))
}
