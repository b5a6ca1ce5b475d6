//! `LlavaForConditionalGeneration` (`transformers/models/llava/modeling_llava.py`)
//! as a PPO policy: frozen base weights in one `VarStore`, LoRA adapters and the
//! value head in a second, trainable one; a forward over a padded batch giving
//! logits and values; teacher-forced log-probs; one switch for the reference policy.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::attention::KvCache;
use super::clip_vision::ClipVisionTower;
use super::config::LlavaConfig;
use super::llama::LlamaModel;
use super::lora::{LoraBuilder, LoraConfig};
use super::projector::MultiModalProjector;
use super::value_head::ValueHead;
use super::weights::{Checkpoint, InitHint, WeightBuilder};

/// How to build the model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where the weights live.
    pub device: Device,
    /// Compute dtype of the base weights (bf16 on CUDA, f32 on CPU by default).
    pub kind: Kind,
    /// LoRA adapters to add to the language model, if any.
    pub lora: Option<LoraConfig>,
    /// Add a scalar value head.
    pub value_head: bool,
}

impl LoadOptions {
    /// Defaults for a device: its compute dtype, no LoRA, no value head.
    pub fn for_device(device: Device) -> Self {
        LoadOptions {
            device,
            kind: crate::device::compute_kind(device),
            lora: None,
            value_head: false,
        }
    }
}

/// A batch of token sequences, padded on either side.
pub struct Batch<'a> {
    /// `[b, s]` int64.
    pub input_ids: &'a Tensor,
    /// `[b, s]` with 1 for real tokens and 0 for padding; `None` means no padding.
    pub attention_mask: Option<&'a Tensor>,
    /// `[n_images, 3, H, W]`, one per `<image>` run, in order of appearance.
    pub pixel_values: Option<&'a Tensor>,
}

/// What one forward gives.
pub struct PolicyOutput {
    /// `[b, s, vocab]` in the model dtype.
    pub logits: Tensor,
    /// `[b, s]` f32 values, when the model has a value head.
    pub values: Option<Tensor>,
}

/// LLaVA-1.5 with optional LoRA and value head.
pub struct LlavaModel {
    /// The checked configuration.
    pub config: LlavaConfig,
    vision_tower: ClipVisionTower,
    multi_modal_projector: MultiModalProjector,
    language_model: LlamaModel,
    lm_head: Tensor,
    value_head: Option<ValueHead>,
    lora: Option<LoraConfig>,
    adapters_on: Arc<AtomicBool>,
    base_trainable: bool,
    base_vs: VarStore,
    train_vs: VarStore,
    kind: Kind,
}

