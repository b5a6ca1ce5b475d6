#!/usr/bin/env bash
# One device call for the wgpu path, as a session with a lent GPU should run it
# (docs/perf.md "wgpu", docs/gpu.md "Device lifetime"):
#   1. the GPU unit tests three ways (parallel as CI runs them, one thread, and the
#      destroyed-device test alone) and the out-of-memory test (ignored in CI), each under a watchdog that, on a hang, records
#      every thread's name and kernel wait channel (and gdb backtraces if gdb is
#      there) before killing it: the session-5 hang left nothing to read;
#   2. GEMM probes (gpu_device_bench --probe: which part of the tensor-core GEMM bounds it);
#   3. the benchmark (benches/gpu_device.sh: wgpu vs PyTorch CUDA fp16, parity) and a
#      sweep of the cooperative GEMM variants (SESSION_TILES), the attention-product
#      shapes (SESSION_BATCHED), the v^T copy and the kernels without bounds checks or
#      workgroup clearing (SWEEP_SHADER), and the LayerNorm at 256 / 64 invocations per
#      row against the default 32 (SWEEP_LN), and a call submitted in parts of 96 / 24
#      launches (SWEEP_SUBMIT), then the flash attention kernel (SESSION_ATTENTION);
#      and the text tower (ViT-L/14-336's: 12 layers, width 768) on 256 texts against
#      PyTorch (TEXTS=1; the wgpu text tower has never been timed on a GPU).
#      Every wgpu line's per_call has host_ms: the CPU time before the GPU starts
#      (pixels uploaded as f32 since session 8).
#
# Here, on the dev box (builds and strips both binaries into .devbin/, ~10 min cold):
#   bash benches/gpu_device_session.sh --prepare
# On the device (run tool, carry [".gl", ".devbin"]; .gl holds the Vulkan loader debs):
#   OUT=$OUT bash benches/gpu_device_session.sh
# Writes $OUT/tests-*.log, $OUT/hang-*.txt (only on a hang), $OUT/probe.log, $OUT/bench.log,
# $OUT/profile.log (SESSION_PAIRS="tile,batched ...": the pairs run with both shapes at once).
set -uo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-/work/targets/wgpu}

if [ "${1:-}" = "--prepare" ]; then
  set -e
  export CARGO_TARGET_DIR=$TARGET
  cargo build --release --locked -p fisao-benches --features gpu --bin gpu_device_bench
  cargo test --release --locked -p reward-core --features gpu --lib --no-run 2>&1 | tail -2
  mkdir -p .devbin
  # The device has no Vulkan loader: Debian's debs, unpacked there (device README).
  if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    mkdir -p .gl
    apt-get update -qq
    (cd .gl && apt-get download libvulkan1 libglvnd0 libgl1 libglx0 libegl1 libgles2 libopengl0)
  fi
  strip -o .devbin/gpu_device_bench "$TARGET/release/gpu_device_bench"
  tests=$(ls -t "$TARGET"/release/deps/reward_core-* | grep -v '\.d$' | head -1)
  strip -o .devbin/reward_core_tests "$tests"
  ls -la .devbin
  exit 0
fi

OUT=${OUT:-device-out}
mkdir -p "$OUT"
. benches/vulkan_env.sh

