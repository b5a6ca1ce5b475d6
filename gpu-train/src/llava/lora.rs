//! LoRA (Hu et al. 2021) on the language model's linear layers, mirroring
//! PEFT's `peft/tuners/lora/layer.py` `Linear.forward`:
//! `y = base(x) + lora_B(lora_A(dropout(x))) * alpha / r`.
//! A and B live in the trainable `VarStore` under the base layer's path
//! (`language_model.layers.0.self_attn.q_proj.lora_A.weight`), so the optimizer and
//! the saved adapter see only them. One shared switch turns every adapter off
//! at once (the reference policy).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use regex::Regex;
use tch::Tensor;
use tch::nn::{Init, Path as VsPath};

use super::linear::Linear;
use super::weights::WeightBuilder;

/// The default target: every linear layer of the Llama decoder, none of the
/// vision tower or projector (PEFT module names of `LlavaForConditionalGeneration`).
pub const DEFAULT_TARGET: &str =
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)";

/// Which modules get adapters, with PEFT's `target_modules` semantics.
#[derive(Debug, Clone, PartialEq)]
pub enum LoraTarget {
    /// A regex that must match the whole PEFT module name
    /// (`model.language_model.layers.3.mlp.up_proj`).
    Regex(String),
    /// Module names or name suffixes (`["q_proj", "v_proj"]`).
    Names(Vec<String>),
}

/// LoRA hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank.
    pub r: i64,
    /// Scale numerator: adapters are scaled by `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter input while training.
    pub dropout: f64,
    /// Targeted modules; only the language model's linear layers are candidates.
    pub target: LoraTarget,
    /// rsLoRA scaling.
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            target: LoraTarget::Regex(DEFAULT_TARGET.into()),
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    /// The factor applied to `B A x`.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    fn check(&self) -> Result<()> {
        if self.r <= 0 {
            bail!("LoRA rank r must be positive, found {}", self.r);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("LoRA dropout must be in [0, 1), found {}", self.dropout);
        }
        Ok(())
    }
}

/// Compiled target matcher.
pub(crate) enum Matcher {
    Regex(Regex),
    Names(Vec<String>),
}

impl Matcher {
    fn matches(&self, module: &str) -> bool {
        match self {
            Matcher::Regex(re) => re.is_match(module),
            Matcher::Names(ns) => ns
                .iter()
                .any(|n| module == n || module.ends_with(&format!(".{n}"))),
        }
    }
}

/// What the model builder needs to attach adapters: the trainable store, the
/// config and the shared on/off switch.
pub struct LoraBuilder<'a> {
    root: VsPath<'a>,
    cfg: LoraConfig,
    matcher: Matcher,
    enabled: Arc<AtomicBool>,
}

impl<'a> LoraBuilder<'a> {
    /// Checks the config and compiles its target.
    pub fn new(root: VsPath<'a>, cfg: LoraConfig, enabled: Arc<AtomicBool>) -> Result<Self> {
        cfg.check()?;
        let matcher = match &cfg.target {
            LoraTarget::Regex(s) => Matcher::Regex(
                Regex::new(&format!("^(?:{s})$"))
                    .with_context(|| format!("LoRA target regex {s:?}"))?,
            ),
            LoraTarget::Names(ns) => Matcher::Names(ns.clone()),
        };
        Ok(LoraBuilder {
            root,
            cfg,
            matcher,
            enabled,
        })
    }

    /// PEFT's module name for a canonical prefix (`language_model.layers.0...`).
    pub fn peft_module_name(prefix: &str) -> String {
        format!("model.{prefix}")
    }
}

struct LoraPair {
    a: Tensor,
    b: Tensor,
    scaling: f64,
    dropout: f64,
}

/// A frozen linear layer with an optional adapter.
pub struct LoraLinear {
    base: Linear,
    lora: Option<LoraPair>,
    enabled: Arc<AtomicBool>,
}

impl LoraLinear {
    /// Loads the base layer; adds A and B when `lora` targets this module.
    pub fn new(
        vb: &WeightBuilder,
        in_dim: i64,
        out_dim: i64,
        lora: Option<&LoraBuilder>,
    ) -> Result<Self> {
        let base = Linear::new(vb, in_dim, out_dim, false)?;
        let enabled = lora
            .map(|l| l.enabled.clone())
            .unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
        let lora = match lora {
            Some(l)
                if l.matcher
                    .matches(&LoraBuilder::peft_module_name(vb.prefix())) =>
            {
                let mut p = l.root.clone();
                for seg in vb.prefix().split('.') {
                    p = p.sub(seg);
                }
                let r = l.cfg.r;
                // PEFT: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0.
                let bound = 1.0 / (in_dim as f64).sqrt();
                let a = (&p / "lora_A").f_var(
                    "weight",
                    &[r, in_dim],
                    Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                )?;
                let b = (&p / "lora_B").f_var("weight", &[out_dim, r], Init::Const(0.0))?;
                Some(LoraPair {
                    a,
                    b,
                    scaling: l.cfg.scaling(),
                    dropout: l.cfg.dropout,
                })
            }
            _ => None,
        };
        Ok(LoraLinear {
            base,
            lora,
            enabled,
        })
    }

    /// `base(x) + B A dropout(x) * scaling` when adapters are on.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.base.forward(x);
        match &self.lora {
            Some(l) if self.enabled.load(Ordering::Relaxed) => {
                // Adapters are kept in f32 (PEFT's autocast_adapter_dtype); the input is cast up.
                let h = x
                    .to_kind(l.a.kind())
                    .dropout(l.dropout, train)
                    .linear::<Tensor>(&l.a, None);
                let h = h.linear::<Tensor>(&l.b, None) * l.scaling;
                let kind = y.kind();
                y + h.to_kind(kind)
            }
            _ => y,
        }
    }
}
