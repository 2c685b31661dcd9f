"""PyTorch reference for scripts/ppo-bench.sh: one PPO update of the same tiny Llama as
`crucible-train ppo-bench` (the demo's model and settings), written independently in
PyTorch, on a random batch of the same shape. Prints one JSON line with the median.

The update: score every minibatch with the policy (log-probabilities at the sampling
temperature, entropy, values from a linear head on detached hidden states) and with the
frozen reference, k1 KL per token as a -beta*KL reward plus the score on the last token,
GAE (gamma, lambda), advantage whitening over valid tokens, then per minibatch the
clipped policy loss and clipped value loss (token mean), backward, global-norm clipping
and an AdamW step."""
import argparse
import copy
import json
import math
import time

import torch
import torch.nn.functional as F


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):
    # x: [B, H, T, D]; rotate the two halves, as Hugging Face's llama does.
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Block(torch.nn.Module):
    def __init__(self, hidden, heads, inter, eps):
        super().__init__()
        self.heads, self.hd = heads, hidden // heads
        self.attn_norm = RMSNorm(hidden, eps)
        self.q = torch.nn.Linear(hidden, hidden, bias=False)
        self.k = torch.nn.Linear(hidden, hidden, bias=False)
        self.v = torch.nn.Linear(hidden, hidden, bias=False)
        self.o = torch.nn.Linear(hidden, hidden, bias=False)
        self.mlp_norm = RMSNorm(hidden, eps)
        self.gate = torch.nn.Linear(hidden, inter, bias=False)
        self.up = torch.nn.Linear(hidden, inter, bias=False)
        self.down = torch.nn.Linear(inter, hidden, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(torch.nn.Module):
    def __init__(self, vocab, hidden, layers, heads, inter, eps=1e-5, theta=10000.0):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.blocks = torch.nn.ModuleList(Block(hidden, heads, inter, eps) for _ in range(layers))
        self.norm = RMSNorm(hidden, eps)
        self.lm_head = torch.nn.Linear(hidden, vocab, bias=False)
        hd = hidden // heads
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2).float() / hd))

    def hidden(self, ids):
        t = ids.shape[1]
        freqs = torch.outer(torch.arange(t).float(), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return self.norm(x)


def score(model, head, ids, plen, temperature):
    """Log-probabilities, entropy and values of the response tokens ids[:, plen:]."""
    h = model.hidden(ids)[:, plen - 1 : -1]
    lsm = F.log_softmax(model.lm_head(h) / temperature, dim=-1)
    logp = lsm.gather(-1, ids[:, plen:].unsqueeze(-1)).squeeze(-1)
    entropy = -(lsm.exp() * lsm).sum(-1)
    values = head(h.detach()).squeeze(-1) if head is not None else None
    return logp, entropy, values


def update(policy, head, reference, opt, batch, scores, plen, cfg, gen):
    n = batch.shape[0]
    order = torch.randperm(n, generator=gen)
    mbs = [order[i : i + cfg["minibatch"]] for i in range(0, n, cfg["minibatch"])]
    with torch.no_grad():
        old = [score(policy, head, batch[mb], plen, cfg["temperature"]) for mb in mbs]
        refs = [score(reference, None, batch[mb], plen, cfg["temperature"])[0] for mb in mbs]
        old_lp = torch.cat([o[0] for o in old]).double()
        ref_lp = torch.cat(refs).double()
        vals = torch.cat([o[2] for o in old]).double()
        sc = torch.cat([scores[mb] for mb in mbs]).double()
        rewards = -cfg["kl_coef"] * (old_lp - ref_lp)
        rewards[:, -1] += sc
        w = rewards.shape[1]
        adv = torch.zeros_like(rewards)
        last = torch.zeros(n, dtype=torch.float64)
        for t in reversed(range(w)):
            nxt = vals[:, t + 1] if t + 1 < w else torch.zeros(n, dtype=torch.float64)
            delta = rewards[:, t] + cfg["gamma"] * nxt - vals[:, t]
            last = delta + cfg["gamma"] * cfg["lam"] * last
            adv[:, t] = last
        ret = adv + vals
        adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
    params = [p for p in policy.parameters()] + [p for p in head.parameters()]
    start = 0
    for m, mb in enumerate(mbs):
        rows = slice(start, start + len(mb))
        start += len(mb)
        logp, entropy, v = score(policy, head, batch[mb], plen, cfg["temperature"])
        a, r = adv[rows].float(), ret[rows].float()
        ratio = torch.exp(logp - old[m][0])
        pg = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg["clip"], 1 + cfg["clip"])).mean()
        ov = old[m][2]
        vc = ov + (v - ov).clamp(-cfg["vf_clip"], cfg["vf_clip"])
        vl = 0.5 * torch.max((v - r) ** 2, (vc - r) ** 2).mean()
        loss = pg + cfg["vf_coef"] * vl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"])
        opt.step()
        # The statistics the Rust learner reads back each minibatch.
        float(pg.detach()), float(vl.detach()), float(entropy.mean().detach()), float(ratio.mean().detach())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--response-len", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=99)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=192)
    ap.add_argument("--minibatch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    cfg = dict(minibatch=a.minibatch, temperature=1.0, kl_coef=0.05, gamma=1.0, lam=0.95,
               clip=0.2, vf_clip=0.2, vf_coef=0.1, max_grad_norm=1.0)
    policy = Llama(a.vocab, a.hidden, a.layers, a.heads, a.intermediate)
    reference = copy.deepcopy(policy).requires_grad_(False)
    head = torch.nn.Linear(a.hidden, 1)
    opt = torch.optim.AdamW(list(policy.parameters()) + list(head.parameters()), lr=a.lr,
                            weight_decay=0.0)
    n = a.prompts * a.group
    prompts = torch.randint(2, a.vocab, (a.prompts, a.prompt_len), generator=gen)
    responses = torch.randint(2, a.vocab, (n, a.response_len), generator=gen)
    responses[:, -1] = 1  # the end token
    batch = torch.cat([prompts.repeat_interleave(a.group, 0), responses], dim=1)
    scores = torch.randint(0, 2, (n,), generator=gen).float()
    times = []
    for i in range(a.repeats + 1):
        t = time.perf_counter()
        update(policy, head, reference, opt, batch, scores, a.prompt_len, cfg, gen)
        if i > 0:
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(json.dumps({"impl": "pytorch %s" % torch.__version__, "samples": n,
                      "prompt_len": a.prompt_len, "response_len": a.response_len,
                      "threads": torch.get_num_threads(), "update_ms": times,
                      "median_ms": times[len(times) // 2]}))


if __name__ == "__main__":
    main()
