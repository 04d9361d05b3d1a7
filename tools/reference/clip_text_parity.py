"""Generates tests/data/clip_text/*.safetensors: tiny transformers CLIP text encoders with random weights, token
ids and every output, for spo's CLIP text-encoder parity tests (text/clip_text_model.hpp).

For each config NAME it writes NAME.safetensors holding every parameter under its transformers state-dict key
(`text_model.embeddings.token_embedding.weight`, ..., `text_projection.weight` for the projection model), plus
`input.input_ids` [B, L] (I64), `output.last_hidden_state` [B, L, W], `output.hidden_states.<i>` [B, L, W] for
i = 0..num_hidden_layers (the embeddings, then each layer's output), `output.pooled` [B, W] (pooler_output of the
text transformer) and, for the projection model, `output.text_embeds` [B, P]. The __metadata__ block holds the
model's config.json (as save_pretrained writes it) under "config" and the class name under "model".

The weights are random values rounded to float32 and stored as F32 (exact in float64, half the bytes); the model
runs in float64 with torch's default dtype set to float64 (transformers 4.47.1 builds CLIP's causal mask in the
default dtype), so outputs are float64 (F64).

Configs:
  - sd15_like: CLIPTextModel, quick_gelu, eos_token_id 2 (legacy pooling at argmax(input_ids), as every SD
    config), 77 positions, vocab 520 (the test tokenizer's geometry: "!" = 0, BOS 518, EOS 519 last), rows padded
    with EOS as SD1.5's tokenizer, and a row without EOS whose largest id occurs twice.
  - sdxl2_like: CLIPTextModelWithProjection, gelu, eos_token_id 519 (pooling at the first EOS), 32 positions and
    20-token inputs, rows padded with "!" as SDXL's second tokenizer, a row with two EOS and a row without EOS (the
    first-EOS rule then pools position 0, where argmax would not).

    python tools/reference/clip_text_parity.py tests/data/clip_text
"""
import json
import os
import sys
import tempfile

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

BOS, EOS, PAD_BANG = 518, 519, 0

CONFIGS = {
    "sd15_like": dict(cls=CLIPTextModel, batch=2, length=77,
                      config=dict(vocab_size=520, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                  num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                                  layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                                  projection_dim=32)),
    "sdxl2_like": dict(cls=CLIPTextModelWithProjection, batch=3, length=20,
                       config=dict(vocab_size=520, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, max_position_embeddings=32, hidden_act="gelu",
                                   layer_norm_eps=1e-6, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_BANG,
                                   projection_dim=24)),
}


def make_ids(name, batch, length, gen):
    words = lambda n: torch.randint(1, BOS, (n,), generator=gen)
    rows = []
    if name == "sd15_like":
        rows.append(torch.cat([torch.tensor([BOS]), words(10), torch.full((length - 11,), EOS)]))
        r = words(length)
        top = int(r.max())
        r[30] = top
        r[5] = top  # first occurrence of the largest id is at 5 (legacy argmax)
        rows.append(r)
    else:
        rows.append(torch.cat([torch.tensor([BOS]), words(6), torch.tensor([EOS]), torch.full((length - 8,), PAD_BANG)]))
        rows.append(torch.cat([torch.tensor([BOS]), words(3), torch.tensor([EOS]), words(4), torch.tensor([EOS]),
                               torch.full((length - 10,), PAD_BANG)]))
        r = words(length)
        r[7] = BOS - 1  # argmax would pool here; the first-EOS rule finds no EOS and pools position 0
        rows.append(r)
    ids = torch.stack(rows).to(torch.int64)
    assert ids.shape == (batch, length)
    return ids


def config_json(model):
    with tempfile.TemporaryDirectory() as d:
        model.config.save_pretrained(d)
        with open(os.path.join(d, "config.json")) as f:
            return json.load(f)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    for i, (name, spec) in enumerate(CONFIGS.items()):
        torch.manual_seed(300 + i)
        gen = torch.Generator().manual_seed(400 + i)
        model = spec["cls"](CLIPTextConfig(**spec["config"])).double().eval()
        with torch.no_grad():
            for key, p in model.named_parameters():
                base = 1.0 if "layer_norm" in key and key.endswith("weight") else 0.0
                p.copy_((base + 0.3 * torch.randn_like(p)).float().double())
        ids = make_ids(name, spec["batch"], spec["length"], gen)
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
            pooled = model.text_model(input_ids=ids).pooler_output
        tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
                   if not k.endswith("position_ids")}
        tensors["input.input_ids"] = ids
        tensors["output.last_hidden_state"] = out.last_hidden_state.contiguous()
        for j, h in enumerate(out.hidden_states):
            tensors[f"output.hidden_states.{j}"] = h.contiguous()
        tensors["output.pooled"] = pooled.contiguous()
        if spec["cls"] is CLIPTextModelWithProjection:
            tensors["output.text_embeds"] = out.text_embeds.contiguous()
        meta = {"config": json.dumps(config_json(model)), "model": spec["cls"].__name__}
        path = os.path.join(out_dir, name + ".safetensors")
        save_file(tensors, path, metadata=meta)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"wrote {path}: {n_params} parameters, ids {tuple(ids.shape)}, "
              f"{len(out.hidden_states)} hidden states")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/clip_text")
