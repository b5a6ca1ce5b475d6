//! The GPU context: adapter, device, queue, the pipeline cache, buffer
//! upload and readback, and the fault plumbing (errors, device loss, timeouts).
//!
//! Follows the pattern of wgpu's own compute examples: one context built once
//! and passed by reference. Limits are the WebGPU defaults
//! (`Limits::default()`), which every browser grants, so what runs here runs
//! under WebGPU in the browser too. Everything is async; native builds get
//! blocking wrappers (pollster) in [`crate::gpu`]'s public API.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context as TaskContext, Poll, Waker};
use std::sync::Mutex;

use super::error::GpuError;
use super::kernels::coop_dialect::CoopDialect;
use super::kernels::matmul_coop::{BATCHED_TILE, COOP_TILES, CoopTile};

/// Element type of weights and activations on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    /// f32 storage and arithmetic (every adapter).
    F32,
    /// f16 storage and arithmetic, f32 accumulation in reductions and GEMMs
    /// (adapters with `shader-f16`).
    F16,
}

impl Precision {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }
}

/// How to build a [`GpuContext`].
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Use f16 when the adapter has `shader-f16` (else f32); `Some` forces one
    /// (forcing f16 on an adapter without it is an error).
    pub precision: Option<Precision>,
    /// Longest wait for one submission before giving up with
    /// [`GpuError::Timeout`] (native only; browsers cannot block).
    pub timeout: core::time::Duration,
    /// Prefer a software adapter (lavapipe, SwiftShader): for tests.
    pub force_fallback_adapter: bool,
    /// Profiling (native only): submit and wait for every kernel on its own
    /// and add its wall time to [`GpuContext::profile`]. Far slower than
    /// the normal one-submission path; for finding where time goes.
    pub profile: bool,
    /// Run the f16 GEMMs on cooperative matrices (tensor cores) where the
    /// adapter offers them (see [`GpuContext::gemm_kernel`]); `false`
    /// keeps the portable tiled kernel everywhere (for A/B comparisons).
    pub cooperative_matrix: bool,
    /// How the image tower computes attention (see [`AttentionKernel`]).
    pub attention: AttentionKernel,
    /// Block shape of the cooperative GEMM of the linear layers (`None`:
    /// the first of [`crate::gpu::COOP_TILES`]); for tuning runs. The
    /// attention products use [`Self::coop_batched_tile`].
    pub coop_tile: Option<CoopTile>,
    /// Block shape of the attention products' cooperative GEMM (`None`:
    /// [`crate::gpu::BATCHED_TILE`]); its k step must be 16 or 32 (the
    /// products pad k to 32). For tuning runs.
    pub coop_batched_tile: Option<CoopTile>,
    /// Read the attention's values in place (k-major) on the cooperative
    /// GEMM (the default); `false` copies them to `v^T` first, as the tiled
    /// kernel needs (for A/B runs: bench `FISAO_GPU_V_IN_PLACE=0`).
    pub values_in_place: bool,
    /// For tests of the tensor-core kernels on devices without tensor
    /// cores (lavapipe in CI): where the adapter has no cooperative
    /// matrices but f16, run the cooperative kernels anyway with their
    /// matrix operations written out in plain WGSL (`kernels/coop_dialect.rs`),
    /// so their tiling, staging and epilogue are checked everywhere. Block
    /// shapes whose workgroup memory exceeds the adapter's limit are
    /// refused by [`GpuContext::new`]. Orders of magnitude slower than
    /// either real path; never for production.
    pub emulate_cooperative_matrix: bool,
    /// naga's bounds checks on every kernel (the default). On Vulkan with
    /// `robustBufferAccess2` (NVIDIA, AMD, Mesa) wgpu already leaves buffer
    /// accesses to the hardware, so `false` only drops the clamps on
    /// workgroup and local array indices, e.g. the four scalar stores per
    /// staged `vec4` in the cooperative GEMM, which a clamp keeps the driver
    /// from merging. Unsafe in general (an out-of-range index is undefined
    /// behaviour on the device); for device A/B runs only
    /// (bench `FISAO_GPU_BOUNDS_CHECKS=0`).
    pub shader_bounds_checks: bool,
    /// Zero every kernel's workgroup memory at launch, as WebGPU requires
    /// (the default). The kernels write their workgroup tiles before
    /// reading them (the tests run them both ways against the CPU), so
    /// `false` only saves the clearing; for device A/B runs
    /// (bench `FISAO_GPU_ZERO_WORKGROUP=0`). Browsers always clear.
    pub zero_workgroup_memory: bool,
    /// Invocations that share one LayerNorm row: a power of two up to 256
    /// (the workgroup), default 32 (8 rows per workgroup); 256 gives one row
    /// per workgroup as before session 7. For device A/B runs
    /// (bench `FISAO_GPU_LN_LANES`).
    pub layernorm_lanes: u32,
    /// Kernel launches per command buffer: a forward pass goes to the queue
    /// in parts of this many, so the GPU starts on the first part while the
    /// host encodes the next. 0 (the default) submits each pass whole, as
    /// a GPU has timed so far; for device A/B runs (bench
    /// `FISAO_GPU_SUBMIT_EVERY`).
    pub dispatches_per_submission: usize,
}

/// Which attention kernels run on equal-length, non-causal batches (the
/// image tower); causal or ragged batches (the text tower) always take the
/// fused kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionKernel {
    /// [`AttentionKernel::Gemm`] where the device has cooperative
    /// matrices (tensor cores), [`AttentionKernel::Fused`] elsewhere.
    #[default]
    Auto,
    /// The fused flash-style kernel in plain WGSL
    /// (`kernels/attention.wgsl`) everywhere.
    Fused,
    /// Scores and context as two batched GEMMs around a row softmax
    /// (`kernels/attention_gemm.rs`) wherever the batch allows, tensor
    /// cores or not (for A/B runs and tests).
    Gemm,
    /// One flash-attention kernel on cooperative matrices
    /// (`kernels/attention_flash.rs`) where the device and head dim allow,
    /// else as [`AttentionKernel::Gemm`]. Correct, but slower than the
    /// GEMMs on an H200 so far (docs/perf.md), hence not the default.
    Flash,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            precision: None,
            timeout: core::time::Duration::from_secs(120),
            force_fallback_adapter: false,
            profile: false,
            cooperative_matrix: true,
            attention: AttentionKernel::Auto,
            coop_tile: None,
            coop_batched_tile: None,
            values_in_place: true,
            emulate_cooperative_matrix: false,
            shader_bounds_checks: true,
            zero_workgroup_memory: true,
            layernorm_lanes: 32,
            dispatches_per_submission: 0,
        }
    }
}

