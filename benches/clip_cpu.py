#!/usr/bin/env python3
"""PyTorch half of benches/clip_cpu.sh: images/s and texts/s of transformers' CLIPModel
on the CPU, on the same checkpoint directory, inputs and thread count as the Rust binary
clip_cpu_bench (benches/src/bin/clip_cpu_bench.rs). Prints one JSON line.

Usage: clip_cpu.py <checkpoint dir> <images> <texts> <repeats> <threads>
"""

import json
import math
import sys
import time

import torch
import transformers
from tokenizers import Tokenizer
from transformers import CLIPModel

CAPTIONS = [
    "a photo of a cat",
    "a man riding a wave on top of a surfboard",
    "two dogs playing with a frisbee in a grassy park",
    "a kitchen with a stove, a sink and a refrigerator",
    "a plate of food with broccoli, rice and a piece of chicken",
    "a red double decker bus driving down a city street next to tall buildings",
    "a giraffe standing next to a tree in a zoo enclosure",
    "a laptop computer sitting on top of a wooden desk beside a cup of coffee and a notebook",
]


def pixels(n, size):
    """The Rust binary's pattern: sin((i mod 9973) * 0.001) * 2 for flat index i."""
    i = torch.arange(n * 3 * size * size, dtype=torch.float64)
    return (torch.sin(torch.remainder(i, 9973) * 0.001) * 2).to(torch.float32).reshape(n, 3, size, size)


def main():
    d, n_images, n_texts, repeats, threads = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = CLIPModel.from_pretrained(d, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    tok = Tokenizer.from_file(f"{d}/tokenizer.json")
    tok.enable_truncation(77)
    pad = tok.token_to_id("<|endoftext|>")
    tok.enable_padding(pad_id=pad, pad_token="<|endoftext|>")
    size = model.config.vision_config.image_size
    px = pixels(n_images, size)
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(n_texts)]

    def embed_texts():
        enc = tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        return model.get_text_features(input_ids=ids, attention_mask=mask)

    def embed_images():
        return model.get_image_features(pixel_values=px)

    best_img = best_txt = math.inf
    with torch.inference_mode():
        embed_images(), embed_texts()  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            embed_images()
            best_img = min(best_img, time.perf_counter() - t)
            t = time.perf_counter()
            embed_texts()
            best_txt = min(best_txt, time.perf_counter() - t)
    print(json.dumps({
        "side": "pytorch", "dir": d, "threads": torch.get_num_threads(), "images": n_images, "texts": n_texts,
        "images_per_s": round(n_images / best_img, 4), "texts_per_s": round(n_texts / best_txt, 3),
        "load_s": round(load_s, 2), "torch": torch.__version__, "transformers": transformers.__version__,
        "attn": model.config._attn_implementation,
    }))


if __name__ == "__main__":
    main()