impl LlavaModel {
    /// Loads `dir/config.json` and the (possibly sharded) safetensors checkpoint.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let config = LlavaConfig::from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir)?;
        Self::build(config, Some(&ckpt), opts)
    }

    /// A randomly initialised model whose base weights are trainable (training from scratch).
    pub fn from_config(config: LlavaConfig, opts: &LoadOptions) -> Result<Self> {
        Self::build(config, None, opts)
    }

    fn build(config: LlavaConfig, ckpt: Option<&Checkpoint>, opts: &LoadOptions) -> Result<Self> {
        let base_vs = VarStore::new(opts.device);
        let train_vs = VarStore::new(opts.device);
        let adapters_on = Arc::new(AtomicBool::new(true));
        let lora = match &opts.lora {
            Some(c) => Some(LoraBuilder::new(
                train_vs.root(),
                c.clone(),
                adapters_on.clone(),
            )?),
            None => None,
        };
        let vb = WeightBuilder::new(
            base_vs.root(),
            ckpt,
            opts.kind,
            config.text.initializer_range,
        );
        let (t, v) = (&config.text, &config.vision);
        let vision_tower = ClipVisionTower::new(
            &vb.pp("vision_tower"),
            v,
            config.vision_layers_used,
            config.drop_cls,
        )?;
        let multi_modal_projector = MultiModalProjector::new(
            &vb.pp("multi_modal_projector"),
            v.hidden_size,
            t.hidden_size,
            config.projector_bias,
        )?;
        let language_model = LlamaModel::new(&vb.pp("language_model"), t, lora.as_ref())?;
        let lm_head = if t.tie_word_embeddings {
            language_model.embed_tokens.shallow_clone()
        } else {
            vb.pp("lm_head")
                .get("weight", &[t.vocab_size, t.hidden_size], InitHint::Normal)?
        };
        let value_head = if opts.value_head {
            Some(ValueHead::new(&train_vs.root(), t.hidden_size)?)
        } else {
            None
        };
        Ok(LlavaModel {
            config,
            vision_tower,
            multi_modal_projector,
            language_model,
            lm_head,
            value_head,
            lora: opts.lora.clone(),
            adapters_on,
            base_trainable: ckpt.is_none(),
            base_vs,
            train_vs,
            kind: opts.kind,
        })
    }

    /// Frozen base weights (trainable only when built by [`LlavaModel::from_config`]).
    pub fn base_vs(&self) -> &VarStore {
        &self.base_vs
    }

    /// LoRA adapters and value head: what the optimizer updates.
    pub fn trainable_vs(&self) -> &VarStore {
        &self.train_vs
    }

    /// The LoRA settings, when the model has adapters.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Compute dtype.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Device of the weights.
    pub fn device(&self) -> Device {
        self.base_vs.device()
    }

    /// Turns every LoRA adapter on or off (off = the reference policy).
    pub fn set_adapters_enabled(&self, on: bool) {
        self.adapters_on.store(on, Ordering::Relaxed);
    }

    /// Whether adapters are applied.
    pub fn adapters_enabled(&self) -> bool {
        self.adapters_on.load(Ordering::Relaxed)
    }

    /// Runs `f` with adapters off, restoring the previous state afterwards.
    pub fn with_adapters_disabled<R>(&self, f: impl FnOnce(&Self) -> R) -> R {
        let before = self.adapters_enabled();
        self.set_adapters_enabled(false);
        let r = f(self);
        self.set_adapters_enabled(before);
        r
    }

    /// Token embeddings with image features scattered over the `<image>` positions.
    pub fn input_embeds(&self, ids: &Tensor, pixels: Option<&Tensor>) -> Result<Tensor> {
        check_ids(ids, self.config.text.vocab_size)?;
        let embeds = self.language_model.embed(ids);
        let is_image = ids.eq(self.config.image_token_id);
        let n_tokens = is_image.sum(Kind::Int64).int64_value(&[]);
        let Some(pixels) = pixels else {
            if n_tokens > 0 {
                bail!("the prompt has {n_tokens} <image> tokens but no pixel_values were given");
            }
            return Ok(embeds);
        };
        self.scatter_image_features(ids, embeds, &self.image_features(pixels)?)
    }

    /// [`LlavaModel::input_embeds`] from vision-tower features computed earlier by
    /// [`LlavaModel::vision_features`] (a frozen tower's features can be cached per image);
    /// the projector runs here, so it trains.
    pub fn input_embeds_from_features(&self, ids: &Tensor, features: &Tensor) -> Result<Tensor> {
        check_ids(ids, self.config.text.vocab_size)?;
        let want = [
            self.config.image_tokens_per_image(),
            self.config.vision.hidden_size,
        ];
        if features.dim() != 3 || features.size()[1..] != want {
            bail!(
                "vision features must be [n, {}, {}], found {:?}",
                want[0],
                want[1],
                features.size()
            );
        }
        let embeds = self.language_model.embed(ids);
        let projected = self
            .multi_modal_projector
            .forward(&features.to_device(self.device()).to_kind(self.kind));
        self.scatter_image_features(ids, embeds, &projected)
    }

    /// Vision-tower features `[n, patches, vision_hidden]` (before the projector).
    pub fn vision_features(&self, pixels: &Tensor) -> Result<Tensor> {
        self.vision_tower
            .forward(&pixels.to_device(self.device()), self.kind)
    }

    fn scatter_image_features(
        &self,
        ids: &Tensor,
        embeds: Tensor,
        features: &Tensor,
    ) -> Result<Tensor> {
        let is_image = ids.eq(self.config.image_token_id);
        let n_tokens = is_image.sum(Kind::Int64).int64_value(&[]);
        let (n_img, per) = (features.size()[0], features.size()[1]);
        if n_tokens != n_img * per {
            bail!(
                "the prompt has {n_tokens} <image> tokens but {n_img} image(s) give {} features ({per} per image)",
                n_img * per
            );
        }
        Ok(embeds.masked_scatter(&is_image.unsqueeze(-1), &features.to_kind(embeds.kind())))
    }

    /// Token embeddings only (ids already known to be in range, e.g. sampled ones).
    pub(crate) fn embed_text(&self, ids: &Tensor) -> Tensor {
        self.language_model.embed(ids)
    }

    /// Projected vision features `[n, patches, hidden]`.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let run = || -> Result<Tensor> {
            let f = self
                .vision_tower
                .forward(&pixels.to_device(self.device()), self.kind)?;
            Ok(self.multi_modal_projector.forward(&f))
        };
        // A frozen tower needs no graph: saves the activations of every vision layer.
        if self.base_trainable {
            run()
        } else {
            tch::no_grad(run)
        }
    }

    /// Final hidden states of `embeds` `[b, s, h]`. `mask2d` `[b, past + s]` covers the cached
    /// and the new positions (`None`: no padding anywhere).
    pub fn decoder_hidden(
        &self,
        embeds: &Tensor,
        mask2d: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Result<Tensor> {
        let (b, s) = (embeds.size()[0], embeds.size()[1]);
        let past = cache.as_ref().map_or(0, |c| c.len());
        let ctx = self.config.text.max_position_embeddings;
        if past + s > ctx {
            bail!(
                "a sequence of {} tokens is longer than the context of {ctx} positions",
                past + s
            );
        }
        if let Some(c) = cache.as_ref()
            && c.remaining() < s
        {
            bail!(
                "the KV cache has room for {} more positions, {s} given",
                c.remaining()
            );
        }
        let dev = embeds.device();
        let (positions, bias) = match mask2d {
            Some(m) => {
                let m = m.to_device(dev);
                let pos = (m.cumsum(1, Kind::Int64) - 1).masked_fill(&m.eq(0), 1);
                (
                    pos.narrow(1, past, s),
                    Some(attention_bias(&m, s, past, self.kind)),
                )
            }
            None => {
                let pos = Tensor::arange_start(past, past + s, (Kind::Int64, dev))
                    .unsqueeze(0)
                    .expand([b, s], false);
                // A chunk after cached positions needs an explicit offset-causal mask.
                let bias = (past > 0 && s > 1).then(|| {
                    attention_bias(
                        &Tensor::ones([b, past + s], (Kind::Int64, dev)),
                        s,
                        past,
                        self.kind,
                    )
                });
                (pos, bias)
            }
        };
        Ok(self
            .language_model
            .forward(embeds, &positions, bias.as_ref(), cache, train))
    }

    /// Vocabulary logits of hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear::<Tensor>(&self.lm_head, None)
    }

    /// Logits (and values) for every position of a batch.
    pub fn forward(&self, batch: &Batch, train: bool) -> Result<PolicyOutput> {
        let ids = batch.input_ids.to_device(self.device());
        if ids.dim() != 2 {
            bail!("input_ids must be [batch, seq], found {:?}", ids.size());
        }
        if let Some(m) = batch.attention_mask
            && m.size() != ids.size()
        {
            bail!(
                "attention_mask {:?} does not match input_ids {:?}",
                m.size(),
                ids.size()
            );
        }
        // An all-ones mask is the same as none, and lets libtorch use its causal kernels.
        let mask = batch
            .attention_mask
            .filter(|m| m.min().int64_value(&[]) == 0);
        let embeds = self.input_embeds(&ids, batch.pixel_values)?;
        let hidden = self.decoder_hidden(&embeds, mask, None, train)?;
        let values = self.value_head.as_ref().map(|v| v.forward(&hidden));
        Ok(PolicyOutput {
            logits: self.logits(&hidden),
            values,
        })
    }

    /// `log p(x_t | x_<t)` for t = 1..s: `[b, s - 1]` f32, plus values `[b, s]` when
    /// the model has a value head. Padding positions hold garbage; mask them.
    pub fn token_logprobs(&self, batch: &Batch, train: bool) -> Result<(Tensor, Option<Tensor>)> {
        let out = self.forward(batch, train)?;
        let s = out.logits.size()[1];
        let logp = out.logits.narrow(1, 0, s - 1).log_softmax(-1, Kind::Float);
        let target = batch
            .input_ids
            .to_device(self.device())
            .narrow(1, 1, s - 1)
            .unsqueeze(-1);
        Ok((logp.gather(-1, &target, false).squeeze_dim(-1), out.values))
    }
}

