#!/usr/bin/env bash
# The device check of the wgpu CLIP path (docs/perf.md, "wgpu"): images/s of
# the ViT-L/14-336 image tower (random weights, fp16) on this crate's wgpu path
# and on PyTorch CUDA fp16 (transformers, sdpa), same weights and pixels, one run.
#
#   bash benches/gpu_device.sh           # on the lent GPU machine (~2-4 min)
#   bash benches/gpu_device.sh --tiny    # here: tiny shapes, lavapipe vs PyTorch CPU
#   MODEL=lavapipe-1l bash benches/gpu_device.sh   # here: one ViT-sized layer (512 wide)
#   PROFILE=1 bash benches/gpu_device.sh # also the per-kernel table (one submission per
#                                        # kernel, so a separate, slower run) on stderr
#   AB=1 bash benches/gpu_device.sh      # also a run with the tensor-core GEMM off
#                                        # (FISAO_GPU_COOP=0: the portable tiled kernel)
#   SWEEP=1 bash benches/gpu_device.sh   # also every cooperative GEMM block shape
#                                        # (FISAO_GPU_COOP_TILE) with each attention in
#                                        # SWEEP_ATTENTION (default "gemm"; "fused gemm"
#                                        # for both), one line each, and with
#                                        # SWEEP_PROFILE=1 each shape's per-kernel profile
#                                        # (SWEEP_TILES="a b": only those shapes;
#                                        # SWEEP_BATCHED="c d": also each attention-
#                                        # product shape with the default linear one,
#                                        # FISAO_GPU_BATCHED_TILE; SWEEP_V_COPY=1: also
#                                        # the attention's values copied to v^T first;
#                                        # SWEEP_SHADER=1: also the default without naga's
#                                        # bounds checks, without clearing workgroup
#                                        # memory, and without both; SWEEP_LN="256 64":
#                                        # also the default with that many invocations
#                                        # per LayerNorm row, FISAO_GPU_LN_LANES;
#                                        # SWEEP_SUBMIT="64 16": also the default
#                                        # submitted in command buffers of that many
#                                        # launches, FISAO_GPU_SUBMIT_EVERY)
#   TEXTS=1 bash benches/gpu_device.sh   # also the text tower: texts/s of TEXT_BATCH
#                                        # (256) full-window texts on both sides, parity
# The wgpu JSON line's "gemm" names the GEMM kernel that ran ("coop-16x16x16-f16-f32"
# where the adapter has cooperative matrices, else "tiled-f32").
# The wgpu JSON line has "per_call": submissions, dispatches, buffers, bind groups,
# pipelines and readbacks of one warm call (expected: 1 submission and 1 readback
# per chunk of 16 images, 0 of the rest).
#
# BIN: the release gpu_device_bench (built here, carried to the device):
#   CARGO_TARGET_DIR=targets/gpu cargo build --release -p fisao-benches --features gpu --bin gpu_device_bench
# PY: python with torch, transformers, safetensors (python3 on the device).
# Vulkan loaders on the device: unpack the carried .gl/*.deb first (device README).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-vit-l-14-336}; BATCH=${BATCH:-32}; REPEATS=${REPEATS:-3}
if [ "${1:-}" = "--tiny" ]; then MODEL=tiny; BATCH=${BATCH_TINY:-4}; REPEATS=2; fi
PY=${PY:-python3}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/gpu_device_bench}
DIR=${BENCH_DIR:-/tmp/fisao-gpu-bench}/$MODEL
. benches/vulkan_env.sh

echo "date: $(date -u +%FT%TZ); model: $MODEL; batch: $BATCH; repeats: $REPEATS (best of)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
[ -f "$DIR/model.safetensors" ] || "$PY" benches/gpu_device.py write "$DIR" --model "$MODEL"
if [ "${AB:-0}" = 1 ]; then
  # First, so that the parity check below reads the default (coop) run's embeddings.
  echo "A/B, GEMM forced to the tiled kernel:"
  FISAO_GPU_COOP=0 timeout 300 "$BIN" "$DIR" "$BATCH" "$REPEATS" ${PRECISION:-} | tail -1
