//! The two CLIP towers on the GPU: weights uploaded once, then each call
//! records every layer's kernels into one submission.
//!
//! Mirrors `clip/encoder.rs` (`CLIPEncoderLayer`: pre-norm attention and
//! MLP with residual adds), `clip/vision.rs` (patch embedding, class token,
//! `pre_layrnorm`, `post_layernorm` of the class token) and `clip/text.rs`
//! (token + position embeddings, causal encoder, `final_layer_norm` of the
//! pooled token).

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

use super::context::{AttentionKernel, Dispatch, GpuContext, Precision};
use super::error::GpuError;
use super::kernels::attention::{Heads, attention, seq_table};
use super::kernels::attention_flash::{attention_flash, supports as flash_supports};
use super::kernels::attention_gemm::{Batch, Scratch, attention_gemm};
use super::kernels::layernorm::{Norm, layernorm};
use super::kernels::matmul::{Gemm, matmul};
use super::kernels::patch_embed::{PatchShape, im2col, padded_weight, patch_tokens};
use super::kernels::token_embed::{TableValues, TokenTable};
use crate::clip::weights::VarBuilder;
use crate::clip::{Activation, TextConfig, VisionConfig};

/// Activation buffers by role, grown on demand and reused across calls.
#[derive(Default)]
pub(crate) struct Workspace {
    buffers: BTreeMap<&'static str, wgpu::Buffer>,
}

/// A model's workspace for one kind of call. A call takes it for its whole
/// length and the [`TakenWorkspace`] puts it back when dropped, so no lock
/// is held across an await: a call that finds it taken (another thread's,
/// or in a browser a second request made while the first awaits the GPU)
/// works in a fresh one instead of waiting or, on single-threaded WASM,
/// panicking on the held lock.
#[derive(Default)]
pub(crate) struct WorkspaceSlot(std::sync::Mutex<Option<Workspace>>);

impl WorkspaceSlot {
    /// The stored workspace, or a fresh one if it is taken.
    pub(crate) fn take(&self) -> TakenWorkspace<'_> {
        // A poisoned slot (a panic while putting back) only loses the cache.
        let ws = self.0.lock().ok().and_then(|mut s| s.take());
        TakenWorkspace {
            slot: self,
            ws: ws.unwrap_or_default(),
        }
    }
}

/// A workspace on loan from a [`WorkspaceSlot`]; returned on drop (the
/// first one returned is kept, a concurrent call's fresh one is dropped).
pub(crate) struct TakenWorkspace<'a> {
    slot: &'a WorkspaceSlot,
    ws: Workspace,
}

impl core::ops::Deref for TakenWorkspace<'_> {
    type Target = Workspace;
    fn deref(&self) -> &Workspace {
        &self.ws
    }
}

impl core::ops::DerefMut for TakenWorkspace<'_> {
    fn deref_mut(&mut self) -> &mut Workspace {
        &mut self.ws
    }
}

impl Drop for TakenWorkspace<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.slot.0.lock() {
            if s.is_none() {
                *s = Some(core::mem::take(&mut self.ws));
            }
        }
    }
}

impl Workspace {
    /// The buffer `name` with room for `elems` device elements.
    pub(crate) async fn get(
        &mut self,
        ctx: &GpuContext,
        name: &'static str,
        elems: usize,
    ) -> Result<wgpu::Buffer, GpuError> {
        self.sized(ctx, name, elems as u64 * ctx.precision().size())
            .await
    }

    /// The buffer `name` holding `values` as they are, whatever the
    /// context's precision: u32 tables and row indices, and f32 pixels,
    /// which the patch kernel converts (converting 32 ViT-L images to f16
    /// on the host took tens of milliseconds per call, the GPU idle).
    pub(crate) async fn holding<T: bytemuck::Pod>(
        &mut self,
        ctx: &GpuContext,
        name: &'static str,
        values: &[T],
    ) -> Result<wgpu::Buffer, GpuError> {
        // Queue writes come in multiples of 4 bytes.
        const { assert!(core::mem::size_of::<T>() % 4 == 0) };
        let bytes: &[u8] = bytemuck::cast_slice(values);
        let b = self.sized(ctx, name, bytes.len() as u64).await?;
        ctx.write_bytes(&b, bytes);
        Ok(b)
    }

