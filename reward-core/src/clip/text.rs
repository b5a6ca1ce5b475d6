//! CLIP's text tower up to the pooled output (before `text_projection`).
//!
//! Mirrors `CLIPTextEmbeddings` and `CLIPTextTransformer` in
//! `transformers/models/clip/modeling_clip.py`: token + position
//! embeddings, a causal encoder, `final_layer_norm`, and the hidden state
//! at the pooled position (see [`TextPooling`]). Sequences are not padded:
//! with a causal mask, pad tokens after a position cannot change it.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::config::{TextConfig, TextPooling};
use super::encoder::{Encoder, EncoderShape};
use super::error::ClipError;
use super::ops::LayerNorm;
use super::weights::VarBuilder;

/// `text_model`.
pub(crate) struct TextTransformer {
    token_embedding: Vec<f32>,
    position_embedding: Vec<f32>,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    cfg: TextConfig,
}

impl TextTransformer {
    /// Loads `text_model.*` under `vb`.
    pub(crate) fn new(vb: &VarBuilder<'_, '_>, cfg: &TextConfig) -> Result<Self, ClipError> {
        let emb = vb.pp("embeddings");
        let hidden = cfg.hidden_size;
        let shape = EncoderShape {
            hidden,
            intermediate: cfg.intermediate_size,
            layers: cfg.num_hidden_layers,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            eps: cfg.layer_norm_eps,
        };
        Ok(Self {
            token_embedding: emb
                .pp("token_embedding")
                .get("weight", &[cfg.vocab_size, hidden])?,
            position_embedding: emb
                .pp("position_embedding")
                .get("weight", &[cfg.max_position_embeddings, hidden])?,
            encoder: Encoder::new(&vb.pp("encoder"), &shape)?,
            final_layer_norm: LayerNorm::new(
                &vb.pp("final_layer_norm"),
                hidden,
                cfg.layer_norm_eps,
            )?,
            cfg: cfg.clone(),
        })
    }

    /// Pooled outputs `[texts.len(), hidden]` for token-id sequences that the
    /// caller has checked (non-empty, within the window, ids in the vocabulary).
    pub(crate) fn forward(&self, texts: &[&[u32]]) -> Vec<f32> {
        let hidden = self.cfg.hidden_size;
        let seqs = ranges(texts);
        let mut x = self.embed(texts, &seqs);
        self.encoder.forward(&mut x, &seqs, true);
        let mut pooled = vec![0.0; texts.len() * hidden];
        for ((ids, seq), out) in texts.iter().zip(&seqs).zip(pooled.chunks_exact_mut(hidden)) {
            let row = seq.start + pool_position(ids, self.cfg.pooling());
            out.copy_from_slice(&x[row * hidden..(row + 1) * hidden]);
            // LayerNorm is per row, so normalising only the pooled row is exact.
            self.final_layer_norm.norm_row(out);
        }
        pooled
    }

    /// `inputs_embeds + position_embeds` for all sequences, stacked.
    fn embed(&self, texts: &[&[u32]], seqs: &[Range<usize>]) -> Vec<f32> {
        let hidden = self.cfg.hidden_size;
        let rows = seqs.last().map_or(0, |s| s.end);
        let mut x = vec![0.0; rows * hidden];
        for (ids, seq) in texts.iter().zip(seqs) {
            for (pos, &id) in ids.iter().enumerate() {
                let out = &mut x[(seq.start + pos) * hidden..][..hidden];
                let tok = &self.token_embedding[id as usize * hidden..][..hidden];
                let posv = &self.position_embedding[pos * hidden..][..hidden];
                for ((o, t), p) in out.iter_mut().zip(tok).zip(posv) {
                    *o = t + p;
                }
            }
        }
        x
    }
}

/// Consecutive row ranges, one per sequence.
fn ranges(texts: &[&[u32]]) -> Vec<Range<usize>> {
    let mut start = 0;
    texts
        .iter()
        .map(|ids| {
            let r = start..start + ids.len();
            start = r.end;
            r
        })
        .collect()
}

/// The pooled position, exactly as transformers computes it (ties and
/// absence resolve to the first index, like `torch.argmax`).
pub(crate) fn pool_position(ids: &[u32], pooling: TextPooling) -> usize {
    match pooling {
        TextPooling::ArgMaxId => {
            let max = ids.iter().copied().max().unwrap_or(0);
            ids.iter().position(|&id| id == max).unwrap_or(0)
        }
        TextPooling::FirstId(eos) => ids.iter().position(|&id| id == eos).unwrap_or(0),
    }
}
