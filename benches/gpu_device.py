"""The PyTorch half of benches/gpu_device.sh (docs/perf.md, "wgpu").

  python benches/gpu_device.py write DIR --model vit-l-14-336|vit-l-14-336-2l|lavapipe-1l|tiny
      random CLIP weights (std 0.02, fp16) as DIR/model.safetensors plus
      config.json and tokenizer.json; the vision tower has the full shape,
      the text tower is shrunk (only images/s is measured).
  python benches/gpu_device.py time DIR BATCH REPEATS
      images/s of transformers' CLIPVisionModelWithProjection (sdpa
      attention) on CUDA in fp16 (CPU fp32 when there is no CUDA: the
      --tiny run here), same weights and pixels as gpu_device_bench; then the
      cosine similarity with the wgpu embeddings in DIR/gpu_embeddings.f32.
Prints one JSON line.
"""
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

SHAPES = {
    "vit-l-14-336": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                         num_attention_heads=16, image_size=336, patch_size=14),
    # ViT-L/14-336 with 2 of its 24 layers: per-layer shapes for lavapipe profiling.
    "vit-l-14-336-2l": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=2,
                            num_attention_heads=16, image_size=336, patch_size=14),
    # Small enough for lavapipe on 2 cores, same head dim (64) as ViT-L:
    # the per-kernel profile of the structure changes (docs/perf.md, "wgpu").
    "lavapipe-1l": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=1,
                        num_attention_heads=8, image_size=224, patch_size=14),
    # ViT-L/14-336's 24 layers and 336-px pixels at width 64 with 42-px patches
    # (65 tokens): the same kernel launches and pixel upload with almost no
    # arithmetic, to measure the host side of a call (GpuStats::host_ns,
    # per_call.host_ms) at batch 32 on a slow adapter such as lavapipe.
    "vit-l-host": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=24,
                       num_attention_heads=4, image_size=336, patch_size=42),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, image_size=56, patch_size=14),
}
# The tiny vision tower with a text tower of CLIP ViT-L's width (768) and
# vocabulary, one narrow layer: the host side of a text call
# (`gpu_device_bench --texts`) at its real size, quick on lavapipe.
SHAPES["text-host"] = SHAPES["tiny"]
TEXT = {"text-host": dict(hidden_size=768, intermediate_size=256, num_attention_heads=12),
        # CLIP ViT-L/14-336's text tower, for the text comparison (TEXTS=1).
        "vit-l-14-336": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                             num_attention_heads=12)}
PROJ = {"vit-l-14-336": 768, "vit-l-14-336-2l": 768, "vit-l-host": 64,
        "lavapipe-1l": 512, "tiny": 32, "text-host": 32}


def config(model):
    vision = dict(SHAPES[model], hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3)
    text = dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    text.update(TEXT.get(model, {}))
    return dict(model_type="clip", architectures=["CLIPModel"], projection_dim=PROJ[model],
                logit_scale_init_value=2.6592, text_config=text, vision_config=vision)


def tensors(cfg):
    """Every CLIPModel tensor name and shape."""
    v, t, p = cfg["vision_config"], cfg["text_config"], cfg["projection_dim"]
    out = {"logit_scale": [], "visual_projection.weight": [p, v["hidden_size"]],
           "text_projection.weight": [p, t["hidden_size"]]}
    grid = v["image_size"] // v["patch_size"]
    h = v["hidden_size"]
    out.update({
        "vision_model.embeddings.class_embedding": [h],
        "vision_model.embeddings.patch_embedding.weight": [h, 3, v["patch_size"], v["patch_size"]],
        "vision_model.embeddings.position_embedding.weight": [grid * grid + 1, h],
    })
    for name in ["pre_layrnorm", "post_layernorm"]:
        out[f"vision_model.{name}.weight"] = [h]
        out[f"vision_model.{name}.bias"] = [h]
    th = t["hidden_size"]
    out["text_model.embeddings.token_embedding.weight"] = [t["vocab_size"], th]
    out["text_model.embeddings.position_embedding.weight"] = [t["max_position_embeddings"], th]
    out["text_model.final_layer_norm.weight"] = [th]
    out["text_model.final_layer_norm.bias"] = [th]
    for tower, c in [("vision_model", v), ("text_model", t)]:
        h, i = c["hidden_size"], c["intermediate_size"]
        for l in range(c["num_hidden_layers"]):
            pre = f"{tower}.encoder.layers.{l}"
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"]:
                out[f"{pre}.self_attn.{proj}.weight"] = [h, h]
                out[f"{pre}.self_attn.{proj}.bias"] = [h]
            for ln in ["layer_norm1", "layer_norm2"]:
                out[f"{pre}.{ln}.weight"] = [h]
                out[f"{pre}.{ln}.bias"] = [h]
            out[f"{pre}.mlp.fc1.weight"] = [i, h]
            out[f"{pre}.mlp.fc1.bias"] = [i]
            out[f"{pre}.mlp.fc2.weight"] = [h, i]
            out[f"{pre}.mlp.fc2.bias"] = [h]
    return out


