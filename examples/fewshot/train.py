"""Train the few-shot in-context-learning model on Omniglot and export it to ONNX.

The model is a softmax-free decoder-only transformer (no positional embedding):
    h = Linear(804, d)(x)
    per block:  h = h + Wo · concat_heads( sum_{s<=t} f(q_t·k_s * scale) v_s )
                h = h + Linear(ffn, d)(relu(Linear(d, ffn)(h)))
    y = Linear(d, 20)(h)
with f = identity (default) or ReLU; the causal mask is a tril of ones built from the runtime
sequence length and multiplied into the scores. --norm ln adds pre-LayerNorms (+ a final one);
--attn softmax is only for comparison (the compiler rejects it).
--embed conv replaces the input Linear by a per-token CNN over each token's 28x28 image
(ConvEmbed: Conv2d(1, 8, 5, stride 2) + ReLU -> Conv2d(8, 16, 5, stride 2) + ReLU -> flatten,
then Linear([256 CNN features, (784 raw pixels with --conv-pixels), 20 label slots] -> d)).

Example:
    python train.py --data /work/shared/data/omniglot --out model.onnx
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data as fsdata  # noqa: E402

N_PIX, N_SLOTS, N_FEAT = fsdata.N_PIX, fsdata.N_SLOTS, fsdata.N_FEAT


# ----------------------------------------------------------------------------------------- model
class Attention(nn.Module):
    def __init__(self, d: int, heads: int, attn: str):
        super().__init__()
        self.h, self.dh, self.attn = heads, d // heads, attn
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.scale = 1.0 / math.sqrt(self.dh)

    def forward(self, x):
        b, t, d = x.shape
        q = self.q(x).reshape(b, t, self.h, self.dh).transpose(1, 2)
        k = self.k(x).reshape(b, t, self.h, self.dh).transpose(1, 2)
        v = self.v(x).reshape(b, t, self.h, self.dh).transpose(1, 2)
        s = torch.matmul(q, k.transpose(-1, -2)) * self.scale  # [b, h, t, t]
        mask = torch.ones(t, t, dtype=x.dtype, device=x.device).tril()
        if self.attn == "softmax":
            a = torch.softmax(s.masked_fill(mask == 0, float("-inf")), dim=-1)
        elif self.attn == "relu":
            a = torch.relu(s) * mask
        else:  # identity
            a = s * mask
        out = torch.matmul(a, v).transpose(1, 2).reshape(b, t, d)
        return self.o(out)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, attn: str, norm: str):
        super().__init__()
        self.attn = Attention(d, heads, attn)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.n1 = nn.LayerNorm(d) if norm == "ln" else nn.Identity()
        self.n2 = nn.LayerNorm(d) if norm == "ln" else nn.Identity()

    def forward(self, h):
        h = h + self.attn(self.n1(h))
        h = h + self.fc2(torch.relu(self.fc1(self.n2(h))))
        return h


class ConvEmbed(nn.Module):
    """Per-token convolutional embedding: each token's 28x28 image through a small CNN
    (Conv2d(1, c1, 5, stride 2) + ReLU -> Conv2d(c1, c2, 5, stride 2) + ReLU -> flatten), then
    one Linear over [CNN features, 20 label slots] -> d.  No pooling, no normalisation: the
    compiler lowers each Conv within a token as a Dense with the unrolled kernel."""

    def __init__(self, d: int, c1: int = 8, c2: int = 16, pixels: bool = False):
        super().__init__()
        self.pixels = pixels  # also feed the raw pixels to the projection (a linear skip path)
        self.c1 = nn.Conv2d(1, c1, 5, stride=2)  # 28x28 -> 12x12
        self.c2 = nn.Conv2d(c1, c2, 5, stride=2)  # 12x12 -> 4x4
        self.proj = nn.Linear(c2 * 4 * 4 + (N_PIX if pixels else 0) + N_SLOTS, d)

    def forward(self, x):
        b, t, _ = x.shape
        img, lab = x[..., :N_PIX], x[..., N_PIX:]
        z = torch.relu(self.c1(img.reshape(b * t, 1, 28, 28)))
        z = torch.relu(self.c2(z)).reshape(b, t, -1)
        return self.proj(torch.cat([z, img, lab] if self.pixels else [z, lab], dim=-1))


class FewShotTransformer(nn.Module):
    def __init__(self, d=64, heads=2, ffn=128, layers=2, attn="identity", norm="none", pre_ffn=0,
                 embed="linear", conv_ch=(8, 16), conv_pixels=False):
        super().__init__()
        self.cfg = dict(d=d, heads=heads, ffn=ffn, layers=layers, attn=attn, norm=norm, pre_ffn=pre_ffn)
        if embed == "conv":
            self.cfg.update(embed="conv", conv_ch=list(conv_ch), conv_pixels=conv_pixels)
            self.inp = ConvEmbed(d, *conv_ch, pixels=conv_pixels)
        else:  # the shipped model's recipe: one Linear over the whole 804-value token
            self.inp = nn.Linear(N_FEAT, d)
        # optional per-token residual ReLU MLPs before the first attention (image features)
        self.pre = nn.ModuleList(nn.Sequential(nn.Linear(d, ffn), nn.ReLU(), nn.Linear(ffn, d))
                                 for _ in range(pre_ffn))
        self.blocks = nn.ModuleList(Block(d, heads, ffn, attn, norm) for _ in range(layers))
        self.nf = nn.LayerNorm(d) if norm == "ln" else nn.Identity()
        self.out = nn.Linear(d, N_SLOTS)
        for b in self.blocks:  # tie q and k at initialisation (escapes the chance plateau)
            with torch.no_grad():
                b.attn.k.weight.copy_(b.attn.q.weight)
                b.attn.k.bias.copy_(b.attn.q.bias)

    def forward(self, x):
        h = self.inp(x)
        for p in self.pre:
            h = h + p(h)
        for b in self.blocks:
            h = b(h)
        return self.out(self.nf(h))


# -------------------------------------------------------------------------------------- sampling
class EpisodeSampler:
    """Vectorised torch episode sampler over training characters, with augmentation.

    Classes are characters x 4 rotations (multiples of 90 deg are new classes); every image gets
    an independent random integer shift of up to --shift pixels (zero fill).
    """

    def __init__(self, chars: dict, rotations: bool, shift: int, gen: torch.Generator,
                 dilate_p: float = 0.0, affine: float = 0.0, intensity: float = 1.0):
        imgs = np.stack([chars[k][:20] for k in sorted(chars)]).reshape(-1, 20, 28, 28)
        t = torch.from_numpy(imgs)
        if rotations:
            t = torch.cat([torch.rot90(t, r, dims=(2, 3)) for r in range(4)], 0)
        self.imgs = t.contiguous()  # [C, 20, 28, 28]
        self.C, self.D = t.shape[0], t.shape[1]
        self.shift, self.gen = shift, gen
        self.dilate_p, self.affine, self.intensity = dilate_p, affine, intensity

    def _shifted(self, imgs):  # imgs [n, 28, 28] -> [n, 784]
        n, s, g = imgs.shape[0], self.shift, self.gen
        if self.affine > 0:  # random zoom (1 +- affine) and rotation (+- affine rad), bilinear
            sc = 1 + self.affine * (2 * torch.rand(n, generator=g) - 1)
            an = self.affine * (2 * torch.rand(n, generator=g) - 1)
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0], theta[:, 0, 1] = torch.cos(an) / sc, -torch.sin(an) / sc
            theta[:, 1, 0], theta[:, 1, 1] = torch.sin(an) / sc, torch.cos(an) / sc
            grid = F.affine_grid(theta, (n, 1, 28, 28), align_corners=False)
            imgs = F.grid_sample(imgs[:, None], grid, align_corners=False)[:, 0]
        if self.dilate_p > 0:  # thicker strokes
            d = F.max_pool2d(imgs[:, None], 3, 1, 1)[:, 0]
            imgs = torch.where((torch.rand(n, generator=g) < self.dilate_p)[:, None, None], d, imgs)
        if self.intensity < 1:  # fainter ink
            imgs = imgs * (self.intensity + (1 - self.intensity) * torch.rand(n, 1, 1, generator=g))
        if s == 0:
            return imgs.reshape(n, -1)
        p = F.pad(imgs, (s, s, s, s))
        oy = torch.randint(0, 2 * s + 1, (n,), generator=self.gen)
        ox = torch.randint(0, 2 * s + 1, (n,), generator=self.gen)
        ar = torch.arange(28)
        rows = (oy[:, None] + ar)[:, :, None]
        cols = (ox[:, None] + ar)[:, None, :]
        return p[torch.arange(n)[:, None, None], rows, cols].reshape(n, -1)

    def sample(self, B: int, N: int, K: int, p_copy: float):
        g = self.gen
        cls = torch.rand(B, self.C, generator=g).argsort(1)[:, :N]  # [B, N]
        drw = torch.rand(B, N, self.D, generator=g).argsort(-1)[..., : K + 1]  # [B, N, K+1]
        labels = torch.rand(B, N, generator=g).argsort(1)  # slot of each class
        qi = torch.randint(0, N, (B,), generator=g)
        bi = torch.arange(B)
        # context: K drawers of every class, then shuffled
        c_cls = cls[:, :, None].expand(B, N, K).reshape(B, N * K)
        c_drw = drw[..., :K].reshape(B, N * K)
        c_lab = labels[:, :, None].expand(B, N, K).reshape(B, N * K)
        perm = torch.rand(B, N * K, generator=g).argsort(1)
        c_cls, c_drw, c_lab = (t.gather(1, perm) for t in (c_cls, c_drw, c_lab))
        # query: a new drawer of class qi, or (copy curriculum) the drawer of one of its shots
        q_drw = drw[bi, qi, K]
        copy = torch.rand(B, generator=g) < p_copy
        q_drw = torch.where(copy, drw[bi, qi, torch.randint(0, K, (B,), generator=g)], q_drw)
        q_cls = cls[bi, qi]
        all_cls = torch.cat([c_cls, q_cls[:, None]], 1)
        all_drw = torch.cat([c_drw, q_drw[:, None]], 1)
        pix = self._shifted(self.imgs[all_cls.reshape(-1), all_drw.reshape(-1)])
        x = torch.zeros(B, N * K + 1, N_FEAT)
        x[:, :, :N_PIX] = pix.reshape(B, N * K + 1, N_PIX)
        x[:, :-1, N_PIX:].scatter_(2, c_lab[:, :, None], 1.0)
        return x, labels[bi, qi], c_lab


def sample_task(rng: np.random.Generator, t_max: int, max_k: int):
    """N from {5, 10, 20} (70%) or uniform 2..20 (30%); K uniform in 1..min(max_k, (t_max-1)//N)."""
    if rng.random() < 0.7:
        n = int(rng.choice([5, 10, 20]))
    else:
        n = int(rng.integers(2, 21))
    kmax = max(1, min(max_k, (t_max - 1) // n))
    return n, int(rng.integers(1, kmax + 1))


# ------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def accuracy(model, episodes):
    x, t = episodes
    n = int((x[0, :, N_PIX:].sum(0) > 0).sum())  # number of ways used
    y = model(torch.from_numpy(x))[:, -1, :n]
    return float((y.argmax(-1).numpy() == t).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="Omniglot zip, or a directory of zips")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=fsdata.DEFAULT_SPLIT_SEED)
    ap.add_argument("--n-test-alphabets", type=int, default=fsdata.DEFAULT_N_TEST_ALPHABETS)
    ap.add_argument("--val-chars", type=int, default=16,
                    help="characters of the training alphabets kept out for validation")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embed", choices=["linear", "conv"], default="linear",
                    help="token embedding: one Linear over the 804 values (the shipped recipe), or "
                         "a per-token CNN over the 28x28 image (ConvEmbed) + Linear")
    ap.add_argument("--conv-ch", type=int, nargs=2, default=[8, 16], metavar=("C1", "C2"),
                    help="channels of the two 5x5 stride-2 convolutions of --embed conv")
    ap.add_argument("--conv-pixels", action="store_true",
                    help="--embed conv: also feed the raw pixels to the projection (linear skip)")
    ap.add_argument("--pre-ffn", type=int, default=0, help="residual ReLU MLPs before the first attention")
    ap.add_argument("--attn", choices=["identity", "relu", "softmax"], default="identity")
    ap.add_argument("--norm", choices=["none", "ln"], default="none")
    ap.add_argument("--t-max", type=int, default=26, help="context capacity: N*K+1 <= t_max")
    ap.add_argument("--max-k", type=int, default=5)
    ap.add_argument("--copy-steps", type=int, default=1500, help="copy curriculum 1 -> 0 over these steps")
    ap.add_argument("--aux-steps", type=int, default=1500, help="aux loss weight 1.0, then --aux-late")
    ap.add_argument("--aux-late", type=float, default=0.2)
    ap.add_argument("--shift", type=int, default=2)
    ap.add_argument("--no-rotations", action="store_true")
    ap.add_argument("--dilate-p", type=float, default=0.0, help="probability of 3x3 max-pool stroke dilation")
    ap.add_argument("--affine", type=float, default=0.0, help="random zoom 1+-a and rotation +-a rad")
    ap.add_argument("--intensity", type=float, default=1.0, help="ink scaled by U(intensity, 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--max-minutes", type=float, default=25.0, help="stop training after this wall time")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    chars = fsdata.load_omniglot(a.data)
    train_c, test_c = fsdata.split_alphabets(chars, a.split_seed, a.n_test_alphabets)
    names = sorted(train_c)
    vrng = np.random.default_rng(a.split_seed + 1000)
    val_names = set(np.array(names)[vrng.permutation(len(names))[: a.val_chars]].tolist())
    val_c = {k: v for k, v in train_c.items() if k in val_names}
    fit_c = {k: v for k, v in train_c.items() if k not in val_names}
    print(f"characters: {len(chars)} total, train {len(fit_c)}, val {len(val_c)} "
          f"(train alphabets), test {len(test_c)} from held-out alphabets "
          f"{fsdata.held_out_alphabets(chars, a.split_seed, a.n_test_alphabets)}", flush=True)

    sampler = EpisodeSampler(fit_c, not a.no_rotations, a.shift, gen, a.dilate_p, a.affine, a.intensity)
    val_eps = fsdata.make_episodes(val_c or test_c, 5, 1, 500, np.random.default_rng(123)) if val_c else None
    model = FewShotTransformer(a.d, a.heads, a.ffn, a.layers, a.attn, a.norm, a.pre_ffn,
                               a.embed, tuple(a.conv_ch), a.conv_pixels)
    print(f"model {model.cfg}, {sum(p.numel() for p in model.parameters())} parameters, "
          f"{sampler.C} training classes", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / a.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))

    t0 = time.time()
    run_loss = run_acc = 0.0
    history = []
    for step in range(a.steps):
        if (time.time() - t0) / 60 > a.max_minutes:
            print(f"time limit reached at step {step}", flush=True)
            break
        N, K = sample_task(rng, a.t_max, a.max_k)
        p_copy = max(0.0, 1.0 - step / a.copy_steps) if a.copy_steps > 0 else 0.0
        w_aux = 1.0 if step < a.aux_steps else a.aux_late
        x, tgt, c_lab = sampler.sample(a.batch, N, K, p_copy)
        logits = model(x)[..., :N]
        loss_q = F.cross_entropy(logits[:, -1], tgt)
        loss_aux = F.cross_entropy(logits[:, :-1].reshape(-1, N), c_lab.reshape(-1))
        loss = loss_q + w_aux * loss_aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run_loss += loss_q.item()
        run_acc += (logits[:, -1].argmax(-1) == tgt).float().mean().item()
        if (step + 1) % a.log_every == 0:
            msg = (f"step {step + 1:5d}  query-loss {run_loss / a.log_every:.3f}  train-acc "
                   f"{run_acc / a.log_every:.3f}  aux {loss_aux.item():.3f}  p_copy {p_copy:.2f}  "
                   f"lr {sched.get_last_lr()[0]:.2e}  {time.time() - t0:.0f}s")
            if val_eps is not None and (step + 1) % a.eval_every == 0:
                model.eval()
                va = accuracy(model, val_eps)
                model.train()
                msg += f"  val-5w1s {va:.3f}"
                history.append(dict(step=step + 1, val_5w1s=va))
            print(msg, flush=True)
            run_loss = run_acc = 0.0
    train_s = time.time() - t0
    print(f"training time {train_s:.0f}s ({train_s / 60:.1f} min)", flush=True)

    model.eval()
    test_eps = fsdata.make_episodes(test_c, 5, 1, 1000, np.random.default_rng(7))
    print(f"torch test 5-way 1-shot (held-out alphabets, 1000 episodes): {accuracy(model, test_eps):.3f}")

    # ------------------------------------------------------------------------------------ export
    x_ex = torch.from_numpy(test_eps[0][:2])
    torch.onnx.export(model, (x_ex,), a.out, dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}})
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(a.out))
    sess = ort.InferenceSession(a.out, providers=["CPUExecutionProvider"])
    worst = 0.0
    for n, k in [(5, 1), (5, 5), (20, 1), (3, 2)]:
        xe, _ = fsdata.make_episodes(test_c, n, k, 8, np.random.default_rng(n * 10 + k))
        with torch.no_grad():
            yt = model(torch.from_numpy(xe)).numpy()
        yo = sess.run(["y"], {"x": xe})[0]
        err = float(np.abs(yt - yo).max() / max(1e-6, np.abs(yt).max()))
        worst = max(worst, err)
        print(f"onnxruntime vs torch {n}-way {k}-shot, shape {xe.shape}: max rel err {err:.2e}")
    assert worst < 1e-4, f"onnxruntime disagrees with torch: {worst}"
    meta = dict(cfg=model.cfg, args=vars(a), train_seconds=round(train_s), history=history)
    with open(os.path.splitext(a.out)[0] + ".train.json", "w") as f:
        json.dump(meta, f, indent=1)
    print(f"exported {a.out} ({os.path.getsize(a.out) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
