#!/usr/bin/env python3
"""transformers side of the LLaVA device check (benches/llava_device.sh).

Builds a LLaVA-1.5-7B-shaped LlavaForConditionalGeneration with random weights
(bf16 on CUDA; f32 on CPU with --tiny), saves it with save_pretrained for the Rust
bench to load (same weights on both sides), and measures prefill / decode tokens/s of
`generate` with the same prompt and protocol as gpu-train/src/bin/llava_bench.rs,
plus the peak memory of a PEFT LoRA forward+backward when peft is importable.
Prints one JSON object per measurement.
"""

import argparse
import json
import os
import time

import torch


def config(tiny):
    import transformers

    if tiny:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      image_size=56, patch_size=14, projection_dim=32)
        text = dict(vocab_size=2200, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024, rms_norm_eps=1e-5)
    else:
        # llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 and Vicuna-7B.
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=336, patch_size=14, projection_dim=768)
        text = dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5)
    v = transformers.CLIPVisionConfig(hidden_act="quick_gelu", layer_norm_eps=1e-5, **vision)
    t = transformers.LlamaConfig(bos_token_id=1, eos_token_id=2, pad_token_id=text["vocab_size"] - 1,
                                 tie_word_embeddings=False, **text)
    return transformers.LlavaConfig(vision_config=v.to_dict(), text_config=t.to_dict(),
                                    image_token_id=text["vocab_size"] - 64, vision_feature_layer=-2,
                                    vision_feature_select_strategy="default", projector_hidden_act="gelu",
                                    tie_word_embeddings=False)


def prompt(cfg, text_len):
    """BOS, the image run, then text ids: the same as llava_bench.rs."""
    n_img = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    vocab = cfg.text_config.vocab_size
    return [1] + [cfg.image_token_id] * n_img + [1000 + (i * 7919) % (vocab - 1100) for i in range(text_len)]


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def emit(**kw):
    print(json.dumps({"side": "python", **kw}), flush=True)


@torch.no_grad()
def bench_batch(model, cfg, b, args, dev):
    p = prompt(cfg, args.prompt_text)
    ids = torch.tensor([p] * b, device=dev)
    mask = torch.ones_like(ids)
    v = cfg.vision_config
    g = torch.Generator(device=dev).manual_seed(0)
    px = torch.randn(b, 3, v.image_size, v.image_size, generator=g, device=dev).to(model.dtype)
    kw = dict(input_ids=ids, attention_mask=mask, pixel_values=px, do_sample=False, pad_token_id=0)
    model.generate(**kw, max_new_tokens=4, min_new_tokens=4)  # warm-up
    best = float("inf")
    for _ in range(3):
        sync(dev)
        t = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, pixel_values=px, use_cache=True, logits_to_keep=1)
        out.logits[:, -1].argmax(-1)
        sync(dev)
        best = min(best, time.perf_counter() - t)
    del out
    sync(dev)
    t = time.perf_counter()
    gen = model.generate(**kw, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    sync(dev)
    total = time.perf_counter() - t
    new = (gen.shape[1] - len(p)) * b
    emit(what="generate", batch=b, prompt_tokens=len(p), new_tokens=args.new_tokens, prefill_s=best,
         prefill_tok_s=b * len(p) / best, decode_s=total - best, decode_tok_s=(new - b) / (total - best),
         total_s=total)


def bench_train(model, cfg, args, dev):
    try:
        import peft
    except ImportError:
        emit(what="lora_fwd_bwd", skipped="peft not importable")
        return
    target = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    pm = peft.get_peft_model(model, peft.LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank,
                                                    lora_dropout=0.05, target_modules=target))
    pm.train()
    vocab = cfg.text_config.vocab_size
    ids = torch.tensor([[1000 + (i * 7919) % (vocab - 1100) for i in range(args.train_len)]], device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    sync(dev)
    t = time.perf_counter()
    logits = pm(input_ids=ids).logits
    lp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None]).mean()
    lp.backward()
    sync(dev)
    secs = time.perf_counter() - t
    extra = {}
    if dev.type == "cuda":
        extra = dict(peak_allocated_mib=torch.cuda.max_memory_allocated() / 2**20,
                     allocated_before_mib=base / 2**20, reserved_mib=torch.cuda.memory_reserved() / 2**20)
    n = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    emit(what="lora_fwd_bwd", tokens=args.train_len, lora_rank=args.lora_rank, trainable_params=n, seconds=secs,
         **extra)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="folder for the checkpoint the Rust bench loads")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes, f32, CPU allowed (script self-test)")
    ap.add_argument("--prompt-text", type=int, default=40)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--lora-rank", type=int, default=128)
    ap.add_argument("--train-len", type=int, default=512)
    args = ap.parse_args()
    import transformers

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    emit(transformers=transformers.__version__, torch=torch.__version__, device=str(dev),
         gpu=torch.cuda.get_device_name() if dev.type == "cuda" else None)
    cfg = config(args.tiny)
    torch.manual_seed(0)
    t = time.perf_counter()
    torch.set_default_dtype(dtype)
    with torch.device(dev):
        model = transformers.LlavaForConditionalGeneration(cfg).eval()
    torch.set_default_dtype(torch.float32)
    sync(dev)
    emit(what="init", seconds=time.perf_counter() - t, dtype=str(model.dtype),
         params=sum(p.numel() for p in model.parameters()))
    t = time.perf_counter()
    model.save_pretrained(args.out, max_shard_size="4GB")
    os.sync()
    emit(what="save", seconds=time.perf_counter() - t)
    for b in [int(x) for x in args.batches.split(",")]:
        bench_batch(model, cfg, b, args, dev)
    bench_train(model, cfg, args, dev)


if __name__ == "__main__":
    main()
