//! One rollout batch (TRL `PPOTrainer.step`'s first half, FiSAO method.md
//! sections 3, 6 and 7): sample responses from the policy, decode them with
//! byte offsets, find and score object mentions, map mention spans to token
//! indices (reward-core `align_mentions`), teacher-force the policy and the
//! adapters-off reference for per-token log-probs and values, and build the
//! token rewards with reward-core's `TokenRewarder`.
//!
//! Layout: row `i` of `input_ids` is its prompt, left-padded to the widest
//! prompt `P`, then its response, right-padded to the longest response `R`.
//! Log-prob column `j` predicts token `j + 1`, so response token `k` (column
//! `P + k`) has its log-prob and its state value at column `P - 1 + k`; every
//! per-token tensor here is that `[b, R]` slice.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use reward_core::align_mentions;
use reward_core::reward::{Response, RewardSummary, ScoredMention, TokenRewarder};
use tch::{Device, Kind, Tensor};
use tokenizers::Tokenizer;

use super::metrics::Timings;
use crate::llava::{Batch, LlavaModel, PaddingSide, SamplingConfig, generate, pad_batch};

/// A prompt ready for the model.
pub struct Prompt {
    /// Token ids, `<image>` runs expanded.
    pub ids: Vec<i64>,
    /// `[1, 3, H, W]` pixels when the prompt has an image.
    pub pixel_values: Option<Tensor>,
}

/// A decoded response, as the scorer sees it.
pub struct ResponseText<'a> {
    /// Generated token ids (EOS included when emitted).
    pub tokens: &'a [i64],
    /// Decoded text (special tokens skipped).
    pub text: &'a str,
    /// Byte range of each token in `text` (empty for special tokens).
    pub offsets: &'a [(usize, usize)],
}

/// Mentions and scores of one response.
#[derive(Clone, Debug, Default)]
pub struct Scored {
    /// Scored mentions at token positions.
    pub mentions: Vec<ScoredMention>,
    /// Whole-response verifier score (sentence mode).
    pub sentence_score: Option<f64>,
    /// Mentions of objects absent from the image's ground truth (when known).
    pub hallucinated: usize,
}

/// What the trainer trains on: prompts and a verifier.
pub trait Task {
    /// Number of prompts.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The prompt of sample `index`.
    fn prompt(&self, index: usize) -> Result<Prompt>;
    /// Scores the response to sample `index`.
    fn score(&self, index: usize, response: &ResponseText) -> Result<Scored>;
}

