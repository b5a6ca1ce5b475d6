//! Batched sampling with a KV cache, like `GenerationMixin.generate` with
//! `do_sample` (temperature, top-k, top-p; greedy at temperature 0): prompts are
//! left-padded, finished rows are fed padding until every row hit EOS or the
//! token budget.

use anyhow::{Result, bail};
use tch::{Device, Kind, Tensor};

use super::attention::KvCache;
use super::model::LlavaModel;

/// Decoding settings.
#[derive(Debug, Clone)]
pub struct SamplingConfig {
    /// Most tokens generated per row.
    pub max_new_tokens: i64,
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus mass kept (1.0 = off).
    pub top_p: f64,
    /// Most likely tokens kept (0 = off).
    pub top_k: i64,
    /// A row stops after emitting one of these.
    pub eos_token_ids: Vec<i64>,
    /// Fed to finished rows and used for padding.
    pub pad_token_id: i64,
    /// Seed of the sampler's own generator (independent of libtorch's global one);
    /// `None` seeds from the clock.
    pub seed: Option<u64>,
    /// Tokens that are never chosen (`suppress_tokens` in transformers), e.g.
    /// `<image>`: a response holding one would make a later teacher-forced pass
    /// expect image features that do not exist.
    pub suppress_token_ids: Vec<i64>,
}

impl SamplingConfig {
    /// Greedy decoding with the model's EOS and padding ids.
    pub fn greedy(model: &LlavaModel, max_new_tokens: i64) -> Self {
        let t = &model.config.text;
        SamplingConfig {
            max_new_tokens,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            eos_token_ids: t.eos_token_ids.clone(),
            pad_token_id: t
                .pad_token_id
                .or(t.eos_token_ids.first().copied())
                .unwrap_or(0),
            seed: None,
            suppress_token_ids: Vec::new(),
        }
    }

    /// The same settings with the model's `<image>` token banned: what every
    /// rollout and evaluation caption needs.
    pub fn without_image_token(mut self, model: &LlavaModel) -> Self {
        let id = model.config.image_token_id;
        if !self.suppress_token_ids.contains(&id) {
            self.suppress_token_ids.push(id);
        }
        self
    }

    fn check(&self) -> Result<()> {
        if self.max_new_tokens <= 0 {
            bail!(
                "max_new_tokens must be positive, found {}",
                self.max_new_tokens
            );
        }
        if let Some(&id) = self.suppress_token_ids.iter().find(|&&i| i < 0) {
            bail!("suppress_token_ids holds a negative id {id}");
        }
        if self.temperature < 0.0 || !(self.top_p > 0.0 && self.top_p <= 1.0) || self.top_k < 0 {
            bail!(
                "invalid sampling settings: temperature {} (>= 0), top_p {} (in (0, 1]), top_k {} (>= 0)",
                self.temperature,
                self.top_p,
                self.top_k
            );
        }
        Ok(())
    }
}

/// Which side padding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingSide {
    /// Padding before the tokens (what generation needs).
    Left,
    /// Padding after the tokens (what training batches often use).
    Right,
}

/// Pads `seqs` to one width: `(input_ids, attention_mask)`, both `[b, width]` int64.
pub fn pad_batch(
    seqs: &[Vec<i64>],
    pad: i64,
    side: PaddingSide,
    device: Device,
) -> (Tensor, Tensor) {
    let width = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * width);
    let mut mask = Vec::with_capacity(seqs.len() * width);
    for s in seqs {
        let n = width - s.len();
        let (pads, ones) = (std::iter::repeat_n(pad, n), std::iter::repeat_n(0i64, n));
        match side {
            PaddingSide::Left => {
                ids.extend(pads.chain(s.iter().copied()));
                mask.extend(ones.chain(std::iter::repeat_n(1, s.len())));
            }
            PaddingSide::Right => {
                ids.extend(s.iter().copied().chain(pads));
                mask.extend(std::iter::repeat_n(1, s.len()).chain(ones));
            }
        }
    }
    let shape = [seqs.len() as i64, width as i64];
    (
        Tensor::from_slice(&ids).view(shape).to(device),
        Tensor::from_slice(&mask).view(shape).to(device),
    )
}

/// The real tokens of each row of a padded batch (either side).
pub fn unpad(input_ids: &Tensor, attention_mask: &Tensor) -> Result<Vec<Vec<i64>>> {
    if input_ids.size() != attention_mask.size() || input_ids.dim() != 2 {
        bail!(
            "input_ids {:?} and attention_mask {:?} must be equal [b, s]",
            input_ids.size(),
            attention_mask.size()
        );
    }
    let ids: Vec<Vec<i64>> =
        Vec::<Vec<i64>>::try_from(input_ids.to_device(Device::Cpu).to_kind(Kind::Int64))?;
    let mask: Vec<Vec<i64>> =
        Vec::<Vec<i64>>::try_from(attention_mask.to_device(Device::Cpu).to_kind(Kind::Int64))?;
    Ok(ids
        .iter()
        .zip(&mask)
        .map(|(i, m)| {
            i.iter()
                .zip(m)
                .filter(|(_, m)| **m != 0)
                .map(|(i, _)| *i)
                .collect()
        })
        .collect())
}

/// SplitMix64: a tiny seeded generator, so sampling is reproducible whatever else
/// draws from libtorch's global generator (dropout in a parallel test, say).
pub struct SamplerRng(u64);

