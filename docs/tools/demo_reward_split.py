#!/usr/bin/env python3
"""Where the token reward goes, from a finished `cargo xtask demo` run
(docs/demo.md, "Current default"): eq. 8 (method.md section 6, the run's own
band from results.json) applied to the first mentions in the SFT model's
greedy test captions (captions/sft.jsonl), split into correct mentions,
hallucinated mentions whose pair partner is correctly named in the same
caption ("cued": mostly the planted bias) and other hallucinations.

    python3 docs/tools/demo_reward_split.py OUT_DIR WORLD_TOML

Standard library only (Python 3.11+ for tomllib).
"""
import json
import sys
import tomllib

IRREGULAR = {"knife": "knives", "person": "people", "mouse": "mice"}


def plural(name):
    head, _, last = name.rpartition(" ")
    if last in IRREGULAR:
        p = IRREGULAR[last]
    elif last.endswith(("s", "x", "ch", "sh")):
        p = last + "es"
    else:
        p = last + "s"
    return (head + " " + p) if head else p


def main(out_dir, world_toml):
    world = tomllib.load(open(world_toml, "rb"))
    canon = {}
    for c in world["classes"]:
        canon[c["name"]] = c["name"]
        canon[plural(c["name"])] = c["name"]
    partner = {}
    for p in world.get("pairs", []):
        a, b = p["objects"]
        partner[a], partner[b] = b, a
    res = json.load(open(f"{out_dir}/results.json"))
    band = res["stages"]["baselines"]["token"]
    lo, hi, smin, smax = band["lo"], band["hi"], band["s_min"], band["s_max"]

    def reward(s):
        s = min(max(s, smin), smax)
        if s >= hi:
            return (s - hi) / (smax - hi)
        if s <= lo:
            return -(lo - s) / (lo - smin)
        return 0.0

    groups = {"correct": [], "cued hallucination": [], "other hallucination": []}
    repeats = captions = 0
    for line in open(f"{out_dir}/captions/sft.jsonl"):
        cap = json.loads(line)
        captions += 1
        named = [(canon.get(m["text"].lower(), m["text"].lower()), m) for m in cap["mentions"]]
        correct = {n for n, m in named if m["correct"]}
        seen = set()
        for n, m in named:
            if n in seen:
                repeats += 1
                continue
            seen.add(n)
            if m["correct"]:
                groups["correct"].append(m["score"])
            elif partner.get(n) in correct:
                groups["cued hallucination"].append(m["score"])
            else:
                groups["other hallucination"].append(m["score"])
    print(f"{out_dir}: band lo {lo:.2f} hi {hi:.2f} s_min {smin:.2f} s_max {smax:.2f}")
    for name, scores in groups.items():
        if not scores:
            continue
        n = len(scores)
        print(
            f"  {name:20s} {n:5d} ({n / captions:.3f} per caption)  mean score {sum(scores) / n:6.2f}"
            f"  below lo {sum(s <= lo for s in scores) / n:.2f}  above hi {sum(s >= hi for s in scores) / n:.2f}"
            f"  mean reward {sum(map(reward, scores)) / n:+.3f}"
        )
    print(f"  repeats              {repeats:5d} ({repeats / captions:.3f} per caption), reward -1 each")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