    /// The buffer `name` if it has at least `bytes`, else a new one in its place.
    async fn sized(
        &mut self,
        ctx: &GpuContext,
        name: &'static str,
        bytes: u64,
    ) -> Result<wgpu::Buffer, GpuError> {
        let bytes = bytes.max(16);
        if let Some(b) = self.buffers.get(name).filter(|b| b.size() >= bytes) {
            return Ok(b.clone());
        }
        let b = ctx.storage(name, bytes).await?;
        self.buffers.insert(name, b.clone());
        Ok(b)
    }
}

/// A linear layer on the device: `weight [out, in]`, optional `bias [out]`.
pub(crate) struct GpuLinear {
    pub w: wgpu::Buffer,
    pub b: Option<wgpu::Buffer>,
    pub in_dim: usize,
    pub out_dim: usize,
}

/// The `weight`s of `parts` stacked, as stored, when the device computes in
/// f16 and every part is stored in f16: the bytes go up as they are (the
/// round trip through f32 gives the same bits, at a cost: most of a ViT-L
/// load's conversion time). `None` otherwise.
fn raw_f16<'a>(
    ctx: &GpuContext,
    parts: &[VarBuilder<'_, 'a>],
    shape: &[usize],
) -> Result<Option<Cow<'a, [u8]>>, GpuError> {
    if ctx.precision() != Precision::F16 {
        return Ok(None);
    }
    let mut stored = Vec::with_capacity(parts.len());
    for vb in parts {
        match vb.f16_bytes("weight", shape)? {
            Some(b) => stored.push(b),
            None => return Ok(None),
        }
    }
    Ok(Some(match stored.as_slice() {
        [one] => Cow::Borrowed(*one),
        _ => Cow::Owned(stored.concat()),
    }))
}

impl GpuLinear {
    /// Uploads `prefix.weight` (and `prefix.bias`).
    pub(crate) async fn load(
        ctx: &GpuContext,
        vb: &VarBuilder<'_, '_>,
        (in_dim, out_dim): (usize, usize),
        with_bias: bool,
    ) -> Result<Self, GpuError> {
        Self::load_stacked(ctx, core::slice::from_ref(vb), in_dim, out_dim, with_bias).await
    }

    /// Several layers of one input width stacked into one (q, k, v -> qkv).
    pub(crate) async fn load_stacked(
        ctx: &GpuContext,
        parts: &[VarBuilder<'_, '_>],
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
    ) -> Result<Self, GpuError> {
        let name = match parts.len() {
            1 => "linear weight",
            _ => "stacked qkv weight",
        };
        let shape = [out_dim, in_dim];
        let w = match raw_f16(ctx, parts, &shape)? {
            Some(bytes) => ctx.upload_bytes(name, &bytes).await?,
            None => {
                let mut w = Vec::with_capacity(parts.len() * out_dim * in_dim);
                for vb in parts {
                    w.extend(vb.get("weight", &shape)?);
                }
                ctx.upload(name, &w).await?
            }
        };
        let mut b = Vec::new();
        if with_bias {
            for vb in parts {
                b.extend(vb.get("bias", &[out_dim])?);
            }
        }
        Ok(Self {
            w,
            b: match with_bias {
                true => Some(ctx.upload("linear bias", &b).await?),
                false => None,
            },
            in_dim,
            out_dim: out_dim * parts.len(),
        })
    }

