//! The LLaVA-1.5 conversation format and prompt encoding, mirroring the
//! `chat_template.json` of llava-hf/llava-1.5-7b-hf
//! (`USER: <image>\n{text} ASSISTANT: {answer} USER: ... ASSISTANT:`) and
//! `LlavaProcessor`'s image-token expansion (one `<image>` becomes one token per
//! selected vision feature).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use tokenizers::Tokenizer;

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Rendered without a role prefix, as the HF template does.
    System,
    /// `USER:`.
    User,
    /// `ASSISTANT:`.
    Assistant,
}

/// One turn: images first, then text (the template's order).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Speaker.
    pub role: Role,
    /// `<image>` placeholders in this turn.
    pub images: usize,
    /// The text.
    pub text: String,
}

impl Message {
    /// A user turn with `images` images.
    pub fn user(text: &str, images: usize) -> Self {
        Message {
            role: Role::User,
            images,
            text: text.to_string(),
        }
    }

    /// An assistant turn.
    pub fn assistant(text: &str) -> Self {
        Message {
            role: Role::Assistant,
            images: 0,
            text: text.to_string(),
        }
    }
}

/// The placeholder text of one image.
pub const IMAGE_TOKEN: &str = "<image>";

/// Renders `messages`; `add_generation_prompt` appends `ASSISTANT:`.
pub fn render(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut s = String::new();
    for m in messages {
        match m.role {
            Role::System => {}
            Role::User => s.push_str("USER: "),
            Role::Assistant => s.push_str("ASSISTANT: "),
        }
        for _ in 0..m.images {
            s.push_str(IMAGE_TOKEN);
            s.push('\n');
        }
        s.push_str(&m.text);
        s.push(' ');
    }
    if add_generation_prompt {
        s.push_str("ASSISTANT:");
    }
    s
}

/// `tokenizer.json` plus the image-token bookkeeping of `LlavaProcessor`.
pub struct LlavaTokenizer {
    tok: Tokenizer,
    image_token_id: i64,
    tokens_per_image: usize,
}

impl LlavaTokenizer {
    /// Loads `path` (a `tokenizer.json`); `<image>` must be in its vocabulary as `image_token_id`.
    pub fn from_file(path: &Path, image_token_id: i64, tokens_per_image: usize) -> Result<Self> {
        let tok =
            Tokenizer::from_file(path).map_err(|e| anyhow!("loading {}: {e}", path.display()))?;
        match tok.token_to_id(IMAGE_TOKEN) {
            Some(id) if id as i64 == image_token_id => {}
            Some(id) => bail!(
                "{}: <image> has id {id}, config says {image_token_id}",
                path.display()
            ),
            None => bail!("{}: no <image> token", path.display()),
        }
        Ok(LlavaTokenizer {
            tok,
            image_token_id,
            tokens_per_image,
        })
    }

    /// Ids of `text` with special tokens (BOS), each `<image>` expanded.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self
            .tok
            .encode(text, true)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        let mut out = Vec::with_capacity(enc.get_ids().len());
        for &id in enc.get_ids() {
            let id = id as i64;
            let n = if id == self.image_token_id {
                self.tokens_per_image
            } else {
                1
            };
            out.extend(std::iter::repeat_n(id, n));
        }
        Ok(out)
    }

    /// Renders a conversation and encodes it, ready for generation.
    pub fn encode_chat(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<i64>> {
        self.encode(&render(messages, add_generation_prompt))
    }

    /// Text of generated ids, special tokens skipped.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids
            .iter()
            .map(|&i| u32::try_from(i).with_context(|| format!("token id {i} is negative")))
            .collect::<Result<_>>()?;
        self.tok
            .decode(&ids, true)
            .map_err(|e| anyhow!("decoding: {e}"))
    }

    /// The underlying tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_hf_template() {
        let conv = [
            Message::user("Describe it.", 1),
            Message::assistant("A dog on a red bench."),
            Message::user("Is there a cat? Answer in one word, please.", 0),
        ];
        assert_eq!(
            render(&conv, true),
            "USER: <image>\nDescribe it. ASSISTANT: A dog on a red bench. USER: Is there a cat? Answer in one word, please. ASSISTANT:"
        );
    }
}
