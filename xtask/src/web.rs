//! `cargo xtask web`: builds the highlighter page (the `fisao-web` crate for
//! wasm32, wasm-bindgen's JS glue, the static files of `web/www/`) and
//! serves it on 127.0.0.1. The browser tests (`web_tests`) use the same
//! build and server.

use crate::{cmd, setup};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The cargo profile the page is built with: dev (dependencies, GEMM
/// included, are optimised at opt-level 2 by the workspace; see docs/perf.md).
const PROFILE: &str = "dev";
const PROFILE_DIR: &str = "debug";

/// Whether the page is built with the WebGPU towers unless told otherwise.
pub const GPU_DEFAULT: bool = true;

/// Options of `cargo xtask web`.
struct Options {
    port: u16,
    models: Option<PathBuf>,
    gpu: bool,
}

/// Entry point: build, then serve until interrupted.
pub fn run(args: &[String]) -> Result<()> {
    let mut o = Options {
        port: 8787,
        models: None,
        gpu: GPU_DEFAULT,
    };
    let mut it = args.iter();
    let mut test = false;
    let mut screenshot = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--test" => test = true,
            "--screenshot" => {
                screenshot = Some(PathBuf::from(
                    it.next().context("--screenshot needs a path")?,
                ));
            }
            "--port" => {
                let v = it.next().context("--port needs a number")?;
                o.port = v.parse().with_context(|| format!("--port {v:?}"))?;
            }
            "--models" => {
                o.models = Some(PathBuf::from(it.next().context("--models needs a folder")?))
            }
            "--no-gpu" => o.gpu = false,
            other => bail!(
                "cargo xtask web: unknown option {other:?} (options: --port N, --models DIR, --no-gpu, --test, --screenshot PATH)"
            ),
        }
    }
    if test {
        return crate::web_tests::run(screenshot);
    }
    let dist = build(o.gpu)?;
    let mut mounts = vec![(String::from("/"), dist)];
    if let Some(m) = o.models {
        mounts.push((String::from("/models/"), m));
    }
    let listener = TcpListener::bind(("127.0.0.1", o.port))
        .with_context(|| format!("binding 127.0.0.1:{}", o.port))?;
    let addr = listener.local_addr()?;
    println!("xtask: serving the highlighter at http://{addr}/  (Ctrl-C stops)");
    if mounts.len() > 1 {
        println!("xtask: models under http://{addr}/models/");
    }
    serve(listener, mounts);
    Ok(())
}

/// Where the built page goes: `<target>/fisao-web/www`.
pub fn dist_dir() -> PathBuf {
    target_dir().join("fisao-web/www")
}

/// The cargo target folder (`CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| setup::workspace_root().join("target"))
}

/// Builds the crate for wasm32, runs wasm-bindgen, copies `web/www/`;
/// returns the folder to serve. `gpu` adds the WebGPU towers.
pub fn build(gpu: bool) -> Result<PathBuf> {
    let root = setup::workspace_root();
    let bindgen = crate::web_setup::wasm_bindgen()?;
    let mut cargo = cmd::cargo(&root);
    cargo.args([
        "build",
        "-p",
        "fisao-web",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
    ]);
    cargo.args(["--profile", PROFILE]);
    if gpu {
        cargo.args(["--features", "gpu"]);
    }
    cmd::run(&mut cargo)?;
    let wasm = target_dir()
        .join("wasm32-unknown-unknown")
        .join(PROFILE_DIR)
        .join("fisao_web.wasm");
    let dist = dist_dir();
    if dist.exists() {
        std::fs::remove_dir_all(&dist).with_context(|| format!("clearing {}", dist.display()))?;
    }
    std::fs::create_dir_all(dist.join("pkg"))?;
    cmd::run(
        Command::new(&bindgen)
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(dist.join("pkg"))
            .arg(&wasm),
    )?;
    let www = root.join("web/www");
    for entry in std::fs::read_dir(&www).with_context(|| format!("reading {}", www.display()))? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(
                &path,
                dist.join(path.file_name().expect("a file has a name")),
            )?;
        }
    }
    Ok(dist)
}

/// Serves files under the mounts (URL prefix, folder) forever, one thread
/// per connection. GET and HEAD only; `..` never leaves a mount.
pub fn serve(listener: TcpListener, mounts: Vec<(String, PathBuf)>) {
    let mounts = std::sync::Arc::new(mounts);
    for stream in listener.incoming().flatten() {
        let mounts = mounts.clone();
        std::thread::spawn(move || {
            if let Err(e) = handle(stream, &mounts) {
                eprintln!("xtask web: {e:#}");
            }
        });
    }
}

/// Starts [`serve`] on a free port in a background thread; returns its address.
pub fn serve_in_background(mounts: Vec<(String, PathBuf)>) -> Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || serve(listener, mounts));
    Ok(addr)
}

fn handle(stream: TcpStream, mounts: &[(String, PathBuf)]) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Skip the headers: nothing in them changes the answer.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut out = stream;
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut out,
            405,
            "text/plain",
            b"only GET and HEAD",
            method == "HEAD",
        );
    }
    match resolve(target, mounts) {
        Some(path) if path.is_file() => {
            let body =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            respond(&mut out, 200, content_type(&path), &body, method == "HEAD")
        }
        _ => respond(&mut out, 404, "text/plain", b"not found", method == "HEAD"),
    }
}

/// The file a URL path names: longest matching mount, percent-decoded,
/// `/` -> `index.html`; `None` for `..` or anything odd.
fn resolve(target: &str, mounts: &[(String, PathBuf)]) -> Option<PathBuf> {
    let path = percent_decode(target.split(['?', '#']).next()?)?;
    let (prefix, dir) = mounts
        .iter()
        .filter(|(p, _)| path.starts_with(p.as_str()))
        .max_by_key(|(p, _)| p.len())?;
    let mut rel = path[prefix.len()..].to_string();
    if rel.is_empty() || rel.ends_with('/') {
        rel.push_str("index.html");
    }
    let rel = Path::new(&rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dir.join(rel))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        _ => "application/octet-stream",
    }
}

fn respond(out: &mut TcpStream, status: u16, ctype: &str, body: &[u8], head: bool) -> Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head {
        out.write_all(body)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_mounts_only() {
        let mounts = vec![
            ("/".to_string(), PathBuf::from("/srv/www")),
            ("/models/".to_string(), PathBuf::from("/srv/m")),
        ];
        assert_eq!(
            resolve("/", &mounts),
            Some(PathBuf::from("/srv/www/index.html"))
        );
        assert_eq!(
            resolve("/pkg/a%20b.js?x=1", &mounts),
            Some(PathBuf::from("/srv/www/pkg/a b.js"))
        );
        assert_eq!(
            resolve("/models/tiny/config.json", &mounts),
            Some(PathBuf::from("/srv/m/tiny/config.json"))
        );
        assert_eq!(resolve("/../etc/passwd", &mounts), None);
        assert_eq!(resolve("/models/%2e%2e/x", &mounts), None);
        assert_eq!(resolve("/%zz", &mounts), None);
    }
}