    /// Records `out (+)= x[rows, in] @ W^T + b`.
    async fn record(
        &self,
        ctx: &GpuContext,
        x: &wgpu::Buffer,
        rows: usize,
        out: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<Dispatch, GpuError> {
        let mut g = Gemm::new(rows, self.out_dim, self.in_dim);
        g.accumulate = accumulate;
        matmul(ctx, &g, x, &self.w, self.b.as_ref(), out).await
    }

    /// Records `out = act(x[rows, in] @ W^T + b)` (fc1 and its GELU).
    async fn record_act(
        &self,
        ctx: &GpuContext,
        x: &wgpu::Buffer,
        rows: usize,
        out: &wgpu::Buffer,
        act: Option<Activation>,
    ) -> Result<Dispatch, GpuError> {
        let mut g = Gemm::new(rows, self.out_dim, self.in_dim);
        g.act = act;
        matmul(ctx, &g, x, &self.w, self.b.as_ref(), out).await
    }
}

/// A LayerNorm on the device.
pub(crate) struct GpuNorm {
    gamma: wgpu::Buffer,
    beta: wgpu::Buffer,
    dim: usize,
    eps: f32,
}

impl GpuNorm {
    async fn load(
        ctx: &GpuContext,
        vb: &VarBuilder<'_, '_>,
        dim: usize,
        eps: f64,
    ) -> Result<Self, GpuError> {
        Ok(Self {
            gamma: ctx
                .upload("layernorm weight", &vb.get("weight", &[dim])?)
                .await?,
            beta: ctx
                .upload("layernorm bias", &vb.get("bias", &[dim])?)
                .await?,
            dim,
            eps: eps as f32,
        })
    }

    async fn record(
        &self,
        ctx: &GpuContext,
        x: &wgpu::Buffer,
        rows: usize,
        gather: Option<&wgpu::Buffer>,
        out: &wgpu::Buffer,
    ) -> Result<Dispatch, GpuError> {
        let norm = Norm {
            gamma: &self.gamma,
            beta: &self.beta,
            dim: self.dim,
            eps: self.eps,
        };
        layernorm(ctx, &norm, x, rows, gather, out).await
    }
}

/// The shape of one tower's encoder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncoderShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub act: Activation,
    pub eps: f64,
}

struct GpuLayer {
    layer_norm1: GpuNorm,
    qkv: GpuLinear,
    out_proj: GpuLinear,
    layer_norm2: GpuNorm,
    fc1: GpuLinear,
    fc2: GpuLinear,
}

/// `encoder.layers.*` on the device.
pub(crate) struct GpuEncoder {
    layers: Vec<GpuLayer>,
    shape: EncoderShape,
}

/// The packed sequences of one encoder call.
pub(crate) struct Packed<'a> {
    pub rows: usize,
    pub seqs: &'a [Range<usize>],
    pub causal: bool,
}

impl GpuEncoder {
    pub(crate) async fn load(
        ctx: &GpuContext,
        vb: &VarBuilder<'_, '_>,
        shape: EncoderShape,
    ) -> Result<Self, GpuError> {
        let (h, i) = (shape.hidden, shape.intermediate);
        let mut layers = Vec::with_capacity(shape.layers);
        for l in 0..shape.layers {
            let vb = vb.pp("layers").pp(l);
            let attn = vb.pp("self_attn");
            let qkv = [attn.pp("q_proj"), attn.pp("k_proj"), attn.pp("v_proj")];
            layers.push(GpuLayer {
                layer_norm1: GpuNorm::load(ctx, &vb.pp("layer_norm1"), h, shape.eps).await?,
                qkv: GpuLinear::load_stacked(ctx, &qkv, h, h, true).await?,
                out_proj: GpuLinear::load(ctx, &attn.pp("out_proj"), (h, h), true).await?,
                layer_norm2: GpuNorm::load(ctx, &vb.pp("layer_norm2"), h, shape.eps).await?,
                fc1: GpuLinear::load(ctx, &vb.pp("mlp").pp("fc1"), (h, i), true).await?,
                fc2: GpuLinear::load(ctx, &vb.pp("mlp").pp("fc2"), (i, h), true).await?,
            });
        }
        Ok(Self { layers, shape })
    }

