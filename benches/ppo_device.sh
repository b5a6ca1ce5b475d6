#!/usr/bin/env bash
# Device check for the FiSAO trainer (issue 7); see docs/trainer.md.
#
#   benches/ppo_device.sh          # on the lent GPU: one PPO iteration of a 7B-shaped
#                                  # random LLaVA, bf16, LoRA r=128, batch 8, 256 new tokens
#   benches/ppo_device.sh --tiny   # self-test on any machine (tiny fixture shapes, CPU)
#
# Needs the fisao-train binary built on an x86-64 machine with the torch env (docs/llava.md):
#   (torch env) cargo build --release -p gpu-train --bin fisao-train
#   mkdir -p .device-carry && cp $CARGO_TARGET_DIR/release/fisao-train .device-carry/
# and libtorch from torch 2.11 (python3 -c "import torch" must work: its lib/ is put on
# LD_LIBRARY_PATH). Prints one JSON object: seconds for generation / scoring / reference
# (policy + adapters-off reference + values) / update (4 PPO epochs), tokens/s of each,
# and GPU memory (nvidia-smi, MiB; the caching allocator keeps its peak reserved).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BIN=${FISAO_TRAIN_BIN:-.device-carry/fisao-train}
[[ -x $BIN ]] || { echo "no fisao-train binary at $BIN (build it here, see the header)" >&2; exit 2; }
if TORCH_DIR=$("$PY" -c "import torch,os;print(os.path.dirname(torch.__file__))" 2>/dev/null); then
  export LD_LIBRARY_PATH="$TORCH_DIR/lib:${LD_LIBRARY_PATH:-}"
fi
LOG=${PPO_LOG:-/tmp/ppo-bench.jsonl}
if [[ ${1:-} == --tiny ]]; then
  ARGS=(--tiny --batch 4 --new-tokens 16 --lora-r 8)
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  ARGS=(--batch 8 --new-tokens 256 --lora-r 128)
fi
RUST_LOG=${RUST_LOG:-warn} "$BIN" bench "${ARGS[@]}" | tee "$LOG"
"$PY" - "$LOG" <<'PYEOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][-1]
print(f"\n| phase | seconds | tokens/s |\n|---|---|---|")
for p, t in [("generation", "generation_tok_per_s"), ("scoring", None), ("reference", "reference_tok_per_s"), ("update", "update_tok_per_s")]:
    print(f"| {p} | {r[p + '_s']:.2f} | {'' if t is None else f'{r[t]:.0f}'} |")
print(f"| total | {r['total_s']:.2f} | |")
print(f"\ndevice {r['device']} {r['kind']}, batch {r['batch']}, {r['mean_response_tokens']:.0f} tokens/response, "
      f"GPU MiB after build {r['gpu_mib_after_build']}, peak reserved {r['gpu_mib_peak_reserved']}")
PYEOF