/// Counts of the host-side operations that cost the most, since the
/// context opened: what a forward pass does besides running kernels.
/// A warm call should add one submission and one readback per chunk and
/// no buffers, bind groups or pipelines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// Command buffers submitted to the queue.
    pub submissions: u64,
    /// Kernel launches recorded.
    pub dispatches: u64,
    /// Device buffers created (weights, activations, staging, uniforms).
    pub buffers_created: u64,
    /// Bind groups created (cached ones are reused).
    pub bind_groups_created: u64,
    /// Shader modules + compute pipelines compiled.
    pub pipelines_compiled: u64,
    /// Buffers mapped to read results back.
    pub readbacks: u64,
    /// Bytes written to the device through the queue.
    pub bytes_uploaded: u64,
    /// Host nanoseconds spent before the GPU could start on a forward
    /// pass: uploading its inputs, recording its kernels, encoding and
    /// submitting them. The GPU idles meanwhile (one submission per
    /// chunk), so this is serial overhead on top of the kernels' time;
    /// with [`GpuOptions::dispatches_per_submission`] the GPU starts after
    /// the first part instead, so part of it overlaps. Zero where there is
    /// no clock (wasm32).
    pub host_ns: u64,
    /// Host nanoseconds spent waiting for results to be read back: the
    /// kernels still running, the copy and the map (zero on wasm32).
    pub wait_ns: u64,
}

/// Readback buffers kept for reuse: one per pass in flight when a call
/// overlaps its passes ([`GpuContext::submit`]).
const STAGING_POOL: usize = 2;

/// A pass submitted by [`GpuContext::submit`], its result not read yet.
#[must_use = "finish the pass to read its result"]
pub(crate) struct InFlight {
    staging: wgpu::Buffer,
    bytes: u64,
    count: usize,
}

/// Wall time of a host-side stretch, for [`GpuStats::host_ns`] and
/// [`GpuStats::wait_ns`]; measures nothing on wasm32, where browsers
/// offer no monotonic clock to a `no_std`-style crate without `web-sys`.
pub(crate) struct Stopwatch {
    #[cfg(not(target_arch = "wasm32"))]
    start: std::time::Instant,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self {
            #[cfg(not(target_arch = "wasm32"))]
            start: std::time::Instant::now(),
        }
    }

    /// Nanoseconds since [`Stopwatch::start`] (0 on wasm32).
    pub(crate) fn nanos(&self) -> u64 {
        #[cfg(not(target_arch = "wasm32"))]
        return u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        #[cfg(target_arch = "wasm32")]
        0
    }
}

/// Wall time of one kernel class under [`GpuOptions::profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// Kernel name, plus the GEMM shape `m x n x k` for matmuls.
    pub kernel: String,
    /// Launches timed.
    pub launches: u64,
    /// Total wall seconds from submission to completion.
    pub seconds: f64,
}

/// A compiled kernel: the pipeline and the name it is profiled under.
#[derive(Clone)]
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    // Read by the per-kernel profile, which is native-only (it blocks on each submission).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub name: &'static str,
}

/// Key of a cached bind group: pipeline, storage buffers, params offset.
type BindKey = (wgpu::ComputePipeline, Vec<wgpu::Buffer>, u64);

/// Bind groups kept at most; past this the ones not used by the latest
/// run are dropped (a workspace that grew leaves stale ones behind).
const BIND_CACHE: usize = 4096;

/// What one run reuses from the last: the params arena, the bind groups
/// that point into it, and the readback staging buffer.
#[derive(Default)]
struct RunCache {
    arena: Option<wgpu::Buffer>,
    bind_groups: BTreeMap<BindKey, (wgpu::BindGroup, u64)>,
    runs: u64,
}

/// A device, its queue and the compiled pipelines: build once, pass by reference.
pub struct GpuContext {
    /// Dropped by hand in `Drop` (leaked after a timeout, see there).
    pub(crate) device: ManuallyDrop<wgpu::Device>,
    pub(crate) queue: ManuallyDrop<wgpu::Queue>,
    /// A wait gave up on this device: its submitted work may never finish.
    timed_out: AtomicBool,
    info: wgpu::AdapterInfo,
    precision: Precision,
    timeout: core::time::Duration,
    profile: bool,
    attention: AttentionKernel,
    coop_tile: CoopTile,
    batched_tile: CoopTile,
    values_in_place: bool,
    /// [`GpuOptions::shader_bounds_checks`], [`GpuOptions::zero_workgroup_memory`].
    bounds_checks: bool,
    zero_workgroup_memory: bool,
    layernorm_lanes: u32,
    /// [`GpuOptions::dispatches_per_submission`].
    submit_every: usize,
    /// The cooperative-matrix configuration the GEMMs use, if any.
    coop: Option<wgpu::CooperativeMatrixProperties>,
    /// Whether the cooperative kernels are emulated in plain WGSL
    /// ([`GpuOptions::emulate_cooperative_matrix`]).
    coop_emulated: bool,
    /// The workgroup memory the device was opened with (bytes).
    shared_limit: u32,
    /// Why the cooperative GEMM was given up after the device opened with
    /// it (its pipeline failed to compile); the tiled kernel runs instead.
    coop_failed: Mutex<Option<String>>,
    pipelines: Mutex<BTreeMap<String, Kernel>>,
    /// The first uncaptured error or device-loss message, if any.
    fault: Arc<Mutex<Option<GpuError>>>,
    /// Params arena and bind groups, reused across calls.
    cache: Mutex<RunCache>,
    /// Readback buffers, taken by a run and put back after it (a
    /// concurrent run makes its own rather than wait); up to
    /// [`STAGING_POOL`], so that a pass in flight and the next one each
    /// find one.
    staging: Mutex<Vec<wgpu::Buffer>>,
    stats: Mutex<GpuStats>,
    times: Mutex<BTreeMap<String, (u64, f64)>>,
}

