//! Terminal colours for `fisao score`: ANSI escapes when stdout is a
//! terminal and `NO_COLOR` (https://no-color.org) is unset, or when
//! `--color always` asks for them.

use std::io::IsTerminal;

use super::ColorChoice;

/// The three labels and their colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Grounded: green.
    Good,
    /// Uncertain: yellow.
    Neutral,
    /// Likely hallucinated: red.
    Bad,
    /// Secondary text: dim.
    Dim,
}

/// Whether and how to colour.
pub struct Palette {
    enabled: bool,
}

impl Palette {
    /// Decides once for the whole run.
    pub fn new(choice: ColorChoice) -> Self {
        let enabled = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stdout().is_terminal()
            }
        };
        Self { enabled }
    }

    /// `text` in the tone's colour (unchanged when colours are off).
    pub fn paint(&self, text: &str, tone: Tone) -> String {
        if !self.enabled {
            return text.to_string();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Neutral => "33",
            Tone::Bad => "1;31",
            Tone::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}
