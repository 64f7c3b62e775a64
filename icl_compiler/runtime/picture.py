"""``partition.svg``: the partition pass's ``resources`` section as a picture (cores as a grid
per chip, coloured by layer, with a legend and a tooltip per core).

The picture's size is checked before it is drawn: a chip shows all its cores when it has at most
``DRAW_ALL_CORES`` (a Loihi 2 chip has 128), else only as many rows as its fullest chip uses
(the rest is counted in the chip's label); and at most ``MAX_CELLS`` cores are drawn in all (the
1,152 chips × 128 cores of Hala Point, the largest system in ``targets/loihi2.py``), beyond which
:class:`PictureTooLarge` says so instead of allocating (``--cores-per-chip 10000000`` spent 15 s
and 2.6 GB drawing empty cores)."""
from __future__ import annotations

import math
from pathlib import Path

from ..targets.loihi2 import NEURO_CORES_PER_CHIP, SYSTEMS

DRAW_ALL_CORES = 1024  # a chip with more cores shows only the rows its cores use
MAX_CELLS = max(s["chips"] for s in SYSTEMS.values()) * NEURO_CORES_PER_CHIP
COLUMNS = 16


class PictureTooLarge(ValueError):
    """The picture would draw more than ``MAX_CELLS`` cores."""


def _layer_key(layer) -> float:
    return math.inf if layer is None else float(layer)


def _color(i: int, n: int) -> str:
    import colorsys

    h = (i / max(n, 1)) * 0.85
    r, g, b = colorsys.hls_to_rgb(h, 0.55, 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write_partition_picture(res: dict, path) -> None:
    """Write ``partition.svg`` (see :func:`partition_picture`)."""
    Path(path).write_text(partition_picture(res))


def partition_picture(res: dict) -> str:
    """``partition.svg``'s text: cores as a grid per chip, coloured by layer, with a legend."""
    t = res["target"]
    rows = res["per_core"]
    cpc = int(t["cores_per_chip"])
    n_chips = max(int(res["chips_used"]), 1)
    per_chip: dict[int, int] = {}
    for r in rows:
        per_chip[r["chip"]] = per_chip.get(r["chip"], 0) + 1
    shown = cpc if cpc <= DRAW_ALL_CORES else min(cpc, -(-max(per_chip.values(), default=1)
                                                       // COLUMNS) * COLUMNS)
    if n_chips * shown > MAX_CELLS:
        raise PictureTooLarge(f"the partition picture would draw {n_chips} chips × {shown} cores "
                              f"= {n_chips * shown} cores, more than its limit of {MAX_CELLS}")
    cols_c = COLUMNS if shown >= COLUMNS else shown
    rows_c = -(-shown // cols_c)
    cell, gap, pad = 11, 1, 8
    chip_w = cols_c * (cell + gap) + 2 * pad
    chip_h = rows_c * (cell + gap) + 2 * pad + 12
    per_row = max(1, min(n_chips, math.ceil(math.sqrt(n_chips * 1.6))))
    grid_rows = -(-n_chips // per_row)
    layers = sorted({r["layer"] for r in rows}, key=_layer_key)
    colors = {ly: ("#555555" if ly is None else _color(i, len(layers))) for i, ly in enumerate(layers)}
    legend_h = 24 + 16 * (len(layers) + 4)
    width = max(per_row * (chip_w + 10) + 20, 520)
    height = grid_rows * (chip_h + 10) + legend_h + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="18" font-size="14" font-weight="bold">{_esc(t["name"])}: '
           f'{res["cores_used"]} cores (lower bound {res["cores_lower_bound"]}), '
           f'{res["chips_used"]} chip(s), ≤ {res["interchip_spikes_per_token"]} inter-chip spikes/token</text>']
    by_chip: dict[int, dict[int, dict]] = {}
    for r in rows:
        by_chip.setdefault(r["chip"], {})
    # cores keep their order within each chip
    for r in rows:
        by_chip[r["chip"]][len(by_chip[r["chip"]])] = r
    y0 = 30
    for c in range(n_chips):
        gx, gy = c % per_row, c // per_row
        x = 10 + gx * (chip_w + 10)
        y = y0 + gy * (chip_h + 10)
        out.append(f'<rect x="{x}" y="{y}" width="{chip_w}" height="{chip_h}" fill="#f4f4f4" '
                   f'stroke="#222" stroke-width="2" rx="4"/>')
        hidden = f" (+{cpc - shown} unused cores not drawn)" if shown < cpc else ""
        out.append(f'<text x="{x + pad}" y="{y + 11}" font-size="10">chip {c}{hidden}</text>')
        cores = by_chip.get(c, {})
        for slot in range(shown):
            cx = x + pad + (slot % cols_c) * (cell + gap)
            cy = y + pad + 12 + (slot // cols_c) * (cell + gap)
            r = cores.get(slot)
            if r is None:
                out.append(f'<rect x="{cx}" y="{cy}" width="{cell}" height="{cell}" fill="#dddddd"/>')
                continue
            u = r["usage"]
            tip = (f"core {r['core']} (chip {r['chip']}) layer {r['layer']}: neurons "
                   f"{u['neurons']}%, synapse memory {u['synapse_memory']}%, fan-in {u['fan_in']}% — "
                   + ", ".join(r["what"]))
            fill = max(u["neurons"], u["synapse_memory"], u["fan_in"]) / 100
            out.append(f'<rect x="{cx}" y="{cy}" width="{cell}" height="{cell}" '
                       f'fill="{colors[r["layer"]]}" fill-opacity="{0.35 + 0.65 * min(fill, 1):.2f}">'
                       f'<title>{_esc(tip)}</title></rect>')
    ly = y0 + grid_rows * (chip_h + 10) + 10
    out.append(f'<text x="10" y="{ly}" font-weight="bold">legend</text>')
    items = [(colors[layer], "inputs/output (no layer)" if layer is None else f"layer {layer}")
             for layer in layers]
    items += [("#dddddd", "unused core"), ("none", "chip boundary")]
    for i, (col, label) in enumerate(items):
        yy = ly + 8 + 16 * i
        if col == "none":
            out.append(f'<rect x="10" y="{yy}" width="12" height="12" fill="none" stroke="#222" '
                       f'stroke-width="2"/>')
        else:
            out.append(f'<rect x="10" y="{yy}" width="12" height="12" fill="{col}"/>')
        out.append(f'<text x="28" y="{yy + 10}">{_esc(label)}</text>')
    yy = ly + 8 + 16 * len(items)
    out.append(f'<text x="10" y="{yy + 10}">opacity = fullest resource of the core; hover a core '
               f'for its contents. Embedded ops/token: {res["embedded_ops_per_token"]}, host ops/token: '
               f'{res["host_ops_per_token"]}</text>')
    out.append("</svg>")
    return "\n".join(out)
