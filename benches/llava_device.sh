#!/usr/bin/env bash
# Device check for LLaVA-1.5 on tch (issue 6); see docs/llava.md and docs/perf.md.
#
#   benches/llava_device.sh          # on the lent GPU: 7B-shaped random LLaVA, bf16
#   benches/llava_device.sh --tiny   # self-test on any machine (tiny shapes, f32 on CPU)
#
# Needs: python3 with torch 2.11, transformers 5.x and peft (the lent GPU image has them),
# and the Rust bench binary built on an x86-64 machine with the torch env (docs/llava.md):
#   (torch env) cargo build --release -p gpu-train --bin llava_bench
#   cp $CARGO_TARGET_DIR/release/llava_bench .device-carry/
# Python builds random weights, saves them for Rust (same weights on both sides),
# times transformers `generate`; then the Rust binary loads them and times its own.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BIN=${LLAVA_BENCH_BIN:-.device-carry/llava_bench}
OUT=${LLAVA_OUT:-/tmp/llava-bench-ckpt}
LOG=${LLAVA_LOG:-/tmp/llava-bench}
if [[ ${1:-} == --tiny ]]; then
  ARGS=(--new-tokens 16 --batches 1,2 --lora-rank 8 --train-len 64); TINY=(--tiny)
else
  ARGS=(--new-tokens 128 --batches 1,8 --lora-rank 128 --train-len 512); TINY=()
fi
TORCH_DIR=$("$PY" -c "import torch,os;print(os.path.dirname(torch.__file__))")
export LD_LIBRARY_PATH="$TORCH_DIR/lib:${LD_LIBRARY_PATH:-}"
"$PY" -c "import transformers, peft" || { echo "needs transformers and peft (the GPU image has both)" >&2; exit 2; }
[[ -x $BIN ]] || { echo "no bench binary at $BIN (build it here, see the header)" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
rm -rf "$OUT"; mkdir -p "$(dirname "$LOG")"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" benches/llava_device.py --out "$OUT" "${TINY[@]}" "${ARGS[@]}" | tee "$LOG-py.jsonl"
"$BIN" --model "$OUT" "${ARGS[@]}" | tee "$LOG-rs.jsonl"
rm -rf "$OUT"
"$PY" - "$LOG-py.jsonl" "$LOG-rs.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.startswith("{")]
gen = {(r["side"], r["batch"]): r for r in rows if r.get("what") == "generate"}
print("\n| batch | prefill tok/s Rust | HF | Rust/HF | decode tok/s Rust | HF | Rust/HF |")
print("|---|---|---|---|---|---|---|")
for b in sorted({k[1] for k in gen}):
    r, p = gen.get(("rust", b)), gen.get(("python", b))
    if r and p:
        print(f"| {b} | {r['prefill_tok_s']:.0f} | {p['prefill_tok_s']:.0f} | {r['prefill_tok_s']/p['prefill_tok_s']:.2f} "
              f"| {r['decode_tok_s']:.1f} | {p['decode_tok_s']:.1f} | {r['decode_tok_s']/p['decode_tok_s']:.2f} |")
for r in rows:
    if r.get("what") == "lora_fwd_bwd":
        print(f"LoRA fwd+bwd ({r['side']}): " + ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("side", "what")))
PYEOF
