"""Tabulate a learning-rate / beta sweep of `fisao-demo` runs (docs/demo.md,
"Learning rate and beta chosen on validation").

Usage: python3 docs/tools/demo_sweep.py [--test] SFT_VAL_RUN RUN_DIR...

SFT_VAL_RUN is a token run made with `--ppo-lr 1e-30 --ppo-batches 1
--eval-every 1`: its one validation point is the untouched SFT policy's
greedy validation captions. Each RUN_DIR holds one finished run; the row
is the variant's checkpoint that the demo shipped (selected on validation
F1). Without --test only validation numbers are printed, so the setting can
be chosen before any test number is seen; the rule (recall within 5 points
of SFT on validation, then the lowest validation CHAIR_i) is applied here.
"""

import json
import sys


def load(run):
    with open(f"{run}/results.json") as f:
        return json.load(f)


def shipped(variant):
    """Validation metrics of the checkpoint the run selected."""
    points = dict((b, m) for b, m in variant["validation"])
    return points[variant["selected_batch"]]


def main(argv):
    test = "--test" in argv
    args = [a for a in argv if a != "--test"]
    if len(args) < 2:
        sys.exit(__doc__)
    sft_val = shipped(load(args[0])["stages"]["ppo"][0])
    floor = sft_val["recall"]["value"] - 0.05
    print(
        f"SFT validation: CHAIR_i {sft_val['chair_i']['value']:.4f}, "
        f"recall {sft_val['recall']['value']:.4f}, F1 {sft_val['f1']:.4f}; "
        f"eligible if validation recall >= {floor:.4f}"
    )
    head = "| lr | beta | variant | selected batch | val CHAIR_i | val recall | val F1 | eligible | val points (batch: CHAIR_i/recall) |"
    if test:
        head += " test CHAIR_i | test recall | test CHAIR_i vs SFT | test recall vs SFT | wall s |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    best, best_f1 = None, None
    for run in args[1:]:
        r = load(run)
        spec = r["stages"]["ppo_spec"]
        for v in r["stages"]["ppo"]:
            m = shipped(v)
            ci, rc = m["chair_i"]["value"], m["recall"]["value"]
            ok = rc >= floor
            pts = ", ".join(
                f"{b}: {p['chair_i']['value']:.3f}/{p['recall']['value']:.3f}"
                for b, p in v["validation"]
            )
            row = (
                f"| {spec['learning_rate']:g} | {spec['beta']:g} | {v['name']} | "
                f"{v['selected_batch']} | {ci:.3f} ± {m['chair_i']['se']:.3f} | "
                f"{rc:.3f} | {m['f1']:.3f} | {'yes' if ok else 'no'} | {pts} |"
            )
            if test:
                t, s = r["models"][v["name"]], r["models"]["sft"]
                rel = (t["chair_i"] / s["chair_i"] - 1) * 100
                row += (
                    f" {t['chair_i']:.3f} ± {t['se']['chair_i']:.3f} | "
                    f"{t['recall']:.3f} ± {t['se']['recall']:.3f} | {rel:+.0f}% | "
                    f"{(t['recall'] - s['recall']) * 100:+.1f} | "
                    f"{r['seconds'].get(v['name'], 0):.0f} |"
                )
            print(row)
            if v["name"] == "fisao-token" and (best_f1 is None or m["f1"] > best_f1[0]):
                best_f1 = (m["f1"], spec["learning_rate"], spec["beta"], run)
            if v["name"] == "fisao-token" and ok:
                key = (round(ci, 3), -round(rc, 3))
                if best is None or key < best[0]:
                    best = (key, spec["learning_rate"], spec["beta"], run)
    if best:
        print(f"chosen by the rule: lr {best[1]:g}, beta {best[2]:g} ({best[3]})")
    else:
        print("no fisao-token setting meets the recall constraint; highest validation F1: "
              f"lr {best_f1[1]:g}, beta {best_f1[2]:g} ({best_f1[3]})")


if __name__ == "__main__":
    main(sys.argv[1:])