    /// Checks that the widest activation of `rows` rows fits one binding.
    pub(crate) fn check_rows(&self, ctx: &GpuContext, rows: usize) -> Result<(), GpuError> {
        let widest = (3 * self.shape.hidden).max(self.shape.intermediate);
        let bytes = (rows * widest) as u64 * ctx.precision().size();
        ctx.check_size(&format!("the activations of {rows} token rows"), bytes)
    }

    /// Records every layer on `x[rows, hidden]` in place.
    pub(crate) async fn record(
        &self,
        ctx: &GpuContext,
        ws: &mut Workspace,
        x: &wgpu::Buffer,
        packed: &Packed<'_>,
        out: &mut Vec<Dispatch>,
    ) -> Result<(), GpuError> {
        let (h, rows) = (self.shape.hidden, packed.rows);
        self.check_rows(ctx, rows)?;
        let normed = ws.get(ctx, "normed", rows * h).await?;
        let qkv = ws.get(ctx, "qkv", rows * 3 * h).await?;
        let attn = ws.get(ctx, "attention", rows * h).await?;
        let mlp = ws.get(ctx, "mlp", rows * self.shape.intermediate).await?;
        let table = ws
            .holding(ctx, "sequences", &seq_table(packed.seqs)?)
            .await?;
        let max_len = packed.seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let heads = Heads {
            hidden: h,
            heads: self.shape.heads,
        };
        let path = attention_path(ctx, heads, packed);
        let gemm_scratch = match path {
            AttentionPath::Gemm(batch, chunk) => {
                let elems = batch.scratch_elems(chunk);
                let vt = ws.get(ctx, "attention v^T", elems).await?;
                let scores = ws.get(ctx, "attention scores", elems).await?;
                Some([vt, scores])
            }
            _ => None,
        };
        for layer in &self.layers {
            out.push(
                layer
                    .layer_norm1
                    .record(ctx, x, rows, None, &normed)
                    .await?,
            );
            out.push(layer.qkv.record(ctx, &normed, rows, &qkv, false).await?);
            match (path, &gemm_scratch) {
                (AttentionPath::Flash(len, count), _) => {
                    out.push(attention_flash(ctx, heads, len, count, &qkv, &attn).await?);
                }
                (AttentionPath::Gemm(batch, chunk), Some(bufs)) => {
                    let scratch = Scratch {
                        vt: &bufs[0],
                        scores: &bufs[1],
                    };
                    attention_gemm(ctx, batch, chunk, &qkv, &scratch, &attn, out).await?;
                }
                _ => {
                    let n = packed.seqs.len();
                    let causal = packed.causal;
                    out.push(attention(ctx, heads, causal, &qkv, &table, n, max_len, &attn).await?);
                }
            }
            out.push(layer.out_proj.record(ctx, &attn, rows, x, true).await?);
            out.push(
                layer
                    .layer_norm2
                    .record(ctx, x, rows, None, &normed)
                    .await?,
            );
            let act = Some(self.shape.act);
            out.push(layer.fc1.record_act(ctx, &normed, rows, &mlp, act).await?);
            out.push(layer.fc2.record(ctx, &mlp, rows, x, true).await?);
        }
        Ok(())
    }
}

/// How one encoder call computes attention.
#[derive(Clone, Copy)]
enum AttentionPath {
    /// `attention_flash` over (length, count) sequences.
    Flash(usize, usize),
    /// `attention_gemm`, `chunk` sequences at a time.
    Gemm(Batch, usize),
    /// The fused kernel (any batch).
    Fused,
}

/// The attention path of `packed` on `ctx`: flash or GEMMs only where the
/// context asks for them (`GpuContext::attention_choice`) and the batch
/// allows: not causal, all sequences of one length back to back from row
/// 0, the head dim supported (flash) and one sequence's scores within a
/// binding (GEMMs).
fn attention_path(ctx: &GpuContext, heads: Heads, packed: &Packed<'_>) -> AttentionPath {
    let Some(len) = packed.seqs.first().map(|s| s.len()) else {
        return AttentionPath::Fused;
    };
    let uniform = packed
        .seqs
        .iter()
        .enumerate()
        .all(|(i, s)| s.start == i * len && s.len() == len);
    if packed.causal || len == 0 || !uniform {
        return AttentionPath::Fused;
    }
    let count = packed.seqs.len();
    let choice = ctx.attention_choice();
    if choice == AttentionKernel::Flash && flash_supports(ctx, heads) {
        return AttentionPath::Flash(len, count);
    }
    if matches!(choice, AttentionKernel::Flash | AttentionKernel::Gemm) {
        let batch = Batch { heads, len, count };
        if let Some(chunk) = batch.chunk(ctx) {
            return AttentionPath::Gemm(batch, chunk);
        }
    }
    AttentionPath::Fused
}