def write(directory, model):
    from safetensors.torch import save_file
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cfg = config(model)
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in tensors(cfg).items():
        if name == "logit_scale":
            state[name] = torch.tensor(2.6592)
        elif name.endswith(".weight") and len(shape) == 1:  # LayerNorm gains
            state[name] = 1.0 + 0.02 * torch.randn(shape, generator=g)
        else:
            state[name] = 0.02 * torch.randn(shape, generator=g)
    state = {k: v.to(torch.float16).contiguous() for k, v in state.items()}
    save_file(state, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(cfg, indent=1))
    shutil.copy(Path(__file__).resolve().parent.parent / "tests/fixtures/clip/tokenizer.json", d / "tokenizer.json")


def pixels(batch, size):
    """Same formula as gpu_device_bench: sin((i % 9973) * 0.001) * 2."""
    i = torch.arange(batch * 3 * size * size, dtype=torch.float64)
    return (torch.sin(torch.remainder(i, 9973) * 0.001) * 2).float().reshape(batch, 3, size, size)


def load_tower(d, cfg, config_cls, model_cls, part, projection):
    """One CLIP tower (sdpa) with its projection from `d`'s weights, on the
    timing device: CUDA fp16 where there is one, else CPU f32."""
    from safetensors.torch import load_file
    cuda = torch.cuda.is_available()
    dev, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    tcfg = config_cls(**cfg[f"{part}_config"], projection_dim=cfg["projection_dim"])
    tcfg._attn_implementation = "sdpa"
    model = model_cls(tcfg)
    prefixes = (f"{part}_model.", f"{projection}.")
    state = {k: v for k, v in load_file(str(d / "model.safetensors")).items() if k.startswith(prefixes)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing or unexpected:
        raise SystemExit(f"weights do not match: missing {missing}, unexpected {unexpected}")
    return model.to(dev, dtype).eval(), dev, dtype


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def device_name():
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def add_parity(result, emb, theirs):
    """Cosine and relative difference of the first rows of `emb` against the
    wgpu side's embeddings in `theirs` (little-endian f32), when written."""
    if theirs.exists():
        g = torch.frombuffer(bytearray(theirs.read_bytes()), dtype=torch.float32).reshape(-1, emb.shape[1])
        ours = emb[: g.shape[0]].cpu()
        cos = torch.nn.functional.cosine_similarity(ours, g, dim=1)
        rel = ((ours - g).abs().max() / ours.abs().max()).item()
        result.update(min_cosine_vs_wgpu=round(cos.min().item(), 6), max_rel_diff_vs_wgpu=round(rel, 6))


def best_of(repeats, run):
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def time_torch(directory, batch, repeats):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    d = Path(directory)
    cfg = json.loads((d / "config.json").read_text())
    model, dev, dtype = load_tower(d, cfg, CLIPVisionConfig, CLIPVisionModelWithProjection,
                                   "vision", "visual_projection")
    host = pixels(batch, cfg["vision_config"]["image_size"])
    x = host.to(dev, dtype)
    with torch.inference_mode():
        emb = model(pixel_values=x).image_embeds.float()
        sync()
        # The headline: pixels already on the device in fp16 (the stricter
        # comparison). The wgpu side's time includes uploading f32 pixels
        # from the host, so "from_host" times that here too, for reference.
        best = best_of(repeats, lambda: model(pixel_values=x))
        from_host = best_of(repeats, lambda: model(pixel_values=host.to(dev, dtype)))
    result = dict(side="pytorch", device=device_name(),
                  dtype=str(dtype), batch=batch, best_s=round(best, 4),
                  images_per_s=round(batch / best, 3),
                  from_host_best_s=round(from_host, 4),
                  images_per_s_from_host=round(batch / from_host, 3))
    add_parity(result, emb, d / "gpu_embeddings.f32")
    print(json.dumps(result))


def token_ids(batch, window, vocab):
    """Same sequences as `gpu_device_bench --texts`: start token, pattern ids, end token."""
    t = torch.arange(batch, dtype=torch.int64)[:, None]
    i = torch.arange(1, window - 1, dtype=torch.int64)[None, :]
    body = ((t * 7919 + i * 104_729) % 49_000) % vocab
    start = torch.full((batch, 1), vocab - 2, dtype=torch.int64)
    end = torch.full((batch, 1), vocab - 1, dtype=torch.int64)
    return torch.cat([start, body, end], dim=1)


def time_text(directory, batch, repeats):
    """The text tower (CLIPTextModelWithProjection, sdpa) on the same weights and ids."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    d = Path(directory)
    cfg = json.loads((d / "config.json").read_text())
    model, dev, dtype = load_tower(d, cfg, CLIPTextConfig, CLIPTextModelWithProjection,
                                   "text", "text_projection")
    t = cfg["text_config"]
    ids = token_ids(batch, t["max_position_embeddings"], t["vocab_size"]).to(dev)
    with torch.inference_mode():
        emb = model(input_ids=ids).text_embeds.float()
        sync()
        best = best_of(repeats, lambda: model(input_ids=ids))
    result = dict(side="pytorch-texts", device=device_name(),
                  dtype=str(dtype), batch=batch, best_s=round(best, 4),
                  texts_per_s=round(batch / best, 3))
    add_parity(result, emb, d / "gpu_text_embeddings.f32")
    print(json.dumps(result))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "write":
        write(sys.argv[2], sys.argv[4] if len(sys.argv) > 4 else "vit-l-14-336")
    elif cmd == "time":
        time_torch(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "time-texts":
        time_text(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown command {cmd!r}: expected write, time or time-texts")