impl SamplerRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SamplerRng(seed)
    }

    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` uniforms in [0, 1).
    pub fn uniforms(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next_f64()).collect()
    }
}

/// Picks the next token of every row from last-position logits `[b, vocab]`.
pub fn choose_tokens(logits: &Tensor, cfg: &SamplingConfig, rng: &mut SamplerRng) -> Tensor {
    let mut logits = logits.to_kind(Kind::Float);
    let vocab = logits.size()[1];
    let banned: Vec<i64> = cfg
        .suppress_token_ids
        .iter()
        .copied()
        .filter(|&i| i < vocab)
        .collect();
    if !banned.is_empty() {
        let idx = Tensor::from_slice(&banned).to(logits.device());
        logits = logits.index_fill(1, &idx, f64::NEG_INFINITY);
    }
    if cfg.temperature == 0.0 {
        return logits.argmax(-1, false);
    }
    let mut l = logits / cfg.temperature;
    if cfg.top_k > 0 && cfg.top_k < vocab {
        let (top, _) = l.topk(cfg.top_k, -1, true, true);
        let kth = top.narrow(1, cfg.top_k - 1, 1);
        l = l.masked_fill(&l.lt_tensor(&kth), f64::NEG_INFINITY);
    }
    if cfg.top_p < 1.0 {
        let (sorted, idx) = l.sort(-1, true);
        let probs = sorted.softmax(-1, Kind::Float);
        // Drop a token when the mass before it already exceeds top_p; the first always stays.
        let drop_sorted = (probs.cumsum(-1, Kind::Float) - &probs).gt(cfg.top_p);
        let drop = drop_sorted.zeros_like().scatter(-1, &idx, &drop_sorted);
        l = l.masked_fill(&drop, f64::NEG_INFINITY);
    }
    // Inverse-CDF sampling with the caller's uniforms.
    let probs = l.softmax(-1, Kind::Double);
    let b = probs.size()[0];
    let u = Tensor::from_slice(&rng.uniforms(b as usize))
        .to(probs.device())
        .view([b, 1]);
    let below = probs
        .cumsum(-1, Kind::Double)
        .lt_tensor(&u)
        .sum_dim_intlist(-1, false, Kind::Int64);
    // Never land on a filtered (zero-probability) token past the end of the mass.
    below
        .clamp_max(vocab - 1)
        .minimum(&probs.gt(0.0).cumsum(-1, Kind::Int64).argmax(-1, false))
}

/// Generates continuations of `prompts` (token ids, any lengths; `<image>` runs are
/// filled from `pixel_values` in order). Returns the new tokens of each row, EOS included.
pub fn generate(
    model: &LlavaModel,
    prompts: &[Vec<i64>],
    pixel_values: Option<&Tensor>,
    cfg: &SamplingConfig,
) -> Result<Vec<Vec<i64>>> {
    cfg.check()?;
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        bail!("generate needs at least one prompt and no empty prompt");
    }
    let dev = model.device();
    let b = prompts.len() as i64;
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let ctx = model.config.text.max_position_embeddings;
    if width + cfg.max_new_tokens > ctx {
        bail!(
            "a prompt of {width} tokens plus max_new_tokens {} is longer than the context of {ctx} positions",
            cfg.max_new_tokens
        );
    }
    let seed = cfg.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut rng = SamplerRng::new(seed);
    let padded = prompts.iter().any(|p| p.len() as i64 != width);
    let (ids, mut mask) = pad_batch(prompts, cfg.pad_token_id, PaddingSide::Left, dev);
    tch::no_grad(|| {
        let mut cache = KvCache::new(
            &model.config.text,
            b,
            width + cfg.max_new_tokens,
            model.kind(),
            dev,
        );
        let embeds = model.input_embeds(&ids, pixel_values)?;
        let h = model.decoder_hidden(&embeds, padded.then_some(&mask), Some(&mut cache), false)?;
        let mut logits = model.logits(&h.select(1, width - 1));
        let mut out = vec![Vec::new(); prompts.len()];
        let mut done = vec![false; prompts.len()];
        for step in 0..cfg.max_new_tokens {
            let next =
                Vec::<i64>::try_from(choose_tokens(&logits, cfg, &mut rng).to_device(Device::Cpu))?;
            let mut feed = next.clone();
            for (i, &t) in next.iter().enumerate() {
                if done[i] {
                    feed[i] = cfg.pad_token_id;
                    continue;
                }
                out[i].push(t);
                done[i] = cfg.eos_token_ids.contains(&t);
            }
            if done.iter().all(|&d| d) || step + 1 == cfg.max_new_tokens {
                break;
            }
            mask = Tensor::cat(&[&mask, &Tensor::ones([b, 1], (Kind::Int64, dev))], 1);
            let emb = model.embed_text(&Tensor::from_slice(&feed).view([b, 1]).to(dev));
            let h = model.decoder_hidden(&emb, padded.then_some(&mask), Some(&mut cache), false)?;
            logits = model.logits(&h.select(1, 0));
        }
        Ok(out)
    })
}

/// [`generate`] for an already padded batch (left or right): rows are re-padded on the left.
pub fn generate_padded(
    model: &LlavaModel,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    pixel_values: Option<&Tensor>,
    cfg: &SamplingConfig,
) -> Result<Vec<Vec<i64>>> {
    generate(model, &unpad(input_ids, attention_mask)?, pixel_values, cfg)
}
