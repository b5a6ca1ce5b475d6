#!/usr/bin/env python3
"""Paired CHAIR_i difference of two models on the same test images
(docs/demo.md, "Learning rate and beta chosen on validation").

    python3 docs/tools/demo_paired.py WORLD_TOML A.jsonl B.jsonl

A and B are `captions/*.jsonl` files of finished demo runs over the same
test images (the same seed's world). CHAIR_i is a ratio of sums over
images (hallucinated distinct objects / named distinct objects), so its
standard error is by the delta method with images as the independent units;
pairing the two models image by image removes the image-to-image spread they
share, which the unpaired ± of each row in the report does not.

Standard library only (Python 3.11+ for tomllib).
"""
import json
import math
import sys
import tomllib

from demo_reward_split import plural


def per_image(path, canon):
    """(hallucinated distinct objects, named distinct objects) per image."""
    rows = {}
    with open(path) as f:
        for line in f:
            c = json.loads(line)
            named, wrong = set(), set()
            for m in c["mentions"]:
                obj = canon.get(m["text"].lower(), m["text"].lower())
                named.add(obj)
                if not m["correct"]:
                    wrong.add(obj)
            rows[c["image"]] = (len(wrong), len(named))
    return rows


def linearised(rows, images):
    """CHAIR_i and each image's influence (h_i - R n_i) / mean(n)."""
    h = sum(rows[i][0] for i in images)
    n = sum(rows[i][1] for i in images)
    r = h / n
    mean_n = n / len(images)
    return r, [(rows[i][0] - r * rows[i][1]) / mean_n for i in images]


def se(values):
    k = len(values)
    mu = sum(values) / k
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (k - 1) / k)


def main(world_toml, path_a, path_b):
    world = tomllib.load(open(world_toml, "rb"))
    canon = {}
    for c in world["classes"]:
        canon[c["name"]] = c["name"]
        canon[plural(c["name"])] = c["name"]
    a, b = per_image(path_a, canon), per_image(path_b, canon)
    if set(a) != set(b):
        sys.exit("the two caption files cover different images")
    images = sorted(a)
    ra, za = linearised(a, images)
    rb, zb = linearised(b, images)
    diff = [x - y for x, y in zip(za, zb)]
    print(
        f"CHAIR_i A {ra:.4f} ± {se(za):.4f}, B {rb:.4f} ± {se(zb):.4f}; "
        f"A - B {ra - rb:+.4f} ± {se(diff):.4f} (paired, {len(images)} images)"
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