/// Decodes `ids` and gives each token's byte range in the decoded text, by
/// decoding growing prefixes (a token's text depends on its neighbours in
/// SentencePiece, so single-token decoding would misplace spaces). A token
/// that adds no text (a special token, half of a UTF-8 character) gets an
/// empty range at the current end.
pub fn decode_with_offsets(tok: &Tokenizer, ids: &[i64]) -> Result<(String, Vec<(usize, usize)>)> {
    let ids: Vec<u32> = ids
        .iter()
        .map(|&i| u32::try_from(i).map_err(|_| anyhow!("token id {i} is negative")))
        .collect::<Result<_>>()?;
    let decode = |n: usize| {
        tok.decode(&ids[..n], true)
            .map_err(|e| anyhow!("decoding: {e}"))
    };
    let text = decode(ids.len())?;
    let mut offsets = Vec::with_capacity(ids.len());
    let mut prev = 0usize;
    for n in 1..=ids.len() {
        let prefix = decode(n)?;
        // Clamp to a prefix of the final text: a partial UTF-8 sequence decodes
        // to U+FFFD until its last byte arrives.
        let common = prefix
            .bytes()
            .zip(text.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let end = common.max(prev).min(text.len());
        offsets.push((prev, end));
        prev = end;
    }
    Ok((text, offsets))
}

/// A collected batch: everything the PPO epochs need.
pub struct Rollout {
    /// `[b, P + R]` prompt + response ids.
    pub input_ids: Tensor,
    /// `[b, P + R]` 1 for real tokens.
    pub attention_mask: Tensor,
    /// `[b, 3, H, W]` when prompts have images.
    pub pixel_values: Option<Tensor>,
    /// Prompt width `P`.
    pub prompt_width: i64,
    /// `[b, R]` bool: response tokens.
    pub mask: Tensor,
    /// `[b, R]` policy log-probs at sampling time.
    pub logprobs: Tensor,
    /// `[b, R]` adapters-off reference log-probs.
    pub ref_logprobs: Tensor,
    /// `[b, R]` value estimates at sampling time.
    pub values: Tensor,
    /// `[b, R]` token rewards.
    pub rewards: Tensor,
    /// Per-response reward totals.
    pub summaries: Vec<RewardSummary>,
    /// Ground-truth hallucinated mentions (when the task knows).
    pub hallucinated: usize,
    /// Response lengths in tokens.
    pub lengths: Vec<usize>,
    /// Decoded responses.
    pub texts: Vec<String>,
}

/// Generates, scores and evaluates one batch of samples.
pub fn collect(
    model: &LlavaModel,
    tokenizer: &Tokenizer,
    task: &dyn Task,
    indices: &[usize],
    sampling: &SamplingConfig,
    rewarder: &TokenRewarder,
    timings: &mut Timings,
) -> Result<Rollout> {
    let t0 = Instant::now();
    let prompts: Vec<Prompt> = indices
        .iter()
        .map(|&i| task.prompt(i))
        .collect::<Result<_>>()?;
    let ids: Vec<Vec<i64>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let pixels: Vec<&Tensor> = prompts
        .iter()
        .filter_map(|p| p.pixel_values.as_ref())
        .collect();
    let pixel_values = match pixels.len() {
        0 => None,
        n if n == prompts.len() => Some(Tensor::cat(&pixels, 0)),
        n => bail!(
            "{n} of {} prompts have an image: a batch must be all-image or all-text",
            prompts.len()
        ),
    };
    let responses = generate(model, &ids, pixel_values.as_ref(), sampling)?;
    if responses.iter().any(Vec::is_empty) {
        bail!("the policy generated an empty response");
    }
    timings.generation += t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let dev = model.device();
    let (prompt_ids, prompt_mask) = pad_batch(&ids, sampling.pad_token_id, PaddingSide::Left, dev);
    let (resp_ids, resp_mask) =
        pad_batch(&responses, sampling.pad_token_id, PaddingSide::Right, dev);
    let input_ids = Tensor::cat(&[&prompt_ids, &resp_ids], 1);
    let attention_mask = Tensor::cat(&[&prompt_mask, &resp_mask], 1);
    let (p_width, r_width) = (prompt_ids.size()[1], resp_ids.size()[1]);
    let batch = Batch {
        input_ids: &input_ids,
        attention_mask: Some(&attention_mask),
        pixel_values: pixel_values.as_ref(),
    };
    let (logprobs, values, ref_logprobs) = tch::no_grad(|| -> Result<_> {
        let (lp, v) = model.token_logprobs(&batch, false)?;
        let v = v.context("the policy has no value head (LoadOptions::value_head)")?;
        let (rlp, _) = model.with_adapters_disabled(|m| m.token_logprobs(&batch, false))?;
        let slice = |t: &Tensor| t.narrow(1, p_width - 1, r_width).to_kind(Kind::Float);
        Ok((slice(&lp), slice(&v), slice(&rlp)))
    })?;
    timings.reference += t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let lp_rows = Vec::<Vec<f64>>::try_from(logprobs.to_device(Device::Cpu).to_kind(Kind::Double))?;
    let ref_rows =
        Vec::<Vec<f64>>::try_from(ref_logprobs.to_device(Device::Cpu).to_kind(Kind::Double))?;
    let mut rewards = vec![0.0f64; (indices.len() as i64 * r_width) as usize];
    let (mut summaries, mut texts, mut lengths, mut hallucinated) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    for (row, (&index, resp)) in indices.iter().zip(&responses).enumerate() {
        let (text, offsets) = decode_with_offsets(tokenizer, resp)?;
        let scored = task.score(
            index,
            &ResponseText {
                tokens: resp,
                text: &text,
                offsets: &offsets,
            },
        )?;
        let n = resp.len();
        let response = Response {
            len: n,
            mentions: &scored.mentions,
            sentence_score: scored.sentence_score,
            policy_logprobs: &lp_rows[row][..n],
            ref_logprobs: &ref_rows[row][..n],
        };
        let r = rewarder
            .rewards(&response)
            .map_err(|e| anyhow!("sample {index}: {e}"))?;
        let start = row * r_width as usize;
        rewards[start..start + n].copy_from_slice(&r.rewards);
        summaries.push(r.summary);
        hallucinated += scored.hallucinated;
        lengths.push(n);
        texts.push(text);
    }
    let rewards = Tensor::from_slice(&rewards)
        .view([indices.len() as i64, r_width])
        .to_kind(Kind::Float)
        .to(dev);
    timings.scoring += t2.elapsed().as_secs_f64();
    Ok(Rollout {
        mask: resp_mask.ne(0),
        input_ids,
        attention_mask,
        pixel_values,
        prompt_width: p_width,
        logprobs,
        ref_logprobs,
        values,
        rewards,
        summaries,
        hallucinated,
        lengths,
        texts,
    })
}

/// Scored mentions of a response: mentions found in `text` by `find`, aligned
/// to tokens through `offsets`, each scored by `score(mention_text)`.
/// Mentions no token covers (cannot happen for a decoded response) are dropped.
pub fn score_mentions(
    response: &ResponseText,
    mentions: &[reward_core::Mention],
    mut score: impl FnMut(&str) -> Result<f64>,
) -> Result<Vec<ScoredMention>> {
    let aligned = align_mentions(mentions, response.offsets)
        .map_err(|e| anyhow!("aligning mentions: {e}"))?;
    let mut out = Vec::with_capacity(aligned.len());
    for a in aligned {
        let text = a
            .mention
            .text(response.text)
            .context("mention outside the response text")?;
        let s = score(text)?;
        if let Some(m) = a.scored(s) {
            out.push(m);
        }
    }
    Ok(out)
}
