"""A ViT-B/32-shaped CLIP with random weights, for timing the highlighter.

Usage: make_random_clip.py OUT_DIR TOKENIZER_JSON
Writes config.json, model.safetensors (f32, about 600 MB) and a copy of the
tokenizer. Shapes are openai/clip-vit-base-patch32's; the weights are
transformers' random initialisation (seed 0), so only timings mean anything.
Runs offline (HF_HUB_OFFLINE=1): nothing is downloaded.
"""
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from transformers import CLIPConfig, CLIPModel  # noqa: E402


def main() -> None:
    out, tokenizer = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                         num_hidden_layers=12, max_position_embeddings=77, vocab_size=49408,
                         hidden_act="quick_gelu"),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                           num_hidden_layers=12, image_size=224, patch_size=32,
                           hidden_act="quick_gelu"),
        projection_dim=512,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(tokenizer, os.path.join(out, "tokenizer.json"))


if __name__ == "__main__":
    main()