/// The image geometry of a vision config; patch rows padded where the
/// cooperative GEMM runs.
fn patch_shape(ctx: &GpuContext, cfg: &VisionConfig) -> PatchShape {
    PatchShape {
        channels: cfg.num_channels,
        size: cfg.image_size,
        patch: cfg.patch_size,
        padded: ctx.coop().is_some(),
    }
}

/// `vision_model` plus `visual_projection` on the device.
pub(crate) struct GpuVision {
    class_embedding: wgpu::Buffer,
    /// Fixed at load, with the weight's padding: the cooperative GEMM may
    /// be given up later, and the patch rows must keep the weight's width.
    patch: PatchShape,
    patch_embedding: GpuLinear,
    position_embedding: wgpu::Buffer,
    pre_layrnorm: GpuNorm,
    encoder: GpuEncoder,
    post_layernorm: GpuNorm,
    projection: GpuLinear,
    cfg: VisionConfig,
}

impl GpuVision {
    pub(crate) async fn load(
        ctx: &GpuContext,
        vb: &VarBuilder<'_, '_>,
        cfg: &VisionConfig,
        projection: &VarBuilder<'_, '_>,
        proj_dim: usize,
    ) -> Result<Self, GpuError> {
        let emb = vb.pp("embeddings");
        let (h, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let shape = patch_shape(ctx, cfg);
        let conv = emb.pp("patch_embedding").get("weight", &[h, c, p, p])?;
        let conv = padded_weight(&conv, shape);
        let pos = emb
            .pp("position_embedding")
            .get("weight", &[cfg.num_positions(), h])?;
        Ok(Self {
            class_embedding: ctx
                .upload("class_embedding", &emb.get("class_embedding", &[h])?)
                .await?,
            patch: shape,
            patch_embedding: GpuLinear {
                w: ctx.upload("patch_embedding.weight", &conv).await?,
                b: None,
                in_dim: shape.row_width(),
                out_dim: h,
            },
            position_embedding: ctx.upload("vision position_embedding", &pos).await?,
            pre_layrnorm: GpuNorm::load(ctx, &vb.pp("pre_layrnorm"), h, cfg.layer_norm_eps).await?,
            encoder: GpuEncoder::load(ctx, &vb.pp("encoder"), encoder_shape_vision(cfg)).await?,
            post_layernorm: GpuNorm::load(ctx, &vb.pp("post_layernorm"), h, cfg.layer_norm_eps)
                .await?,
            projection: GpuLinear::load(ctx, projection, (h, proj_dim), false).await?,
            cfg: cfg.clone(),
        })
    }

    /// Images per submission: as many as fit one storage binding, at most `cap`.
    pub(crate) fn chunk(&self, ctx: &GpuContext, cap: usize) -> usize {
        let tokens = self.cfg.num_positions();
        let mut n = cap.max(1);
        while n > 1 && self.encoder.check_rows(ctx, n * tokens).is_err() {
            n /= 2;
        }
        n
    }

    /// Records the tower for `n` images already in `pixels`; the projected
    /// embeddings `[n, proj]` land in the returned buffer.
    pub(crate) async fn record(
        &self,
        ctx: &GpuContext,
        ws: &mut Workspace,
        pixels: &wgpu::Buffer,
        n: usize,
        out: &mut Vec<Dispatch>,
    ) -> Result<wgpu::Buffer, GpuError> {
        let (h, tokens) = (self.cfg.hidden_size, self.cfg.num_positions());
        let shape = self.patch;
        let patches_n = n * (tokens - 1);
        self.encoder.check_rows(ctx, n * tokens)?;
        let patches = ws
            .get(ctx, "patches", patches_n * self.patch_embedding.in_dim)
            .await?;
        let projected = ws.get(ctx, "projected patches", patches_n * h).await?;
        let x = ws.get(ctx, "hidden", n * tokens * h).await?;
        let normed = ws.get(ctx, "normed", n * tokens * h).await?;
        out.push(im2col(ctx, shape, n, pixels, &patches).await?);
        out.push(
            self.patch_embedding
                .record(ctx, &patches, patches_n, &projected, false)
                .await?,
        );
        let inputs = [&projected, &self.class_embedding, &self.position_embedding];
        out.push(patch_tokens(ctx, n, tokens, h, inputs, &normed).await?);
        out.push(
            self.pre_layrnorm
                .record(ctx, &normed, n * tokens, None, &x)
                .await?,
        );
        let seqs: Vec<Range<usize>> = (0..n).map(|i| i * tokens..(i + 1) * tokens).collect();
        let packed = Packed {
            rows: n * tokens,
            seqs: &seqs,
            causal: false,
        };
        self.encoder.record(ctx, ws, &x, &packed, out).await?;
        let class_rows: Vec<u32> = (0..n).map(|i| (i * tokens) as u32).collect();
        let gather = ws.holding(ctx, "pooled rows", &class_rows).await?;
        let pooled = ws.get(ctx, "pooled", n * h).await?;
        out.push(
            self.post_layernorm
                .record(ctx, &x, n, Some(&gather), &pooled)
                .await?,
        );
        let emb = ws
            .get(ctx, "image embeddings", n * self.projection.out_dim)
            .await?;
        out.push(self.projection.record(ctx, &pooled, n, &emb, false).await?);
        Ok(emb)
    }

    /// Values per image.
    pub(crate) fn pixels_per_image(&self) -> usize {
        self.cfg.num_channels * self.cfg.image_size * self.cfg.image_size
    }
}

fn encoder_shape_vision(cfg: &VisionConfig) -> EncoderShape {
    EncoderShape {
        hidden: cfg.hidden_size,
        intermediate: cfg.intermediate_size,
        layers: cfg.num_hidden_layers,
        heads: cfg.num_attention_heads,
        act: cfg.hidden_act,
        eps: cfg.layer_norm_eps,
    }
}

/// `text_model` plus `text_projection` on the device, the embedding tables
/// included (gathered there: `kernels/token_embed.rs`).
pub(crate) struct GpuText {
    embeddings: TokenTable,
    encoder: GpuEncoder,
    final_layer_norm: GpuNorm,
    projection: GpuLinear,
    cfg: TextConfig,
}

impl GpuText {
    pub(crate) async fn load(
        ctx: &GpuContext,
        vb: &VarBuilder<'_, '_>,
        cfg: &TextConfig,
        projection: &VarBuilder<'_, '_>,
        proj_dim: usize,
    ) -> Result<Self, GpuError> {
        let emb = vb.pp("embeddings");
        let h = cfg.hidden_size;
        let shape = EncoderShape {
            hidden: h,
            intermediate: cfg.intermediate_size,
            layers: cfg.num_hidden_layers,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            eps: cfg.layer_norm_eps,
        };
        Ok(Self {
            embeddings: Self::load_embeddings(ctx, &emb, cfg).await?,
            encoder: GpuEncoder::load(ctx, &vb.pp("encoder"), shape).await?,
            final_layer_norm: GpuNorm::load(ctx, &vb.pp("final_layer_norm"), h, cfg.layer_norm_eps)
                .await?,
            projection: GpuLinear::load(ctx, projection, (h, proj_dim), false).await?,
            cfg: cfg.clone(),
        })
    }

