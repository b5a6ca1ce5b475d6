//! METEOR 1.5 through its reference implementation (`meteor-1.5.jar`, Denkowski
//! & Lavie 2014), driven the way pycocoevalcap 1.2's `meteor/meteor.py` does:
//! `java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm`, one `SCORE ||| refs
//! ||| hypothesis` line per image, then one `EVAL ||| stats...` line that
//! returns the per-image scores and the corpus score.
//!
//! Only with `std`. When Java or the jar is missing the result is
//! [`Meteor::Unavailable`] with the reason, never a made-up number.

use std::format;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::string::String;
use std::string::ToString;
use std::vec::Vec;

use super::Meteor;
use crate::metrics::error::{EvalError, EvalErrorKind};

/// Where to find Java and the METEOR jar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeteorConfig {
    /// The `java` executable.
    pub java: PathBuf,
    /// `meteor-1.5.jar`; its folder must hold `data/paraphrase-en.gz`
    /// (pycocoevalcap's `meteor/` folder does).
    pub jar: PathBuf,
}

impl MeteorConfig {
    /// `$FISAO_METEOR_JAR`, else the jar of pycocoevalcap in the fixture venv
    /// (`~/.cache/fisao-rs/venv-fixtures/lib/python3.*/site-packages/pycocoevalcap/meteor/`),
    /// with `$JAVA` or `java` from `PATH`. `None` if no jar is found.
    pub fn discover() -> Option<Self> {
        let java = std::env::var_os("JAVA").map_or_else(|| PathBuf::from("java"), PathBuf::from);
        if let Some(jar) = std::env::var_os("FISAO_METEOR_JAR") {
            return Some(Self {
                java,
                jar: PathBuf::from(jar),
            });
        }
        let home = std::env::var_os("HOME")?;
        let lib = Path::new(&home).join(".cache/fisao-rs/venv-fixtures/lib");
        for entry in std::fs::read_dir(lib).ok()?.flatten() {
            let jar = entry
                .path()
                .join("site-packages/pycocoevalcap/meteor/meteor-1.5.jar");
            if jar.is_file() {
                return Some(Self { java, jar });
            }
        }
        None
    }
}

/// METEOR per item and for the corpus, or why it could not run.
pub fn meteor(config: Option<&MeteorConfig>, items: &[(String, Vec<String>)]) -> Meteor {
    let Some(config) = config else {
        return Meteor::Unavailable(String::from(
            "meteor-1.5.jar not found (set FISAO_METEOR_JAR or install pycocoevalcap 1.2)",
        ));
    };
    if !config.jar.is_file() {
        return Meteor::Unavailable(format!("{} does not exist", config.jar.display()));
    }
    match run(config, items) {
        Ok((corpus, per_item)) => Meteor::Score { corpus, per_item },
        Err(e) => Meteor::Unavailable(e.to_string()),
    }
}

fn run(
    config: &MeteorConfig,
    items: &[(String, Vec<String>)],
) -> Result<(f64, Vec<f64>), EvalError> {
    let dir = config.jar.parent().unwrap_or(Path::new("."));
    let mut child = Command::new(&config.java)
        .args(["-jar", "-Xmx2G"])
        .arg(&config.jar)
        .args(["-", "-", "-stdio", "-l", "en", "-norm"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io(format!("could not start {}: {e}", config.java.display())))?;
    let result = talk(&mut child, items);
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The SCORE/EVAL exchange of pycocoevalcap's `Meteor.compute_score`.
fn talk(
    child: &mut std::process::Child,
    items: &[(String, Vec<String>)],
) -> Result<(f64, Vec<f64>), EvalError> {
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io(String::from("no stdin")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io(String::from("no stdout")))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut next_line = || -> Result<String, EvalError> {
        match lines.next() {
            Some(Ok(l)) => Ok(l),
            _ => Err(io(String::from("METEOR closed its output early"))),
        }
    };
    let mut eval = String::from("EVAL");
    for (hyp, refs) in items {
        let hyp = hyp.replace("|||", "").replace("  ", " ");
        let line = format!("SCORE ||| {} ||| {}\n", refs.join(" ||| "), hyp);
        stdin
            .write_all(line.as_bytes())
            .map_err(|e| io(format!("METEOR stdin: {e}")))?;
        stdin
            .flush()
            .map_err(|e| io(format!("METEOR stdin: {e}")))?;
        eval.push_str(" ||| ");
        eval.push_str(next_line()?.trim());
    }
    eval.push('\n');
    stdin
        .write_all(eval.as_bytes())
        .map_err(|e| io(format!("METEOR stdin: {e}")))?;
    stdin
        .flush()
        .map_err(|e| io(format!("METEOR stdin: {e}")))?;
    let mut per_item = Vec::with_capacity(items.len());
    for _ in items {
        per_item.push(number(&next_line()?)?);
    }
    Ok((number(&next_line()?)?, per_item))
}

fn number(line: &str) -> Result<f64, EvalError> {
    line.trim().parse().map_err(|_| {
        io(format!(
            "METEOR printed {line:?} where a score was expected"
        ))
    })
}

fn io(msg: String) -> EvalError {
    EvalError::new(EvalErrorKind::Io, msg)
}
