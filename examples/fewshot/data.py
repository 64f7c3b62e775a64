"""Data for the few-shot in-context-learning example (numpy + Pillow only, no torch).

Token format (fixed by the issue):
    token = [784 pixels, 20 label slots]  (804 float32 values)
    pixels = 1 - np.asarray(Image.open(p).convert("L").resize((28, 28), Image.Resampling.BOX),
                            np.float32) / 255        flattened row-major, ink = 1
An episode is [x_1, y_1] ... [x_m, y_m], [x_q, 0]; y is a one-hot label over slots 0..N-1 (labels
are a fresh random permutation of the N classes in every episode), the query's label slots are 0.
The prediction is the argmax over the first N logits at the last position.

Works with Python 3.10+ and needs nothing but numpy and Pillow (scikit-learn only for
``load_sklearn_digits``).
"""

from __future__ import annotations

import glob
import io
import os
import zipfile
from typing import Dict, Iterable, Tuple

import numpy as np
from PIL import Image

N_PIX = 784
N_SLOTS = 20
N_FEAT = N_PIX + N_SLOTS  # 804
IMG = 28

# Alphabets held out for evaluation: chosen deterministically from the seed, see split_alphabets.
DEFAULT_SPLIT_SEED = 0
DEFAULT_N_TEST_ALPHABETS = 2


def image_to_x(img: Image.Image) -> np.ndarray:
    """The exact pixel formula of the issue: 28x28 BOX resize of 8-bit grey, ink = 1."""
    a = np.asarray(img.convert("L").resize((IMG, IMG), Image.Resampling.BOX), np.float32)
    return (1 - a / 255).reshape(-1)


def _png_members(path: str) -> Iterable[Tuple[str, bytes]]:
    """Yield (relative path, png bytes) from a zip file, a folder of zips or a folder of pngs."""
    if os.path.isfile(path):
        with zipfile.ZipFile(path) as z:
            for name in sorted(z.namelist()):
                if name.lower().endswith(".png"):
                    yield name, z.read(name)
        return
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Omniglot path not found: {path}")
    zips = sorted(glob.glob(os.path.join(path, "*.zip")))
    if zips:
        for zp in zips:
            yield from _png_members(zp)
        return
    pngs = sorted(glob.glob(os.path.join(path, "**", "*.png"), recursive=True))
    if not pngs:
        raise FileNotFoundError(f"no .zip or .png files under {path}")
    for p in pngs:
        with open(p, "rb") as f:
            yield os.path.relpath(p, path), f.read()


def load_omniglot(path: str) -> Dict[str, np.ndarray]:
    """Load Omniglot characters into {"Alphabet/characterNN": float32 [n_drawers, 784]}.

    ``path`` is an official zip (images_background.zip, images_evaluation.zip), one of the small
    sets (images_background_small1/2.zip), or a directory holding such zips (or extracted pngs).
    Archives are laid out as <set>/<Alphabet>/<characterNN>/<png>. The same character found in
    several archives (the two small sets share Greek and Latin) is kept once, images deduplicated
    by file name. Keys and image order are sorted, so the result is deterministic.
    """
    per_char: Dict[str, Dict[str, np.ndarray]] = {}
    for name, data in _png_members(path):
        parts = name.replace("\\", "/").split("/")
        if len(parts) < 3:
            continue
        key = parts[-3] + "/" + parts[-2]
        imgs = per_char.setdefault(key, {})
        if parts[-1] not in imgs:
            imgs[parts[-1]] = image_to_x(Image.open(io.BytesIO(data)))
    return {k: np.stack([v[f] for f in sorted(v)]) for k, v in sorted(per_char.items())}


PACK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "omniglot_heldout.npz")
CALIB_PACK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "omniglot_calib.npz")


def from_u8(u: np.ndarray) -> np.ndarray:
    """uint8 ``255 - a`` (as stored in the packs) -> float32 ``1 - a/255``, the exact values of
    ``image_to_x`` (same float32 operations, so bit-identical)."""
    a = 255 - np.asarray(u).astype(np.float32)
    return 1 - a / 255


def load_pack(path: str = PACK) -> Dict[str, np.ndarray]:
    """The committed held-out Omniglot pack (``make_pack.py``): {"Alphabet/characterNN": float32
    [20, 784]} for the 64 characters of Greek and Korean, equal to
    ``split_alphabets(load_omniglot(zips))[1]`` bit for bit."""
    with np.load(path, allow_pickle=False) as z:
        imgs, names = z["images"], z["characters"]
    x = from_u8(imgs.reshape(imgs.shape[0], imgs.shape[1], N_PIX))
    return {str(k): x[i] for i, k in enumerate(names)}


def load_calib_pack(path: str = CALIB_PACK) -> np.ndarray:
    """The committed calibration episodes (``make_pack.py``): float32 [16, 26, 804], 5-way 5-shot
    from the training alphabets (never the held-out ones)."""
    with np.load(path, allow_pickle=False) as z:
        return from_u8(z["episodes"])


def digit_to_x(img8x8: np.ndarray) -> np.ndarray:
    """sklearn digit (8x8, values 0..16) -> ink-dark-on-white 8-bit image -> the issue's formula."""
    pix = np.round(255 - np.asarray(img8x8, np.float64) * 255 / 16).clip(0, 255).astype(np.uint8)
    return image_to_x(Image.fromarray(pix))  # 2-D uint8 -> mode "L"


