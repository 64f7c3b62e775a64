"""Kernel-1 convolutions (``nn.Conv1d(d, d, 1)`` on ``[B, d, T]``, kernel-1 Conv2d on
``[B, d, T, 1]``, any groups) imported as the per-token linear map they are: an Einsum over the
channels plus the bias.  A Conv whose window, stride or padding runs along the dynamic
(sequence) axis is refused: it mixes neighbouring tokens."""
from __future__ import annotations

import numpy as np

from ..errors import CompileError
from ..ir.symbolic import is_sym


def import_pointwise_conv(imp, node, a, ins) -> bool:
    """A Conv whose kernel is 1 along every spatial axis, with stride 1 and no padding, is a
    linear map of the channels at each spatial position (``nn.Conv1d(d, d, 1)`` on a
    ``[B, d, T]`` activation: a per-token Linear): imported as ``Einsum('nc…,oc->no…')``
    (groups: a block-diagonal weight) plus the bias.  False = any other Conv (imported
    generically; the classification refuses it when its kernel spans the positions)."""
    if len(ins) < 2 or not ins[1] or ins[0] in imp.known or ins[1] not in imp.known:
        return False
    bias = ins[2] if len(ins) > 2 and ins[2] else None
    if bias is not None and bias not in imp.known:
        return False
    w = imp.known[ins[1]]
    shape = imp.shape_of(ins[0])
    r = len(shape)
    if w.dtype == object or w.dtype.kind != "f" or w.ndim != r or not 3 <= r <= 6:
        return False
    ns = r - 2
    group = int(a.get("group", 1))
    strides = list(a.get("strides", [1] * ns))
    pads = list(a.get("pads", [0] * 2 * ns))
    auto_pad = a.get("auto_pad", "NOTSET")
    ks = list(a.get("kernel_shape", w.shape[2:]))
    if ks != [1] * ns or list(w.shape[2:]) != [1] * ns or strides != [1] * ns \
            or (auto_pad == "NOTSET" and pads != [0] * 2 * ns) or group < 1:
        dyn = [k for k in range(2, r) if is_sym(shape[k])]
        if dyn:  # a window, stride or padding along the dynamic (sequence) axis
            k = dyn[0] - 2
            raise CompileError(
                f"Conv with kernel {ks[k] if k < len(ks) else '?'}, stride "
                f"{strides[k] if k < len(strides) else '?'} and padding "
                f"{pads[k::ns] if len(pads) == 2 * ns else auto_pad} along the dynamic "
                f"axis {shape[dyn[0]]} mixes neighbouring tokens (a convolution over the "
                "positions, e.g. a causal conv), so it cannot be a per-token neuron layer; "
                "only kernel-1 convolutions (stride 1, no padding) over the tokens compile, "
                "as a per-token Linear")
        return False
    c_in, c_out = shape[1], w.shape[0]
    if is_sym(c_in) or c_in != w.shape[1] * group or c_out % group:
        return False
    # the full [c_out, c_in] matrix (block-diagonal for groups)
    full = np.zeros((c_out, int(c_in)), dtype=w.dtype)
    co, ci = c_out // group, w.shape[1]
    for g in range(group):
        full[g * co:(g + 1) * co, g * ci:(g + 1) * ci] = w[g * co:(g + 1) * co, :, ...].reshape(co, ci)
    out = node.output[0]
    sp = "hwduv"[:ns]
    wname = f"{out}/pointwise_weight"
    imp.known[wname] = full
    y = out if bias is None else f"{out}/pointwise"
    imp.emit("Einsum", [imp.as_value(ins[0], node), imp.as_value(wname, node)], [y],
              {"equation": f"nc{sp},oc->no{sp}"}, node)
    if bias is not None:
        b = np.asarray(imp.known[bias])
        if b.dtype == object or b.size != c_out:
            raise CompileError(f"Conv bias {bias!r} must hold {c_out} values, not {b.size}")
        bname = f"{out}/pointwise_bias"
        imp.known[bname] = b.reshape((c_out,) + (1,) * ns).astype(w.dtype)
        imp.emit("Add", [y, imp.as_value(bname, node)], [out], {}, node)
    return True