impl GpuContext {
    /// Finds an adapter and opens a device with the WebGPU default limits.
    #[allow(
        clippy::await_holding_lock,
        reason = "natively wgpu's adapter and device requests are ready at once, never pending"
    )]
    pub async fn new_async(options: &GpuOptions) -> Result<Self, GpuError> {
        let lanes = options.layernorm_lanes;
        if !lanes.is_power_of_two() || lanes > super::kernels::WORKGROUP {
            return Err(GpuError::Input(format!(
                "GpuOptions::layernorm_lanes = {lanes}: expected a power of two up to {}",
                super::kernels::WORKGROUP
            )));
        }
        // Opening devices one at a time, on one instance per process:
        // drivers have raced on concurrent instance and device creation and
        // teardown (gfx-rs/wgpu#5930), and the tests open contexts from many
        // threads.
        #[cfg(not(target_arch = "wasm32"))]
        let _lifecycle = lifecycle();
        let instance = instance();
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: options.force_fallback_adapter,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let has_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let precision = match options.precision {
            Some(Precision::F16) if !has_f16 => {
                return Err(GpuError::RequestDevice(
                    "f16 was requested but the adapter has no shader-f16".into(),
                ));
            }
            Some(p) => p,
            None if has_f16 => Precision::F16,
            None => Precision::F32,
        };
        let mut features = match precision {
            Precision::F16 => wgpu::Features::SHADER_F16,
            Precision::F32 => wgpu::Features::empty(),
        };
        let mut limits = wgpu::Limits::default();
        let mut experimental = wgpu::ExperimentalFeatures::disabled();
        let coop_tile = options.coop_tile.unwrap_or(COOP_TILES[0]);
        let batched_tile = options.coop_batched_tile.unwrap_or(BATCHED_TILE);
        if 32 % batched_tile.kt != 0 {
            return Err(GpuError::Input(format!(
                "coop_batched_tile {}: the attention products pad k to 32, so its k step \
                 must be 16 or 32 (it is {})",
                batched_tile.name, batched_tile.kt
            )));
        }
        let mut coop = match options.cooperative_matrix && precision == Precision::F16 {
            true => coop_config(&adapter, &coop_tile, &batched_tile),
            false => None,
        };
        let coop_emulated = coop.is_none()
            && options.cooperative_matrix
            && options.emulate_cooperative_matrix
            && precision == Precision::F16;
        if coop_emulated {
            let available = adapter.limits().max_compute_workgroup_storage_size;
            let needed = coop_tile.shared_bytes().max(batched_tile.shared_bytes());
            if needed > available {
                return Err(GpuError::RequestDevice(format!(
                    "emulated cooperative GEMM {}: needs {needed} bytes of workgroup memory, \
                     the adapter has {available}",
                    coop_tile.name
                )));
            }
            // The flash kernel runs only if it fits too (`shared_limit`).
            limits.max_compute_workgroup_storage_size =
                coop_shared_bytes(&coop_tile, &batched_tile).min(available);
            coop = Some(EMULATED_COOP);
        } else if coop.is_some() {
            // Only the tensor-core path asks for more than the WebGPU
            // defaults; every other device opens exactly as before.
            features |= coop_features(&coop_tile, &batched_tile);
            limits.max_compute_workgroup_storage_size =
                coop_shared_bytes(&coop_tile, &batched_tile);
            // SAFETY: wgpu marks cooperative matrices experimental (its
            // implementation may still have bugs). The one kernel using
            // them keeps every load and store inside its workgroup arrays
            // (tile offsets below BM/BN x LDS) and storage reads bounds
            // checked, and `tests` compare it with the CPU reference.
            experimental = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let shared_limit = limits.max_compute_workgroup_storage_size;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("fisao clip"),
                required_features: features,
                required_limits: limits,
                experimental_features: experimental,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        let fault = Arc::new(Mutex::new(None));
        install_fault_handlers(&device, &fault);
        Ok(Self {
            device: ManuallyDrop::new(device),
            queue: ManuallyDrop::new(queue),
            timed_out: AtomicBool::new(false),
            info: adapter.get_info(),
            precision,
            timeout: options.timeout,
            profile: options.profile,
            attention: options.attention,
            coop_tile,
            batched_tile,
            values_in_place: options.values_in_place,
            bounds_checks: options.shader_bounds_checks,
            zero_workgroup_memory: options.zero_workgroup_memory,
            layernorm_lanes: options.layernorm_lanes,
            submit_every: options.dispatches_per_submission,
            coop,
            coop_emulated,
            shared_limit,
            coop_failed: Mutex::new(None),
            pipelines: Mutex::new(BTreeMap::new()),
            fault,
            cache: Mutex::default(),
            staging: Mutex::new(Vec::new()),
            stats: Mutex::default(),
            times: Mutex::default(),
        })
    }

    /// Blocking [`GpuContext::new_async`] (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(options: &GpuOptions) -> Result<Self, GpuError> {
        pollster::block_on(Self::new_async(options))
    }

    /// The element type used on this device.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The cooperative-matrix shape the GEMMs run on, if any (none once
    /// its pipeline has failed to compile).
    pub(crate) fn coop(&self) -> Option<&wgpu::CooperativeMatrixProperties> {
        let failed = self.coop_failed.lock().map_or(true, |f| f.is_some());
        self.coop.as_ref().filter(|_| !failed)
    }

    /// How the cooperative kernels spell their matrix operations here.
    pub(crate) fn coop_dialect(&self) -> CoopDialect {
        match self.coop_emulated {
            true => CoopDialect::Emulated,
            false => CoopDialect::Hardware,
        }
    }

    /// The workgroup memory a kernel may declare on this device (bytes).
    pub(crate) fn shared_limit(&self) -> u32 {
        self.shared_limit
    }

    /// Gives up the cooperative GEMM for the rest of this context's life
    /// (the tiled kernel takes over); `why` shows in [`Self::gemm_kernel`].
    pub(crate) fn coop_failed(&self, why: String) {
        if let Ok(mut f) = self.coop_failed.lock() {
            f.get_or_insert(why);
        }
    }

    /// Which GEMM kernel the tower's matmuls use on this device:
    /// `"coop-16x16x16-f16-f32 <tile> (attention products <tile>)"` (tensor
    /// cores, for GEMMs whose k is a multiple of the tile's k step; `coop-emulated-...`
    /// under [`GpuOptions::emulate_cooperative_matrix`]), `"tiled-f32"` (the portable kernel), or
    /// `"tiled-f32 (coop failed: <why>)"` when the device offered
    /// cooperative matrices but their kernel did not compile.
    pub fn gemm_kernel(&self) -> String {
        let failed = self.coop_failed.lock().ok().and_then(|f| f.clone());
        match (self.coop, failed) {
            (Some(_), None) => {
                let kind = match self.coop_emulated {
                    true => "coop-emulated",
                    false => "coop",
                };
                let (tile, batched) = (self.coop_tile.name, self.batched_tile.name);
                format!("{kind}-16x16x16-f16-f32 {tile} (attention products {batched})")
            }
            (Some(_), Some(why)) => format!("tiled-f32 (coop failed: {why})"),
            (None, _) => "tiled-f32".into(),
        }
    }

    /// The cooperative GEMM's block shape (used only where [`Self::coop`]).
    pub(crate) fn coop_tile(&self) -> CoopTile {
        self.coop_tile
    }

    /// Invocations per LayerNorm row ([`GpuOptions::layernorm_lanes`]).
    pub(crate) fn layernorm_lanes(&self) -> u32 {
        self.layernorm_lanes
    }

    /// Whether the attention reads its values in place where it can
    /// ([`GpuOptions::values_in_place`]).
    pub(crate) fn values_in_place(&self) -> bool {
        self.values_in_place
    }

    /// The attention products' block shape (used only where [`Self::coop`]).
    pub(crate) fn batched_tile(&self) -> CoopTile {
        self.batched_tile
    }

    /// Which attention the image tower runs on this context (for head dims
    /// the kernel supports): `"flash"`, `"gemm"` or `"fused"`.
    pub fn attention_kernel(&self) -> &'static str {
        match self.attention_choice() {
            AttentionKernel::Flash => "flash",
            AttentionKernel::Gemm => "gemm",
            _ => "fused",
        }
    }

    /// [`GpuOptions::attention`] resolved: `Auto` becomes `Gemm` where the
    /// GEMMs run on cooperative matrices and `Fused` elsewhere; `Flash`
    /// without cooperative matrices becomes `Gemm`.
    pub(crate) fn attention_choice(&self) -> AttentionKernel {
        match (self.attention, self.coop().is_some()) {
            (AttentionKernel::Auto, true) => AttentionKernel::Gemm,
            (AttentionKernel::Auto, false) => AttentionKernel::Fused,
            (AttentionKernel::Flash, false) => AttentionKernel::Gemm,
            (chosen, _) => chosen,
        }
    }

    /// The adapter: name, backend, device type (lavapipe reports `Cpu`).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// The operation counts so far (see [`GpuStats`]).
    pub fn stats(&self) -> GpuStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Per-kernel wall times so far, slowest first; empty unless the
    /// context was opened with [`GpuOptions::profile`].
    pub fn profile(&self) -> Vec<KernelTime> {
        let Ok(times) = self.times.lock() else {
            return Vec::new();
        };
        let mut out: Vec<KernelTime> = times
            .iter()
            .map(|(k, &(launches, seconds))| KernelTime {
                kernel: k.clone(),
                launches,
                seconds,
            })
            .collect();
        out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        out
    }

    /// Adds the time since `since` to [`GpuStats::host_ns`]: callers time
    /// the recording of a forward pass, [`GpuContext::submit`] its encoding.
    pub(crate) fn charge_host(&self, since: &Stopwatch) {
        let ns = since.nanos();
        self.count(|s| s.host_ns += ns);
    }

    fn count(&self, f: impl FnOnce(&mut GpuStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// The error to report for `e`: a lost device explains most failures
    /// that follow it, but wgpu only runs the device-lost callback while
    /// polling, so poll once (without waiting) and prefer the loss.
    fn settle(&self, e: GpuError) -> GpuError {
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Poll);
        match self.fault.lock().ok().and_then(|f| match &*f {
            Some(GpuError::DeviceLost(m)) => Some(m.clone()),
            _ => None,
        }) {
            Some(lost) => GpuError::DeviceLost(format!("{lost} (then: {e})")),
            None => e,
        }
    }

    /// The recorded fault (device lost or an uncaptured error), if any.
    pub(crate) fn check_fault(&self) -> Result<(), GpuError> {
        let mut slot = self.fault.lock().map_err(|_| poisoned())?;
        match slot.take() {
            Some(e) => {
                // Keep device loss sticky: every later call fails the same way.
                if let GpuError::DeviceLost(m) = &e {
                    *slot = Some(GpuError::DeviceLost(m.clone()));
                }
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// The compute pipeline for `entry` of `body` at this precision, with
    /// `consts` prepended as WGSL `const`s; compiled once, then cached.
    pub(crate) async fn pipeline(
        &self,
        name: &'static str,
        body: &str,
        consts: &[(&str, u32)],
    ) -> Result<Kernel, GpuError> {
        self.pipeline_generated(name, consts, || body.to_string())
            .await
    }

    /// [`Self::pipeline`] for a kernel whose WGSL is generated: `body` runs
    /// only when the pipeline is not cached yet, so a warm call builds no
    /// source. `name` and `consts` must determine the body (they are the
    /// cache key).
    pub(crate) async fn pipeline_generated(
        &self,
        name: &'static str,
        consts: &[(&str, u32)],
        body: impl FnOnce() -> String,
    ) -> Result<Kernel, GpuError> {
        let key = format!("{name}/{:?}/{consts:?}", self.precision);
        if let Some(p) = self.pipelines.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(p.clone());
        }
        let source = shader_source(&body(), self.precision, consts);
        // Internal: a driver that refuses the compiled shader (the
        // experimental cooperative-matrix kernel may meet one) is an error
        // of this call, not an uncaptured fault that poisons later runs.
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        // naga's forced loop bounding (a 64-bit counter on every loop,
        // wgpu >= 25) is off: it keeps drivers from unrolling the kernels'
        // constant-trip loops, which spills the register tiles to memory
        // (gfx-rs/wgpu#7698 reports 100x). Bounds checks stay on unless the
        // options turn them off for an A/B run.
        let checks = wgpu::ShaderRuntimeChecks {
            force_loop_bounding: false,
            bounds_checks: self.bounds_checks,
            ..wgpu::ShaderRuntimeChecks::checked()
        };
        // SAFETY: with `force_loop_bounding` off the caller must not pass
        // infinite loops. Every loop in this crate's kernels (kernels/*.wgsl
        // and the generated ones) counts an unsigned index up by a positive
        // step to a bound taken from the params, and the bounds are sizes
        // checked on the host to fit u32 with room for one step (buffers are
        // far below 2^32 elements), so each terminates. With bounds checks
        // off (`GpuOptions::shader_bounds_checks`, documented as unsafe,
        // never the default) every index must be in range; the kernels'
        // indices are computed from host-checked shapes, and the tests run
        // them with checks on, where a clamped index gives wrong values.
        let compile = || {
            let module = unsafe { self.device.create_shader_module_trusted(descriptor, checks) };
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        zero_initialize_workgroup_memory: self.zero_workgroup_memory,
                        ..Default::default()
                    },
                    cache: None,
                })
        };
        let (pipeline, error) = self.scoped(wgpu::ErrorFilter::Internal, compile).await;
        if let Some(e) = error {
            return Err(GpuError::from_wgpu(e, &format!("compiling kernel {name}")));
        }
        self.count(|s| s.pipelines_compiled += 1);
        let pipeline = Kernel { pipeline, name };
        self.pipelines
            .lock()
            .map_err(|_| poisoned())?
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Runs `f` (no awaits inside) in a validation error scope within an
    /// `outer` one and returns what the scopes caught, the outer's first.
    /// Both scopes are popped before anything is awaited: a browser keeps
    /// one scope stack per device, so a second call made while this one
    /// awaits (another request to the page's worker) would otherwise push
    /// its scopes in between and this call's later pop would come out of
    /// order, which wgpu's web backend turns into a panic.
    async fn scoped<T>(
        &self,
        outer: wgpu::ErrorFilter,
        f: impl FnOnce() -> T,
    ) -> (T, Option<wgpu::Error>) {
        let outer = self.device.push_error_scope(outer);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let validation = validation.pop();
        let outer = outer.pop();
        let validation = validation.await;
        (value, outer.await.or(validation))
    }

    /// Checks that a storage buffer of `bytes` fits this device's limits.
    pub(crate) fn check_size(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let limits = self.device.limits();
        let binding = limits.max_storage_buffer_binding_size;
        let (limit, limit_name) = if binding < limits.max_buffer_size {
            (binding, "max_storage_buffer_binding_size")
        } else {
            (limits.max_buffer_size, "max_buffer_size")
        };
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: what.to_string(),
                bytes,
                limit,
                limit_name,
            });
        }
        Ok(())
    }

    /// A storage buffer of at least `bytes` (rounded up to 16, never empty).
    pub(crate) async fn storage(&self, what: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let bytes = bytes.max(16).next_multiple_of(16);
        self.check_size(what, bytes)?;
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        self.buffer(what, bytes, usage).await
    }

    /// A buffer of `bytes` with `usage`, inside an out-of-memory and a
    /// validation error scope so that a refused allocation is an error
    /// naming it rather than an uncaptured fault.
    pub(crate) async fn buffer(
        &self,
        what: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer, GpuError> {
        let create = || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let (buffer, error) = self.scoped(wgpu::ErrorFilter::OutOfMemory, create).await;
        self.count(|s| s.buffers_created += 1);
        if let Some(e) = error {
            let during = format!("allocating {what} ({bytes} bytes)");
            return Err(self.settle(GpuError::from_wgpu(e, &during)));
        }
        Ok(buffer)
    }

    /// Uploads f32 values as this context's element type into a new buffer.
    pub(crate) async fn upload(
        &self,
        what: &str,
        values: &[f32],
    ) -> Result<wgpu::Buffer, GpuError> {
        self.upload_bytes(what, &encode(values, self.precision))
            .await
    }

    /// Uploads bytes already in the device's layout (f16 weights as
    /// stored), padded to a multiple of 4.
    pub(crate) async fn upload_bytes(
        &self,
        what: &str,
        bytes: &[u8],
    ) -> Result<wgpu::Buffer, GpuError> {
        let buffer = self
            .storage(what, bytes.len().next_multiple_of(4) as u64)
            .await?;
        match bytes.len() % 4 {
            0 => self.write_bytes(&buffer, bytes),
            _ => {
                let mut padded = bytes.to_vec();
                padded.resize(bytes.len().next_multiple_of(4), 0);
                self.write_bytes(&buffer, &padded);
            }
        }
        Ok(buffer)
    }

    /// Uploads raw `u32` values (indices, sequence tables).
    #[cfg(test)]
    pub(crate) async fn upload_u32(
        &self,
        what: &str,
        values: &[u32],
    ) -> Result<wgpu::Buffer, GpuError> {
        let buffer = self.storage(what, (values.len() * 4) as u64).await?;
        self.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(values));
        Ok(buffer)
    }

    /// Writes f32 values (converted) into an existing buffer.
    pub(crate) fn write(&self, buffer: &wgpu::Buffer, values: &[f32]) {
        self.write_bytes(buffer, &encode(values, self.precision));
    }

    /// Writes raw bytes (a multiple of 4) at the start of `buffer`.
    pub(crate) fn write_bytes(&self, buffer: &wgpu::Buffer, bytes: &[u8]) {
        self.count(|s| s.bytes_uploaded += bytes.len() as u64);
        self.queue.write_buffer(buffer, 0, bytes);
    }

    /// Records `dispatches` into one compute pass, submits, and reads back
    /// `count` elements of `result`: one submission, one readback. The
    /// params arena, the bind groups and the staging buffer are reused
    /// from earlier runs.
    pub(crate) async fn run(
        &self,
        dispatches: &[Dispatch],
        result: &wgpu::Buffer,
        count: usize,
    ) -> Result<Vec<f32>, GpuError> {
        let pass = self.submit(dispatches, result, count).await?;
        self.finish(pass).await
    }

    /// The first half of [`GpuContext::run`]: submits the pass and the copy
    /// of `count` elements of `result` into a readback buffer, without
    /// waiting. A caller may record and submit its next pass before
    /// [`GpuContext::finish`]ing this one, so that the host's work on it
    /// overlaps this one's kernels: the queue runs passes in order, and a
    /// `write_buffer` into a buffer this pass still reads lands after it
    /// (WebGPU's queue ordering), so reusing the workspace is safe.
    pub(crate) async fn submit(
        &self,
        dispatches: &[Dispatch],
        result: &wgpu::Buffer,
        count: usize,
    ) -> Result<InFlight, GpuError> {
        self.check_fault()?;
        let host = Stopwatch::start();
        let bytes = (count as u64 * self.precision.size())
            .next_multiple_of(4)
            .max(4);
        let staging = self.take_staging(bytes).await?;
        let copy = Some((result, &staging, bytes));
        let submit = || match self.profile {
            true => self
                .run_profiled(dispatches)
                .and_then(|()| self.encode_and_submit(&[], copy)),
            false => self.encode_and_submit(dispatches, copy),
        };
        let (submitted, error) = self.scoped(wgpu::ErrorFilter::OutOfMemory, submit).await;
        submitted.map_err(|e| self.settle(e))?;
        if let Some(e) = error {
            return Err(self.settle(GpuError::from_wgpu(e, "running the kernels")));
        }
        self.charge_host(&host);
        Ok(InFlight {
            staging,
            bytes,
            count,
        })
    }

    /// The second half of [`GpuContext::run`]: waits for `pass` and reads
    /// its result back.
    pub(crate) async fn finish(&self, pass: InFlight) -> Result<Vec<f32>, GpuError> {
        let wait = Stopwatch::start();
        let data = self.map(&pass.staging, pass.bytes).await?;
        self.count(|s| s.wait_ns += wait.nanos());
        self.put_staging(pass.staging);
        self.check_fault()?;
        Ok(decode(&data, pass.count, self.precision))
    }

    /// A pooled readback buffer that is big enough, else a new one.
    async fn take_staging(&self, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let pooled = {
            let mut pool = self.staging.lock().map_err(|_| poisoned())?;
            let fits = pool.iter().position(|b| b.size() >= bytes);
            fits.map(|i| pool.swap_remove(i))
        };
        match pooled {
            Some(b) => Ok(b),
            None => {
                let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
                self.buffer("readback", bytes.next_power_of_two(), usage)
                    .await
            }
        }
    }

    /// Returns a readback buffer to the pool; past [`STAGING_POOL`] the
    /// smallest goes.
    fn put_staging(&self, staging: wgpu::Buffer) {
        if let Ok(mut pool) = self.staging.lock() {
            pool.push(staging);
            if pool.len() > STAGING_POOL {
                pool.sort_by_key(|b| core::cmp::Reverse(b.size()));
                pool.truncate(STAGING_POOL);
            }
        }
    }

    /// Writes the params of `dispatches` into the arena, records them into
    /// compute passes (plus the result copy) and submits them: as one
    /// command buffer, or in parts ([`GpuOptions::dispatches_per_submission`]).
    /// The params' write lands with the first part. Holds the cache
    /// lock from the params write to the submit (never across an await):
    /// `write_buffer` lands at the NEXT submit on the queue, so another
    /// thread's params written in between would be flushed into this
    /// submission's arena (seen on an H200: wrong results, then device lost).
    fn encode_and_submit(
        &self,
        dispatches: &[Dispatch],
        copy: Option<(&wgpu::Buffer, &wgpu::Buffer, u64)>,
    ) -> Result<(), GpuError> {
        let stride = u64::from(self.device.limits().min_uniform_buffer_offset_alignment).max(256);
        let need = (dispatches.len() as u64 * stride).max(stride);
        let mut cache = self.cache.lock().map_err(|_| poisoned())?;
        if cache.arena.as_ref().is_none_or(|b| b.size() < need) {
            // Bind groups point into the old arena: drop them with it.
            cache.bind_groups.clear();
            cache.arena = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel params"),
                size: need.next_power_of_two(),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            self.count(|s| s.buffers_created += 1);
        }
        let arena = cache
            .arena
            .clone()
            .ok_or_else(|| GpuError::Device("no params buffer".into()))?;
        if !dispatches.is_empty() {
            let mut blob = alloc::vec![0u8; need as usize];
            for (i, d) in dispatches.iter().enumerate() {
                let at = i * stride as usize;
                blob[at..at + d.params.len()].copy_from_slice(&d.params);
            }
            self.write_bytes(&arena, &blob);
        }
        cache.runs += 1;
        let run = cache.runs;
        let groups: Vec<wgpu::BindGroup> = dispatches
            .iter()
            .enumerate()
            .map(|(i, d)| self.bind_group(&mut cache, d, &arena, i as u64 * stride, run))
            .collect();
        if cache.bind_groups.len() > BIND_CACHE {
            cache.bind_groups.retain(|_, (_, used)| *used == run);
        }
        let per = match self.submit_every {
            0 => dispatches.len().max(1),
            n => n,
        };
        let parts = dispatches.len().div_ceil(per).max(1);
        for part in 0..parts {
            let range = part * per..((part + 1) * per).min(dispatches.len());
            let mut encoder = self.device.create_command_encoder(&Default::default());
            if !range.is_empty() {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for (d, g) in dispatches[range.clone()].iter().zip(&groups[range]) {
                    pass.set_pipeline(&d.kernel.pipeline);
                    pass.set_bind_group(0, g, &[]);
                    let [x, y, z] = d.groups;
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            if part + 1 == parts
                && let Some((result, staging, bytes)) = copy
            {
                encoder.copy_buffer_to_buffer(result, 0, staging, 0, bytes);
            }
            self.queue.submit([encoder.finish()]);
        }
        drop(cache);
        let launched = dispatches.len() as u64;
        self.count(|s| {
            s.submissions += parts as u64;
            s.dispatches += launched;
        });
        Ok(())
    }

    /// The cached bind group of `d` at params `offset`, or a new one.
    fn bind_group(
        &self,
        cache: &mut RunCache,
        d: &Dispatch,
        arena: &wgpu::Buffer,
        offset: u64,
        run: u64,
    ) -> wgpu::BindGroup {
        let key = (d.kernel.pipeline.clone(), d.buffers.clone(), offset);
        if let Some((g, used)) = cache.bind_groups.get_mut(&key) {
            *used = run;
            return g.clone();
        }
        let g = d.bind_group(&self.device, arena, offset);
        self.count(|s| s.bind_groups_created += 1);
        cache.bind_groups.insert(key, (g.clone(), run));
        g
    }

    /// Profiling: submits each dispatch alone and waits for it, adding its
    /// wall time to the kernel's entry in [`GpuContext::profile`].
    #[cfg(not(target_arch = "wasm32"))]
    fn run_profiled(&self, dispatches: &[Dispatch]) -> Result<(), GpuError> {
        for d in dispatches {
            let t = std::time::Instant::now();
            self.encode_and_submit(core::slice::from_ref(d), None)?;
            self.wait()?;
            let seconds = t.elapsed().as_secs_f64();
            let key = match &d.detail {
                Some(detail) => format!("{} {detail}", d.kernel.name),
                None => d.kernel.name.to_string(),
            };
            let mut times = self.times.lock().map_err(|_| poisoned())?;
            let entry = times.entry(key).or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 += seconds;
        }
        Ok(())
    }

    /// Browsers cannot block: profiling is native only.
    #[cfg(target_arch = "wasm32")]
    fn run_profiled(&self, _dispatches: &[Dispatch]) -> Result<(), GpuError> {
        Err(GpuError::Input("profiling needs a native build".into()))
    }

    /// Waits for all submitted work, at most the timeout.
    #[cfg(not(target_arch = "wasm32"))]
    fn wait(&self) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(self.timeout),
            })
            .map(|_| ())
            .map_err(|e| match e {
                wgpu::PollError::Timeout => self.timed_out(),
                other => GpuError::DeviceLost(other.to_string()),
            })
    }

    /// The timeout error; marks the device so that dropping the context
    /// does not wait for its work (see `Drop`).
    #[cfg(not(target_arch = "wasm32"))]
    fn timed_out(&self) -> GpuError {
        self.timed_out.store(true, Ordering::Relaxed);
        GpuError::Timeout(format!(
            "the kernels did not finish within {:?}",
            self.timeout
        ))
    }

    /// Polls the device until `rx` holds its value, at most the timeout.
    /// Never an unbounded wait: a map callback that one poll did not run
    /// (another thread's poll may run it a moment later) is polled for
    /// again in short slices instead of being awaited for ever.
    #[cfg(not(target_arch = "wasm32"))]
    fn wait_for<T>(&self, rx: &Receiver<T>) -> Result<Option<T>, GpuError> {
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            if let Some(value) = rx.try_take() {
                return Ok(value);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(self.timed_out());
            }
            let slice = left.min(core::time::Duration::from_millis(50));
            match self.device.poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(slice),
            }) {
                Ok(_) | Err(wgpu::PollError::Timeout) => {}
                Err(other) => return Err(GpuError::DeviceLost(other.to_string())),
            }
        }
    }

    /// Maps the first `bytes` of `staging` and copies them out; waits at
    /// most the timeout natively.
    async fn map(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
        let (tx, rx) = oneshot();
        staging.map_async(wgpu::MapMode::Read, 0..bytes, move |r| tx.send(r));
        self.count(|s| s.readbacks += 1);
        #[cfg(not(target_arch = "wasm32"))]
        let mapped = self.wait_for(&rx)?;
        // Browsers cannot block: the wait is the event loop's, unbounded.
        #[cfg(target_arch = "wasm32")]
        let mapped = {
            let _ = self.timeout;
            rx.await
        };
        match mapped {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                self.check_fault()?;
                return Err(GpuError::Device(format!("reading results back: {e}")));
            }
            None => {
                self.check_fault()?;
                return Err(GpuError::DeviceLost("the readback was dropped".into()));
            }
        }
        let data = staging
            .get_mapped_range(0..bytes)
            .map_err(|e| GpuError::Device(format!("reading results back: {e:?}")))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }
}

