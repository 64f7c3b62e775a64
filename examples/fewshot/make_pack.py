"""Build the committed Omniglot packs from the background small zips (numpy + Pillow only).

    python examples/fewshot/make_pack.py --omniglot /path/to/omniglot   # folder with the zips

writes, next to this file (or under --out):

- ``omniglot_heldout.npz``: the held-out alphabets of ``data.split_alphabets`` (seed 0: Greek and
  Korean, 64 characters x 20 drawers), every image already reduced to 28x28 by the formula of
  ``data.image_to_x``.  Stored as uint8 ``u = 255 - a`` where ``a`` is the 8-bit grey value of
  the BOX-resized image, so ``1 - (255 - u)/255`` (``data.load_pack``) gives back exactly the
  float32 pixels ``data.load_omniglot`` computes: the pack is lossless.
- ``omniglot_calib.npz``: the calibration episodes of ``make run``: 16 episodes of 5-way 5-shot
  (26 tokens, the longest the model takes, where the activations peak) drawn from the
  *training* alphabets with ``np.random.default_rng(7)``, stored the same way (label slots are
  0/1, stored as 0/255).

The output is byte-identical from run to run: the npz (a zip) is written with fixed member
timestamps, in a fixed order, with zlib level 9.  The images come from the Omniglot dataset
(Brenden Lake, MIT licence: LICENCE-omniglot).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data as fsdata  # noqa: E402

HELDOUT = os.path.join(HERE, "omniglot_heldout.npz")
CALIB = os.path.join(HERE, "omniglot_calib.npz")
CALIB_EPISODES, CALIB_WAY, CALIB_SHOT, CALIB_SEED = 16, 5, 5, 7


def to_u8(v: np.ndarray) -> np.ndarray:
    """float32 pixels ``1 - a/255`` (a = 0..255) -> uint8 ``255 - a``; refuses anything else."""
    u = np.rint(np.asarray(v, np.float64) * 255)
    if u.min() < 0 or u.max() > 255:
        raise ValueError("values outside [0, 1]")
    u = u.astype(np.uint8)
    if not np.array_equal(fsdata.from_u8(u), v):
        raise ValueError("values are not of the form 1 - a/255: the pack would not be lossless")
    return u


def write_npz(path: str, arrays: dict) -> None:
    """np.savez_compressed, but deterministic: fixed timestamps and order (np.savez stamps the
    members with the current time)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, buf.getvalue(), compresslevel=9)


def build(omniglot: str, out_dir: str = HERE) -> tuple[str, str]:
    chars = fsdata.load_omniglot(omniglot)
    train, test = fsdata.split_alphabets(chars)
    names = sorted(test)
    imgs = np.stack([test[k] for k in names])  # [64, 20, 784] float32
    heldout = os.path.join(out_dir, os.path.basename(HELDOUT))
    write_npz(heldout, {
        "images": to_u8(imgs).reshape(len(names), -1, fsdata.IMG, fsdata.IMG),
        "characters": np.array(names),
    })
    calib = fsdata.make_episodes(train, CALIB_WAY, CALIB_SHOT, CALIB_EPISODES,
                                 np.random.default_rng(CALIB_SEED))[0]
    calib_path = os.path.join(out_dir, os.path.basename(CALIB))
    write_npz(calib_path, {"episodes": to_u8(calib)})
    return heldout, calib_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--omniglot", required=True,
                    help="images_background_small1/2.zip, or a folder holding them")
    ap.add_argument("--out", default=HERE, help="folder to write the two .npz files to")
    a = ap.parse_args(argv)
    for p in build(a.omniglot, a.out):
        print(f"wrote {p} ({os.path.getsize(p):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