fi
if [ "${SWEEP:-0}" = 1 ]; then
  echo "sweep: block shape x attention (images/s):"
  for tile in ${SWEEP_TILES:-$("$BIN" --tiles)}; do
    for attn in ${SWEEP_ATTENTION:-gemm}; do
      line=$(FISAO_GPU_COOP_TILE=$tile FISAO_GPU_ATTENTION=$attn timeout 120 "$BIN" "$DIR" "$BATCH" "$REPEATS" ${PRECISION:-} | tail -1) || line="failed: $?"
      echo "sweep $tile $attn: $line"
    done
    if [ "${SWEEP_PROFILE:-0}" = 1 ]; then
      echo "profile $tile gemm attention:" >&2
      FISAO_GPU_PROFILE=1 FISAO_GPU_COOP_TILE=$tile FISAO_GPU_ATTENTION=gemm timeout 120 "$BIN" "$DIR" "$BATCH" 1 ${PRECISION:-} >/dev/null || echo "profile failed: $?" >&2
    fi
  done
  # One run of the default GEMM attention with the given settings ("sweep default LABEL: json").
  sweep_default() {
    local label=$1; shift
    line=$(env "$@" FISAO_GPU_ATTENTION=gemm timeout 120 "$BIN" "$DIR" "$BATCH" "$REPEATS" ${PRECISION:-} | tail -1) || line="failed: $?"
    echo "sweep default $label: $line"
  }
  if [ "${SWEEP_V_COPY:-0}" = 1 ]; then sweep_default v-copy FISAO_GPU_V_IN_PLACE=0; fi
  if [ "${SWEEP_SHADER:-0}" = 1 ]; then
    sweep_default FISAO_GPU_BOUNDS_CHECKS=0 FISAO_GPU_BOUNDS_CHECKS=0
    sweep_default FISAO_GPU_ZERO_WORKGROUP=0 FISAO_GPU_ZERO_WORKGROUP=0
    sweep_default "FISAO_GPU_BOUNDS_CHECKS=0 FISAO_GPU_ZERO_WORKGROUP=0" FISAO_GPU_BOUNDS_CHECKS=0 FISAO_GPU_ZERO_WORKGROUP=0
  fi
  for lanes in ${SWEEP_LN:-}; do sweep_default "layernorm lanes $lanes" FISAO_GPU_LN_LANES=$lanes; done
  for every in ${SWEEP_SUBMIT:-}; do sweep_default "submit every $every" FISAO_GPU_SUBMIT_EVERY=$every; done
  for batched in ${SWEEP_BATCHED:-}; do sweep_default "batched $batched" FISAO_GPU_BATCHED_TILE=$batched; done
fi
rs=$(timeout 300 "$BIN" "$DIR" "$BATCH" "$REPEATS" ${PRECISION:-} | tail -1)
echo "$rs"
if [ "${PROFILE:-0}" = 1 ]; then
  FISAO_GPU_PROFILE=1 timeout 300 "$BIN" "$DIR" "$BATCH" 1 ${PRECISION:-} >/dev/null
fi
py=$(timeout 200 "$PY" benches/gpu_device.py time "$DIR" "$BATCH" "$REPEATS" | tail -1)
echo "$py"
"$PY" - "$rs" "$py" <<'PYEOF'
import json, sys
rs, py = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ratio = rs["images_per_s"] / py["images_per_s"]
print(f"images/s  wgpu ({rs['adapter']}, {rs['precision']}, gemm {rs.get('gemm')}, attention {rs.get('attention')}) {rs['images_per_s']:.2f}  "
      f"pytorch ({py['device']}, {py['dtype']}) {py['images_per_s']:.2f}  ratio {ratio:.3f}x (goal >= 0.5x)")
if "images_per_s_from_host" in py:
    # Both sides from f32 pixels on the host (the wgpu side always is).
    host_ratio = rs["images_per_s"] / py["images_per_s_from_host"]
    print(f"pytorch with its pixels uploaded in the timed call: {py['images_per_s_from_host']:.2f} images/s, "
          f"ratio {host_ratio:.3f}x; wgpu host-side time before the GPU starts: "
          f"{rs.get('per_call', {}).get('host_ms', '?')} ms per call")
if "min_cosine_vs_wgpu" in py:
    print(f"parity: min cosine {py['min_cosine_vs_wgpu']}, max rel diff {py['max_rel_diff_vs_wgpu']}")
PYEOF
if [ "${TEXTS:-0}" = 1 ]; then
  # The text tower too: TEXT_BATCH full-window texts (one 256-text chunk by default),
  # same weights and ids on both sides, with parity of the first two embeddings.
  TEXT_BATCH=${TEXT_BATCH:-256}
  rs=$(timeout 300 "$BIN" --texts "$DIR" "$TEXT_BATCH" "$REPEATS" ${PRECISION:-} | tail -1)
  echo "$rs"
  py=$(timeout 200 "$PY" benches/gpu_device.py time-texts "$DIR" "$TEXT_BATCH" "$REPEATS" | tail -1)
  echo "$py"
  "$PY" - "$rs" "$py" <<'PYEOF'
import json, sys
rs, py = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"texts/s  wgpu ({rs['adapter']}, {rs['precision']}) {rs['texts_per_s']:.2f}  "
      f"pytorch ({py['device']}, {py['dtype']}) {py['texts_per_s']:.2f}  "
      f"ratio {rs['texts_per_s'] / py['texts_per_s']:.3f}x; wgpu host {rs['per_call']['host_ms']} ms per call")
if "min_cosine_vs_wgpu" in py:
    print(f"text parity: min cosine {py['min_cosine_vs_wgpu']}, max rel diff {py['max_rel_diff_vs_wgpu']}")
PYEOF
fi
