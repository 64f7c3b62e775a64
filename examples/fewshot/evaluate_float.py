"""Float accuracy of the few-shot model.onnx with onnxruntime (numpy + onnxruntime, no torch).

Tasks: held-out Omniglot alphabets (5-way 1-shot, 5-way 5-shot, 20-way 1-shot) and the
scikit-learn digits cross-domain test (5-way 1-shot, 5-way 5-shot, 10-way 1-shot and 10-way
2-shot: digits have only 10 classes, so there is no 20-way digits task). Accuracy is printed with
a 95% Wilson confidence interval and the episode count; with --baseline also the pixel
cosine nearest-prototype accuracy on the same episodes. With --activations, max |value| of every
node output over all evaluated episodes (what the fixed-point quantiser needs; needs the `onnx`
package).

    python evaluate_float.py --omniglot /work/shared/data/omniglot [--model model.onnx]
    python evaluate_float.py --pack --no-digits       # the committed held-out pack
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data as fsdata  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def wilson(k: int, n: int, z: float = 1.96):
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return c - h, c + h


def cosine_baseline(x: np.ndarray, n_way: int) -> np.ndarray:
    """Nearest class prototype (mean of its shots) by cosine similarity of the raw pixels."""
    pix, lab = x[:, :-1, :784], x[:, :-1, 784:784 + n_way]
    proto = np.einsum("etc,etp->ecp", lab, pix) / lab.sum(1)[:, :, None]
    q = x[:, -1, :784]
    proto = proto / (np.linalg.norm(proto, axis=-1, keepdims=True) + 1e-8)
    q = q / (np.linalg.norm(q, axis=-1, keepdims=True) + 1e-8)
    return np.einsum("ecp,ep->ec", proto, q).argmax(-1)


class Runner:
    def __init__(self, model: str, activations: bool):
        self.act_max = None
        if activations:
            import onnx  # only for exposing the intermediate tensors

            m = onnx.load(model)
            known = {o.name for o in m.graph.output}
            self.order = []
            for node in m.graph.node:
                for o in node.output:
                    if o and o not in known and node.op_type not in ("Constant", "Shape", "Gather",
                                                                      "Unsqueeze", "Concat", "ConstantOfShape",
                                                                      "Slice", "Squeeze", "Cast", "Range"):
                        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(o))
                        known.add(o)
                        self.order.append((o, node.op_type))
            self.order.append(("y", "output"))
            self.sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            self.act_max = {}
            self.tag = "all"
        else:
            self.sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.out_names = [o.name for o in self.sess.get_outputs()]

    def __call__(self, x: np.ndarray, batch: int = 250) -> np.ndarray:
        ys = []
        for i in range(0, len(x), batch):
            outs = self.sess.run(self.out_names, {"x": x[i:i + batch]})
            res = dict(zip(self.out_names, outs))
            ys.append(res["y"])
            if self.act_max is not None:
                am = self.act_max.setdefault(self.tag, {})
                for n, v in res.items():
                    if np.issubdtype(v.dtype, np.floating) and v.size:
                        am[n] = max(am.get(n, 0.0), float(np.abs(v).max()))
        return np.concatenate(ys)


def evaluate(run, classes, n_way, k_shot, n_episodes, seed, baseline):
    x, t = fsdata.make_episodes(classes, n_way, k_shot, n_episodes, np.random.default_rng(seed))
    y = run(x)
    pred = y[:, -1, :n_way].argmax(-1)
    k = int((pred == t).sum())
    res = dict(n_way=n_way, k_shot=k_shot, episodes=n_episodes, correct=k, acc=k / n_episodes,
               ci95=wilson(k, n_episodes), seq=x.shape[1])
    if baseline:
        res["cosine_nn_acc"] = float((cosine_baseline(x, n_way) == t).mean())
    return res


def fmt(name, r):
    lo, hi = r["ci95"]
    s = (f"{name:<32s} {r['n_way']:2d}-way {r['k_shot']}-shot  T={r['seq']:2d}  acc {100 * r['acc']:5.1f}%  "
         f"95% CI [{100 * lo:4.1f}, {100 * hi:4.1f}]  ({r['correct']}/{r['episodes']} episodes)")
    if "cosine_nn_acc" in r:
        s += f"  pixel-cosine {100 * r['cosine_nn_acc']:4.1f}%"
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(HERE, "model.onnx"))
    ap.add_argument("--omniglot", help="Omniglot zip or directory of zips (held-out alphabets are used)")
    ap.add_argument("--pack", action="store_true",
                    help="the held-out alphabets from the committed omniglot_heldout.npz instead "
                         "(the same images, bit for bit; default split only)")
    ap.add_argument("--split-seed", type=int, default=fsdata.DEFAULT_SPLIT_SEED)
    ap.add_argument("--n-test-alphabets", type=int, default=fsdata.DEFAULT_N_TEST_ALPHABETS)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2024, help="episode sampling seed")
    ap.add_argument("--no-digits", action="store_true", help="skip the sklearn digits test")
    ap.add_argument("--baseline", action="store_true", help="also print pixel cosine nearest-prototype")
    ap.add_argument("--activations", action="store_true", help="print max |activation| per node output")
    ap.add_argument("--inputs", nargs="*", default=[],
                    help="extra .npy inputs (e.g. calib.npy) to include in the --activations table")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()

    run = Runner(a.model, a.activations)
    results = {}
    t0 = time.time()
    if a.omniglot or a.pack:
        if a.pack:
            test = fsdata.load_pack()
            alph = sorted({k.split("/")[0] for k in test})
        else:
            chars = fsdata.load_omniglot(a.omniglot)
            _, test = fsdata.split_alphabets(chars, a.split_seed, a.n_test_alphabets)
            alph = fsdata.held_out_alphabets(chars, a.split_seed, a.n_test_alphabets)
        print(f"Omniglot held-out alphabets {alph}: {len(test)} characters")
        if a.activations:
            run.tag = "omniglot"
        for i, (n, k) in enumerate([(5, 1), (5, 5), (20, 1)]):
            r = evaluate(run, test, n, k, a.episodes, a.seed + i, a.baseline)
            results[f"omniglot_{n}w{k}s"] = r
            print(fmt("omniglot (held-out alphabets)", r), flush=True)
    if not a.no_digits:
        digits = fsdata.load_sklearn_digits()
        print(f"sklearn digits: {len(digits)} classes, {sum(len(v) for v in digits.values())} images")
        if a.activations:
            run.tag = "digits"
        for i, (n, k) in enumerate([(5, 1), (5, 5), (10, 1), (10, 2)]):
            r = evaluate(run, digits, n, k, a.episodes, a.seed + 100 + i, a.baseline)
            results[f"digits_{n}w{k}s"] = r
            print(fmt("sklearn digits (cross-domain)", r), flush=True)
    for p in a.inputs:
        if a.activations:
            run.tag = os.path.basename(p)
        run(np.load(p).astype(np.float32))
    print(f"({time.time() - t0:.0f}s)")
    if a.activations:
        tags = list(run.act_max)
        print("\nmax |activation| over the evaluated episodes, per node output (graph order):")
        print("  " + "".join(f"{t:>14s}" for t in tags) + "  op         output")
        for name, op in run.order:
            print("  " + "".join(f"{run.act_max[t].get(name, float('nan')):14.3f}" for t in tags)
                  + f"  {op:<10s} {name}")
        results["activation_max"] = {t: {n: run.act_max[t][n] for n, _ in run.order if n in run.act_max[t]}
                                     for t in tags}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