/// One kernel launch: pipeline, storage buffers in binding order, the
/// params uniform (bound last) and the workgroup counts.
pub(crate) struct Dispatch {
    pub kernel: Kernel,
    pub buffers: Vec<wgpu::Buffer>,
    pub params: Vec<u8>,
    pub groups: [u32; 3],
    /// Shape detail for the profile (GEMMs: `m x n x k`).
    pub detail: Option<String>,
}

impl Dispatch {
    /// A launch with `params` (a `#[repr(C)]` bytemuck struct).
    pub(crate) fn new<P: bytemuck::Pod>(
        kernel: Kernel,
        buffers: &[&wgpu::Buffer],
        params: &P,
        groups: [u32; 3],
    ) -> Self {
        Self {
            kernel,
            buffers: buffers.iter().map(|b| (*b).clone()).collect(),
            params: bytemuck::bytes_of(params).to_vec(),
            groups,
            detail: None,
        }
    }

    fn bind_group(
        &self,
        device: &wgpu::Device,
        arena: &wgpu::Buffer,
        offset: u64,
    ) -> wgpu::BindGroup {
        let layout = self.kernel.pipeline.get_bind_group_layout(0);
        let mut entries: Vec<wgpu::BindGroupEntry<'_>> = self
            .buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: self.buffers.len() as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: arena,
                offset,
                size: core::num::NonZeroU64::new(self.params.len().next_multiple_of(16) as u64),
            }),
        });
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        })
    }
}