# watch NAME SECONDS CMD...: runs CMD, and if it outlives SECONDS records its threads.
watch() {
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  "$@" > "$OUT/tests-$name.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - start)) -lt "$limit" ]; do sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then
    {
      echo "HANG: $name still running after ${limit}s"
      for t in /proc/"$pid"/task/*; do
        echo "$(cat "$t/comm" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"
      done
      command -v gdb >/dev/null && gdb -p "$pid" -batch -ex 'thread apply all bt 25' 2>&1
    } > "$OUT/hang-$name.txt"
    kill -9 "$pid"
    echo "tests $name: HANG after ${limit}s (threads in $OUT/hang-$name.txt)"
  else
    wait "$pid"
    echo "tests $name: exit $? in $((SECONDS - start))s; $(grep -E '^test result' "$OUT/tests-$name.log")"
  fi
}

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
# The limits fit the GPU, where the emulated tensor-core tests skip; on lavapipe (a local
# smoke run) they take minutes: raise them there with LIMIT_PARALLEL / LIMIT_SERIAL.
watch parallel "${LIMIT_PARALLEL:-120}" .devbin/reward_core_tests gpu:: --nocapture
watch serial "${LIMIT_SERIAL:-180}" .devbin/reward_core_tests gpu:: --nocapture --test-threads=1
watch destroyed 60 .devbin/reward_core_tests a_lost_device_is_an_error_and_stays_one --nocapture
watch oom 120 .devbin/reward_core_tests exhausting_device_memory_is_an_error_not_a_hang --ignored --nocapture
grep -h "after .* bytes" "$OUT/tests-oom.log" || true
grep -hE "PASSED|SKIPPED" "$OUT"/tests-parallel.log | sort | uniq -c | head -40

# Which part of the cooperative GEMM bounds the linear layers (GemmProbe): whole, no
# global reads, multiply-adds alone (the ceiling through wgpu), memory path alone.
for tile in ${PROBE_TILES:-128x128/64x64 128x128/64x64-p4 128x128/64x64-db-p4 128x128/64x64-db 128x128/64x64-e2 128x128/64x64-v4 128x128/64x64-sb}; do
  FISAO_GPU_COOP_TILE=$tile timeout 120 .devbin/gpu_device_bench --probe ${PROBE_ARGS:-20} >> "$OUT/probe.log" 2>&1
  echo "probe $tile: exit $?"
done
# The default shape again without bounds checks and workgroup clearing (GpuOptions::
# shader_bounds_checks, zero_workgroup_memory): do the clamped scalar stores cost?
FISAO_GPU_BOUNDS_CHECKS=0 FISAO_GPU_ZERO_WORKGROUP=0 timeout 120 .devbin/gpu_device_bench --probe ${PROBE_ARGS:-20} >> "$OUT/probe.log" 2>&1
echo "probe default, unchecked: exit $?"
grep -E '"probe"' "$OUT/probe.log" | sed -E 's/.*"probe": "([^"]*)", "layer": "([^"]*)".*"gemm": "([^"]*)", "bounds_checks": ([a-z]*).*"tflops": ([0-9.]*).*/\3 \2 \1 checks=\4 \5 TFLOP\/s/'

SESSION_TILES=${SESSION_TILES:-"128x128/64x64 128x128/64x64-p4 128x128/64x64-db-p4 128x128/64x64-v4-p4 128x128/64x64-db 128x128/64x64-e2 128x128/64x64-v4 128x128/64x64-sb 128x128/64x64-db-v4-sb 128x128/64x64-k16-db 128x128/32x64-db 128x128/32x64-k64"}
SESSION_BATCHED=${SESSION_BATCHED:-"64x64/32x32-p4 64x64/32x32-v4-p4 64x64/32x32-v4-p4-sb 64x64/32x32-v4 64x64/32x32-e2-v4 64x64/32x32-db-e2 64x64/32x32-v4-sb"}
TEXTS=1 PROFILE=${PROFILE:-1} SWEEP=1 SWEEP_TILES="$SESSION_TILES" SWEEP_BATCHED="$SESSION_BATCHED" SWEEP_V_COPY=1 SWEEP_SHADER=1 SWEEP_LN="256 64" SWEEP_SUBMIT="${SWEEP_SUBMIT:-96 24}" BIN=.devbin/gpu_device_bench \
  timeout 360 bash benches/gpu_device.sh > "$OUT/bench.log" 2> "$OUT/profile.log"
echo "bench: exit $?"
# The packed shapes for both GEMM kinds at once (the sweep varies one at a time), with
# the per-kernel profile of the first pair appended to profile.log.
DIR=${BENCH_DIR:-/tmp/fisao-gpu-bench}/${MODEL:-vit-l-14-336}
first=1
for pair in ${SESSION_PAIRS:-128x128/64x64-v4-p4,64x64/32x32-v4-p4 128x128/64x64-p4,64x64/32x32-p4}; do
  tile=${pair%,*}; batched=${pair#*,}
  line=$(FISAO_GPU_COOP_TILE=$tile FISAO_GPU_BATCHED_TILE=$batched timeout 120 .devbin/gpu_device_bench "$DIR" "${BATCH:-32}" "${REPEATS:-3}" | tail -1) || line="failed: $?"
  echo "sweep pair $tile + $batched: $line" >> "$OUT/bench.log"
  if [ "$first" = 1 ]; then
    echo "profile of $tile + $batched:" >> "$OUT/profile.log"
    FISAO_GPU_PROFILE=1 FISAO_GPU_COOP_TILE=$tile FISAO_GPU_BATCHED_TILE=$batched timeout 120 .devbin/gpu_device_bench "$DIR" "${BATCH:-32}" 1 >/dev/null 2>> "$OUT/profile.log"
    first=0
  fi
done
# The flash attention kernel (rewritten in session 9: two lanes per row, the context
# rescaled only when a row maximum rises by more than the slack) against the GEMM
# attention of the default run, with its per-kernel profile.
for attn in ${SESSION_ATTENTION:-flash}; do
  line=$(FISAO_GPU_ATTENTION=$attn timeout 120 .devbin/gpu_device_bench "$DIR" "${BATCH:-32}" "${REPEATS:-3}" | tail -1) || line="failed: $?"
  echo "sweep attention $attn: $line" >> "$OUT/bench.log"
  echo "profile of attention $attn:" >> "$OUT/profile.log"
  FISAO_GPU_PROFILE=1 FISAO_GPU_ATTENTION=$attn timeout 120 .devbin/gpu_device_bench "$DIR" "${BATCH:-32}" 1 >/dev/null 2>> "$OUT/profile.log"
done
# One short line per run (the whole JSON lines are in bench.log).
grep -E '"side"|ratio|parity' "$OUT/bench.log" \
  | sed -E -e 's/^\{"side": "wgpu",/default: &/' \
      -e 's/^([^{]*): \{"side": "wgpu".*"gemm": "([^"]*)".*"images_per_s": ([0-9.]*), "per_call": \{"host_ms": ([0-9.]*).*/\1: \3 images\/s, host \4 ms (\2)/' \
  | cut -c1-300