    /// The token table (as stored when it is f16 on an f16 device) and
    /// the position table, uploaded.
    async fn load_embeddings(
        ctx: &GpuContext,
        emb: &VarBuilder<'_, '_>,
        cfg: &TextConfig,
    ) -> Result<TokenTable, GpuError> {
        let h = cfg.hidden_size;
        let tokens = emb.pp("token_embedding");
        let shape = [cfg.vocab_size, h];
        let positions = emb
            .pp("position_embedding")
            .get("weight", &[cfg.max_position_embeddings, h])?;
        let part_rows = TokenTable::part_rows(ctx, h);
        let raw = match ctx.precision() {
            Precision::F16 => tokens.f16_bytes("weight", &shape)?,
            Precision::F32 => None,
        };
        match raw {
            Some(bytes) => {
                let table = TableValues::F16(bytes);
                TokenTable::upload(ctx, table, &positions, h, part_rows).await
            }
            None => {
                let values = tokens.get("weight", &shape)?;
                let table = TableValues::F32(&values);
                TokenTable::upload(ctx, table, &positions, h, part_rows).await
            }
        }
    }

    /// Records the tower for checked token sequences; the projected
    /// embeddings `[texts.len(), proj]` land in the returned buffer.
    pub(crate) async fn record(
        &self,
        ctx: &GpuContext,
        ws: &mut Workspace,
        texts: &[&[u32]],
        out: &mut Vec<Dispatch>,
    ) -> Result<wgpu::Buffer, GpuError> {
        let h = self.cfg.hidden_size;
        let mut seqs = Vec::with_capacity(texts.len());
        let mut pooled_rows = Vec::with_capacity(texts.len());
        let mut token_rows = Vec::new();
        let mut start = 0;
        for ids in texts {
            seqs.push(start..start + ids.len());
            let pos = super::pool_position(ids, self.cfg.pooling());
            pooled_rows.push(super::kernels::u32_of(start + pos, "pooled row")?);
            token_rows.extend(ids.iter().zip(0u32..).map(|(&id, p)| [id, p]));
            start += ids.len();
        }
        self.encoder.check_rows(ctx, start)?;
        let x = ws.get(ctx, "hidden", start * h).await?;
        let rows = ws.holding(ctx, "token rows", &token_rows).await?;
        out.extend(self.embeddings.record(ctx, &rows, start, &x).await?);
        let packed = Packed {
            rows: start,
            seqs: &seqs,
            causal: true,
        };
        self.encoder.record(ctx, ws, &x, &packed, out).await?;
        let gather = ws.holding(ctx, "pooled rows", &pooled_rows).await?;
        let pooled = ws.get(ctx, "pooled", texts.len() * h).await?;
        out.push(
            self.final_layer_norm
                .record(ctx, &x, texts.len(), Some(&gather), &pooled)
                .await?,
        );
        let emb = ws
            .get(
                ctx,
                "text embeddings",
                texts.len() * self.projection.out_dim,
            )
            .await?;
        out.push(
            self.projection
                .record(ctx, &pooled, texts.len(), &emb, false)
                .await?,
        );
        Ok(emb)
    }

    /// Rows of text per submission that fit one storage binding.
    pub(crate) fn fits(&self, ctx: &GpuContext, rows: usize) -> bool {
        self.encoder.check_rows(ctx, rows).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Precision;
    use super::super::kernels::testing::context;
    use super::*;

    /// Two calls may hold a slot's workspace at once (no lock is held
    /// while one is out); the first one back is kept, with its buffers.
    #[test]
    fn a_workspace_slot_lends_without_locking_and_keeps_the_first_back() {
        let Some(ctx) = context(Precision::F32) else {
            return;
        };
        let slot = WorkspaceSlot::default();
        let mut first = slot.take();
        let kept = pollster::block_on(first.get(ctx, "x", 4)).expect("buffer");
        let second = slot.take();
        assert!(
            second.buffers.is_empty(),
            "the second call got the first's buffers"
        );
        drop(first);
        drop(second);
        let again = slot.take();
        assert_eq!(
            again.buffers.get("x").map(wgpu::Buffer::size),
            Some(kept.size())
        );
    }
}