impl Drop for GpuContext {
    /// wgpu's queue waits for all submitted work when dropped, without a
    /// limit (`vkQueueWaitIdle`). After a timeout that work may never
    /// finish, so the device and queue are leaked instead: a context that
    /// timed out costs its device memory until the process ends, rather
    /// than hanging the thread that drops it.
    fn drop(&mut self) {
        if self.timed_out.load(Ordering::Relaxed) {
            return;
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _lifecycle = lifecycle();
        // SAFETY: dropped once, here, and never used again: `drop` is the
        // last use of `self`.
        unsafe {
            ManuallyDrop::drop(&mut self.queue);
            ManuallyDrop::drop(&mut self.device);
        }
    }
}

/// The process's wgpu instance (native), made on first use.
#[cfg(not(target_arch = "wasm32"))]
fn instance() -> &'static wgpu::Instance {
    static INSTANCE: std::sync::OnceLock<wgpu::Instance> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| {
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
    })
}

/// Browsers: an instance per context (wgpu's web types are not `Sync`).
#[cfg(target_arch = "wasm32")]
fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Held while a device opens or closes, so that no two do at once.
#[cfg(not(target_arch = "wasm32"))]
fn lifecycle() -> std::sync::MutexGuard<'static, ()> {
    static LIFECYCLE: Mutex<()> = Mutex::new(());
    // A panic while holding it leaves nothing half-done to protect.
    LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The configuration an emulated device claims (the only one the kernels use).