/// Additive attention bias `[b, 1, q, past + q]`: 0 where key k is a real token at or
/// before the query's position, a large negative number elsewhere. Finite, so rows of
/// padded queries stay NaN-free (HF uses `finfo.min` the same way).
pub fn attention_bias(mask2d: &Tensor, q: i64, past: i64, kind: Kind) -> Tensor {
    let dev = mask2d.device();
    let kv = mask2d.size()[1];
    let kpos = Tensor::arange(kv, (Kind::Int64, dev));
    let qpos = Tensor::arange_start(past, past + q, (Kind::Int64, dev));
    let causal = kpos.unsqueeze(0).le_tensor(&qpos.unsqueeze(1));
    let allowed = causal.unsqueeze(0).logical_and(&mask2d.ne(0).unsqueeze(1));
    let neg = if kind == Kind::Half { -65504.0 } else { -1e30 };
    Tensor::zeros(allowed.size(), (kind, dev))
        .masked_fill(&allowed.logical_not(), neg)
        .unsqueeze(1)
}

fn check_ids(ids: &Tensor, vocab: i64) -> Result<()> {
    if ids.kind() != Kind::Int64 {
        bail!("input_ids must be int64, found {:?}", ids.kind());
    }
    if ids.numel() == 0 {
        bail!("input_ids is empty");
    }
    let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
    if lo < 0 || hi >= vocab {
        bail!("token ids must be in 0..{vocab}, found {lo}..={hi}");
    }
    Ok(())
}