def load_sklearn_digits() -> Dict[str, np.ndarray]:
    """scikit-learn's handwritten digits (1,797 images, 8x8) as {"digit0".."digit9": [n, 784]}.

    Each 8x8 image (values 0..16) becomes an 8-bit grey PIL image with ink dark on white
    (pixel = round(255 - v*255/16)), then goes through exactly the Omniglot formula
    (resize((28, 28), BOX), ink = 1). A cross-domain test set: 10 classes, ~180 images each.
    """
    from sklearn.datasets import load_digits  # only needed here

    d = load_digits()
    out: Dict[str, np.ndarray] = {}
    for c in range(10):
        imgs = d.images[d.target == c]
        out[f"digit{c}"] = np.stack([digit_to_x(im) for im in imgs]).astype(np.float32)
    return out


def split_alphabets(
    chars: Dict[str, np.ndarray],
    seed: int = DEFAULT_SPLIT_SEED,
    n_test_alphabets: int = DEFAULT_N_TEST_ALPHABETS,
) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Split by whole alphabets: (train, test). Deterministic given the seed.

    The sorted alphabet names are permuted with np.random.default_rng(seed); the first
    ``n_test_alphabets`` are held out (none of their characters are seen in training).
    """
    alphabets = sorted({k.split("/")[0] for k in chars})
    if n_test_alphabets >= len(alphabets):
        raise ValueError(f"need more than {n_test_alphabets} alphabets, have {len(alphabets)}")
    perm = np.random.default_rng(seed).permutation(len(alphabets))
    test_alph = {alphabets[i] for i in perm[:n_test_alphabets]}
    train = {k: v for k, v in chars.items() if k.split("/")[0] not in test_alph}
    test = {k: v for k, v in chars.items() if k.split("/")[0] in test_alph}
    return train, test


def held_out_alphabets(chars: Dict[str, np.ndarray], seed: int = DEFAULT_SPLIT_SEED,
                       n_test_alphabets: int = DEFAULT_N_TEST_ALPHABETS) -> list:
    return sorted({k.split("/")[0] for k in split_alphabets(chars, seed, n_test_alphabets)[1]})


def make_episodes(
    classes: Dict[str, np.ndarray],
    n_way: int,
    k_shot: int,
    n_episodes: int,
    rng: np.random.Generator,
) -> Tuple[np.ndarray, np.ndarray]:
    """Sample N-way K-shot episodes in the fixed token format.

    Returns x float32 [E, n_way*k_shot + 1, 804] and target int64 [E] (the query's label slot).
    Per episode: n_way distinct classes; k_shot + 1 distinct images of each chosen class are
    drawn without replacement for the query's class (k_shot for the others); labels are a random
    permutation of slots 0..n_way-1; the n_way*k_shot context tokens are in random order; the
    query (last token, label slots zero) is a new image of a random one of the n_way classes.
    Deterministic given ``rng``.
    """
    if not 1 <= n_way <= N_SLOTS:
        raise ValueError(f"n_way must be in 1..{N_SLOTS}")
    names = sorted(classes)
    if n_way > len(names):
        raise ValueError(f"{n_way}-way needs {n_way} classes, have {len(names)}")
    m = n_way * k_shot
    x = np.zeros((n_episodes, m + 1, N_FEAT), np.float32)
    target = np.zeros(n_episodes, np.int64)
    for e in range(n_episodes):
        cls = rng.choice(len(names), n_way, replace=False)
        labels = rng.permutation(n_way)
        q_i = int(rng.integers(n_way))
        order = rng.permutation(m)
        t = 0
        for i, c in enumerate(cls):
            imgs = classes[names[c]]
            need = k_shot + (1 if i == q_i else 0)
            if need > len(imgs):
                raise ValueError(f"class {names[c]} has {len(imgs)} images, need {need}")
            pick = rng.choice(len(imgs), need, replace=False)
            for j in range(k_shot):
                pos = order[t]
                x[e, pos, :N_PIX] = imgs[pick[j]]
                x[e, pos, N_PIX + labels[i]] = 1.0
                t += 1
            if i == q_i:
                x[e, m, :N_PIX] = imgs[pick[k_shot]]
                target[e] = labels[i]
    return x, target


def make_calibration(n: int = 16, seed: int = 0) -> np.ndarray:
    """calib.npy: n episodes of 10-way 2-shot from sklearn digits, shape [n, 21, 804].

    sklearn digits have only 10 classes, so the 21-token (20 context + query) calibration
    episodes are 10-way 2-shot rather than 20-way 1-shot.
    """
    x, _ = make_episodes(load_sklearn_digits(), 10, 2, n, np.random.default_rng(seed))
    return x


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="inspect the few-shot data / write calib.npy")
    ap.add_argument("--omniglot", help="zip or directory of zips")
    ap.add_argument("--split-seed", type=int, default=DEFAULT_SPLIT_SEED)
    ap.add_argument("--write-calib", help="write the digits calibration episodes (calib.npy) here")
    ap.add_argument("--write-calib-omniglot",
                    help="write 16 in-distribution calibration episodes (20-way 1-shot, held-out "
                         "alphabets, [16, 21, 804]) here; keep the file out of the repo")
    a = ap.parse_args()
    if a.omniglot:
        ch = load_omniglot(a.omniglot)
        tr, te = split_alphabets(ch, a.split_seed)
        print(f"{len(ch)} characters, {sum(len(v) for v in ch.values())} images; "
              f"train {len(tr)} chars, test {len(te)} chars from {held_out_alphabets(ch, a.split_seed)}")
    if a.write_calib_omniglot:
        if not a.omniglot:
            ap.error("--write-calib-omniglot needs --omniglot")
        c, _ = make_episodes(te, 20, 1, 16, np.random.default_rng(0))
        np.save(a.write_calib_omniglot, c)
        print("wrote", a.write_calib_omniglot, c.shape, c.dtype)
    if a.write_calib:
        c = make_calibration()
        np.save(a.write_calib, c)
        print("wrote", a.write_calib, c.shape, c.dtype)