const EMULATED_COOP: wgpu::CooperativeMatrixProperties = wgpu::CooperativeMatrixProperties {
    m_size: 16,
    n_size: 16,
    k_size: 16,
    ab_type: wgpu::CooperativeScalarType::F16,
    cr_type: wgpu::CooperativeScalarType::F32,
    saturating_accumulation: false,
};

/// Workgroup memory the cooperative kernels need: the GEMM tiles and the
/// flash attention of CLIP's head dim (64, the largest it supports).
fn coop_shared_bytes(tile: &CoopTile, batched: &CoopTile) -> u32 {
    use super::kernels::attention_flash::{BK, BQ, shared_bytes};
    let flash = shared_bytes(BK, BQ);
    tile.shared_bytes().max(batched.shared_bytes()).max(flash)
}

/// The features the tensor-core kernels need on top of f16 (subgroup
/// barriers only for the `-sb` block shapes).
fn coop_features(tile: &CoopTile, batched: &CoopTile) -> wgpu::Features {
    let mut f = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SUBGROUP;
    if tile.subgroup_epilogue || batched.subgroup_epilogue {
        f |= wgpu::Features::SUBGROUP_BARRIER;
    }
    f
}

/// The configuration the cooperative GEMM needs, if `adapter` has it:
/// 16 x 16 x 16 tiles of f16 with f32 accumulation, subgroups of exactly
/// 32 (the kernel splits 256 invocations into 8 subgroups), and room for
/// its workgroup tiles.
fn coop_config(
    adapter: &wgpu::Adapter,
    tile: &CoopTile,
    batched: &CoopTile,
) -> Option<wgpu::CooperativeMatrixProperties> {
    let needed = coop_features(tile, batched) | wgpu::Features::SHADER_F16;
    let info = adapter.get_info();
    let fits = adapter.features().contains(needed)
        && info.subgroup_min_size == 32
        && info.subgroup_max_size == 32
        && adapter.limits().max_compute_workgroup_storage_size >= coop_shared_bytes(tile, batched);
    if !fits {
        return None;
    }
    adapter
        .cooperative_matrix_properties()
        .into_iter()
        .find(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
}

/// Prepends the precision alias (`T`) and the Rust-side constants; a
/// kernel's own `enable` lines move first, where WGSL requires them.
pub(crate) fn shader_source(body: &str, precision: Precision, consts: &[(&str, u32)]) -> String {
    let mut s = String::new();
    let mut body = body;
    while body.starts_with("enable ") {
        let end = body.find('\n').map_or(body.len(), |i| i + 1);
        s.push_str(&body[..end]);
        body = &body[end..];
    }
    match precision {
        Precision::F16 => s.push_str("enable f16;\nalias T = f16;\n"),
        Precision::F32 => s.push_str("alias T = f32;\n"),
    }
    for (name, value) in consts {
        s.push_str(&format!("const {name}: u32 = {value}u;\n"));
    }
    s.push_str(body);
    s
}

/// f32 values as device bytes, zero-padded to the 4-byte copy alignment
/// (an odd number of f16 values is 2 bytes short of it).
pub(crate) fn encode(values: &[f32], precision: Precision) -> Vec<u8> {
    let mut bytes: Vec<u8> = match precision {
        Precision::F32 => bytemuck::cast_slice(values).to_vec(),
        Precision::F16 => crate::clip::halves::f32_to_f16(values),
    };
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes
}

/// Device bytes as `count` f32 values.
fn decode(bytes: &[u8], count: usize, precision: Precision) -> Vec<f32> {
    match precision {
        Precision::F32 => bytes
            .chunks_exact(4)
            .take(count)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Precision::F16 => crate::clip::halves::f16_to_f32(&bytes[..(2 * count).min(bytes.len())]),
    }
}

fn poisoned() -> GpuError {
    GpuError::Device("a GPU context lock was poisoned by an earlier panic".into())
}

/// Records uncaptured errors and device loss instead of wgpu's default panic.
fn install_fault_handlers(device: &wgpu::Device, fault: &Arc<Mutex<Option<GpuError>>>) {
    let slot = fault.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        if let Ok(mut s) = slot.lock() {
            s.get_or_insert(GpuError::from_wgpu(e, "running a GPU command"));
        }
    }));
    let slot = fault.clone();
    device.set_device_lost_callback(move |reason, message| {
        if let Ok(mut s) = slot.lock() {
            *s = Some(GpuError::DeviceLost(format!("{reason:?}: {message}")));
        }
    });
}

