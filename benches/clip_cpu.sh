#!/usr/bin/env bash
# CLIP on the CPU: this crate's path vs transformers on PyTorch, same random weights,
# same inputs, same thread count, one run (docs/perf.md, "CLIP on the CPU").
#
#   bash benches/clip_cpu.sh            # ViT-B/32 and ViT-L/14-336 shapes, 2 threads
#   THREADS=1 MODELS=vit-b-32 bash benches/clip_cpu.sh
#
# Random checkpoints (ViT-L/14-336 is ~1.7 GB in f32) go to $BENCH_DIR, never into git.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$HOME/.cache/fisao-rs/venv-fixtures/bin/python}
BENCH_DIR=${BENCH_DIR:-/tmp/fisao-clip-bench}
THREADS=${THREADS:-2}
MODELS=${MODELS:-"vit-b-32 vit-l-14-336"}
REPEATS=${REPEATS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

HF_HUB_OFFLINE=1 "$PY" tests/fixtures/gen_clip.py --bench-dir "$BENCH_DIR"
cargo build --release -q -p fisao-benches --features clip --bin clip_cpu_bench
BIN="$CARGO_TARGET_DIR/release/clip_cpu_bench"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u +%FT%TZ); threads: $THREADS; repeats: $REPEATS (best of)"
for m in $MODELS; do
  # Batch sizes keep each timed pass at a few seconds on 2 cores.
  case $m in vit-b-32) imgs=16; txts=64 ;; *) imgs=4; txts=32 ;; esac
  py=$(HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$THREADS "$PY" benches/clip_cpu.py "$BENCH_DIR/$m" $imgs $txts "$REPEATS" "$THREADS" 2>/dev/null | tail -1)
  rs=$(RAYON_NUM_THREADS=$THREADS "$BIN" "$BENCH_DIR/$m" $imgs $txts "$REPEATS")
  echo "$py"
  echo "$rs"
  "$PY" - "$m" "$py" "$rs" <<'PYEOF'
import json, sys
m, py, rs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
for k in ["images_per_s", "texts_per_s"]:
    print(f"{m:14s} {k:13s} pytorch {py[k]:9.3f}  rust {rs[k]:9.3f}  ratio {rs[k] / py[k]:5.2f}x")
PYEOF
  # Other work on this small machine moves both halves by 10-20%: the load after each model says how much.
  echo "load after $m: $(cut -d' ' -f1-3 /proc/loadavg)"
done
