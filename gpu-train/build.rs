//! Link fixes for libtorch from the PyPI wheel (design/toolchain.md):
//! - the final binaries get no rpath to `torch/lib`, so add one;
//! - `libtorch_cuda.so` is dropped by `--as-needed` because nothing names
//!   it, which makes `tch::Cuda::is_available()` false on a GPU machine:
//!   link it explicitly when the wheel has it.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