/// A one-value channel whose receiver is a future (map callbacks).
fn oneshot<T: Send + 'static>() -> (Sender<T>, Receiver<T>) {
    let state = Arc::new(Mutex::new(Slot {
        value: None,
        closed: false,
        waker: None,
    }));
    (Sender(Some(state.clone())), Receiver(state))
}

struct Slot<T> {
    value: Option<T>,
    closed: bool,
    waker: Option<Waker>,
}

struct Sender<T>(Option<Arc<Mutex<Slot<T>>>>);
struct Receiver<T>(Arc<Mutex<Slot<T>>>);

impl<T> Sender<T> {
    fn send(mut self, value: T) {
        if let Some(state) = self.0.take() {
            finish(&state, Some(value));
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            finish(&state, None);
        }
    }
}

fn finish<T>(state: &Mutex<Slot<T>>, value: Option<T>) {
    if let Ok(mut s) = state.lock() {
        s.value = value;
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The value without waiting: `Some` once the sender has sent or gone
    /// (`Some(None)` for gone), `None` while it may still send.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn try_take(&self) -> Option<Option<T>> {
        let Ok(mut s) = self.0.lock() else {
            return Some(None);
        };
        s.closed.then(|| s.value.take())
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<T>> {
        let Ok(mut s) = self.0.lock() else {
            return Poll::Ready(None);
        };
        if s.closed {
            return Poll::Ready(s.value.take());
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernels::gelu::gelu;
    use super::super::kernels::testing::context;
    use super::*;
    use crate::clip::Activation;

    /// A context of its own (these tests break theirs); `None` to skip.
    fn fresh() -> Option<GpuContext> {
        // Opens only where the shared test context could open.
        context(Precision::F32)?;
        let options = GpuOptions {
            precision: Some(Precision::F32),
            timeout: core::time::Duration::from_secs(30),
            ..GpuOptions::default()
        };
        Some(GpuContext::new(&options).expect("a second context on the same adapter"))
    }

    #[test]
    fn buffers_above_the_limits_are_errors_naming_them() {
        let Some(ctx) = fresh() else { return };
        let limits = ctx.limits();
        // Caught on the host before wgpu sees it.
        let binding = limits.max_storage_buffer_binding_size;
        let e = pollster::block_on(ctx.storage("the wide activations", binding + 16));
        let msg = e.expect_err("over the binding limit").to_string();
        assert!(
            msg.contains("the wide activations") && msg.contains("max_storage_buffer_binding_size"),
            "{msg}"
        );
        // Past the host check: wgpu refuses it, the error scope catches it
        // and it comes back as an error instead of an uncaptured panic.
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let huge = limits.max_buffer_size.saturating_mul(4);
        let e = pollster::block_on(ctx.buffer("a huge readback", huge, usage));
        let msg = e.expect_err("over max_buffer_size").to_string();
        assert!(msg.contains("allocating a huge readback"), "{msg}");
        assert!(msg.contains(&huge.to_string()), "{msg}");
        // The device is still usable afterwards.
        let x = pollster::block_on(ctx.upload("x", &[1.0, -2.0])).expect("upload");
        let d = pollster::block_on(gelu(&ctx, Activation::QuickGelu, &x, 2)).expect("record");
        let got = pollster::block_on(ctx.run(&[d], &x, 2)).expect("run after the refusal");
        assert!(
            (got[0] - 1.0 / (1.0 + (-1.702f32).exp())).abs() < 1e-5,
            "{got:?}"
        );
    }

    /// Filling the device's memory gives an error naming the buffer (the
    /// out-of-memory error scope), not a hang or an abort, and the device
    /// still runs a kernel once the memory is freed. Ignored in CI: it
    /// allocates until the device refuses (lavapipe would take the host's
    /// memory); `benches/gpu_device_session.sh` runs it on a lent GPU.
    #[test]
    #[ignore = "fills the device's memory: run on a lent GPU"]
    fn exhausting_device_memory_is_an_error_not_a_hang() {
        let Some(ctx) = fresh() else { return };
        let gib = 1u64 << 30;
        let size = ctx.limits().max_buffer_size.min(gib);
        // 192 GiB: more than the lent GPUs have (an H200 has 141 GB); a
        // device that hands out that much spills to host memory, which this
        // test then reports, before the host's own memory runs out.
        let most = (192 * gib / size) as usize;
        let mut held = Vec::new();
        let err = loop {
            match pollster::block_on(ctx.storage("filler", size)) {
                Ok(b) => held.push(b),
                Err(e) => break e,
            }
            assert!(
                held.len() < most,
                "no error after {} x {size} bytes",
                held.len()
            );
        };
        let msg = err.to_string();
        std::eprintln!("after {} x {size} bytes: {msg}", held.len());
        assert!(msg.contains("filler"), "{msg}");
        drop(held);
        let x =
            pollster::block_on(ctx.upload("x", &[1.0, -2.0])).expect("upload after the refusal");
        let d = pollster::block_on(gelu(&ctx, Activation::QuickGelu, &x, 2)).expect("record");
        let got = pollster::block_on(ctx.run(&[d], &x, 2)).expect("run after the refusal");
        assert!(
            (got[0] - 1.0 / (1.0 + (-1.702f32).exp())).abs() < 1e-3,
            "{got:?}"
        );
    }

    /// The map channel as the bounded wait reads it: pending, sent, gone.
    #[test]
    fn the_map_channel_reports_pending_sent_and_gone() {
        let (tx, rx) = oneshot::<u32>();
        assert_eq!(rx.try_take(), None, "nothing sent yet");
        tx.send(7);
        assert_eq!(rx.try_take(), Some(Some(7)));
        let (tx, rx) = oneshot::<u32>();
        drop(tx);
        assert_eq!(rx.try_take(), Some(None), "a dropped sender ends the wait");
    }

    /// A context whose wait timed out drops without waiting for its work
    /// (wgpu's queue would wait for it without a limit: `vkQueueWaitIdle`,
    /// which a kernel that never ends turns into a hang). The work grows
    /// until a 100 ms wait times out, then the drop must return at once.
    #[test]
    fn dropping_a_context_after_a_timeout_does_not_wait_for_its_work() {
        if context(Precision::F32).is_none() {
            return;
        }
        let options = GpuOptions {
            precision: Some(Precision::F32),
            timeout: core::time::Duration::from_millis(100),
            ..GpuOptions::default()
        };
        let ctx = GpuContext::new(&options).expect("a second context on the same adapter");
        let n = 1 << 22;
        let x = pollster::block_on(ctx.upload("x", &alloc::vec![0.25f32; n])).expect("upload");
        let record = |launches: usize| -> Vec<Dispatch> {
            (0..launches)
                .map(|_| pollster::block_on(gelu(&ctx, Activation::QuickGelu, &x, n)))
                .collect::<Result<_, _>>()
                .expect("record")
        };
        // Time one launch (runs shorter than the timeout), then queue about
        // two seconds of work: the wait gives up after 100 ms, the rest is
        // still running when the context drops.
        let (mut launches, mut per_launch) = (1, core::time::Duration::from_millis(100));
        while launches <= 64 {
            let t = std::time::Instant::now();
            if pollster::block_on(ctx.run(&record(launches), &x, 1)).is_err() {
                break;
            }
            per_launch = t.elapsed() / launches as u32;
            launches *= 4;
        }
        let launches = (2000 / per_launch.as_millis().max(1)) as usize + 1;
        let e = pollster::block_on(ctx.run(&record(launches), &x, 1));
        assert!(
            matches!(e, Err(GpuError::Timeout(_))),
            "{launches} launches of {per_launch:?}: {:?}",
            e.err()
        );
        let t = std::time::Instant::now();
        drop(ctx);
        let took = t.elapsed();
        assert!(
            took < core::time::Duration::from_millis(500),
            "dropping waited {took:?} ({launches} launches of {n})"
        );
    }

    #[test]
    fn a_lost_device_is_an_error_and_stays_one() {
        let Some(ctx) = fresh() else { return };
        let x = pollster::block_on(ctx.upload("x", &[0.5; 8])).expect("upload");
        ctx.device.destroy();
        for attempt in 0..2 {
            let run = pollster::block_on(async {
                let d = gelu(&ctx, Activation::QuickGelu, &x, 8).await?;
                ctx.run(&[d], &x, 8).await
            });
            let e = run.expect_err("a destroyed device must not run kernels");
            assert!(
                matches!(e, GpuError::DeviceLost(_)),
                "attempt {attempt}: {e:?}"
            );
            assert!(e.to_string().starts_with("GPU device lost"), "{e}");
        }
        assert!(matches!(ctx.check_fault(), Err(GpuError::DeviceLost(_))));
    }

    #[test]
    fn warm_runs_reuse_bind_groups_and_the_staging_buffer() {
        let Some(ctx) = fresh() else { return };
        let x = pollster::block_on(ctx.upload("x", &[0.5; 64])).expect("upload");
        let once = || {
            let d = pollster::block_on(gelu(&ctx, Activation::Gelu, &x, 64)).expect("record");
            pollster::block_on(ctx.run(&[d], &x, 64)).expect("run");
        };
        once();
        let before = ctx.stats();
        once();
        once();
        let after = ctx.stats();
        assert_eq!(after.submissions - before.submissions, 2);
        assert_eq!(after.readbacks - before.readbacks, 2);
        assert_eq!(after.dispatches - before.dispatches, 2);
        assert_eq!(after.buffers_created, before.buffers_created);
        assert_eq!(after.bind_groups_created, before.bind_groups_created);
        assert_eq!(after.pipelines_compiled, before.pipelines_compiled);
    }
}
