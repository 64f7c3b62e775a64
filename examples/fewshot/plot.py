"""Accuracy against shots as a hand-written SVG (no matplotlib: the project gains no plotting
dependency).  ``accuracy_svg(curves, title, caption)`` returns the SVG text; ``curves`` is a list
of dicts {"label", "color", "dash" (bool), "points": [(shots, accuracy 0..1, lo, hi), ...]}, drawn
as lines with markers and 95 % interval whiskers over shots 1..5.  The accuracy axis runs from
the lowest interval bound, rounded down to 10 %, to 100 % (labelled every 10 %)."""
from __future__ import annotations

from xml.sax.saxutils import escape

W, H = 640, 440
L, R, T, B = 64, 190, 56, 96  # margins: left, right (legend), top (title), bottom (caption)
SHOTS = (1, 2, 3, 4, 5)


def _x(k: float) -> float:
    pad = 18  # keep the end markers off the frame
    return L + pad + (k - SHOTS[0]) / (SHOTS[-1] - SHOTS[0]) * (W - L - R - 2 * pad)


def _y(acc: float, lo: float = 0.0) -> float:
    return T + (1 - acc) / (1 - lo) * (H - T - B)


def accuracy_svg(curves: list[dict], title: str, caption: list[str]) -> str:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2:.0f}" y="22" text-anchor="middle" font-size="15" '
           f'font-weight="bold">{escape(title)}</text>']
    low = min((p[2] for c in curves for p in c["points"]), default=0.0)
    low = min(max(0, int(100 * low) // 10 * 10), 90)
    y_ = lambda a: _y(a, low / 100)  # noqa: E731
    for pct in range(low, 101, 10):  # y grid and labels
        y = y_(pct / 100)
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{pct}%</text>')
    for k in SHOTS:  # x ticks
        x = _x(k)
        out.append(f'<line x1="{x:.1f}" y1="{H - B}" x2="{x:.1f}" y2="{H - B + 5}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{H - B + 18}" text-anchor="middle">{k}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" '
               'stroke="#333"/>')
    out.append(f'<text x="{(L + W - R) / 2:.0f}" y="{H - B + 34}" text-anchor="middle">'
               'shots per class (K)</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(T + H - B) / 2:.0f})">accuracy (query)</text>')
    for i, c in enumerate(curves):
        pts = sorted(c["points"])
        col = c["color"]
        dash = ' stroke-dasharray="6 4"' if c.get("dash") else ""
        if len(pts) > 1:
            path = " ".join(f"{_x(k):.1f},{y_(a):.1f}" for k, a, _, _ in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{col}" '
                       f'stroke-width="2"{dash}/>')
        for k, a, lo, hi in pts:
            x = _x(k)
            out.append(f'<line x1="{x:.1f}" y1="{y_(lo):.1f}" x2="{x:.1f}" y2="{y_(hi):.1f}" '
                       f'stroke="{col}" stroke-width="1"/>')
            shape = (f'<circle cx="{x:.1f}" cy="{y_(a):.1f}" r="3.5" fill="{col}">'
                     if not c.get("dash") else
                     f'<rect x="{x - 3.5:.1f}" y="{y_(a) - 3.5:.1f}" width="7" height="7" '
                     f'fill="white" stroke="{col}" stroke-width="1.5">')
            out.append(shape + f'<title>{escape(c["label"])}, K={k}: {100 * a:.1f}% '
                       f'[{100 * lo:.1f}, {100 * hi:.1f}]</title>'
                       + ("</circle>" if not c.get("dash") else "</rect>"))
        ly = T + 14 + 20 * i  # legend
        lx = W - R + 14
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{col}" '
                   f'stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{escape(c["label"])}</text>')
    for j, line in enumerate(caption):
        out.append(f'<text x="{L}" y="{H - B + 52 + 14 * j}" font-size="11" fill="#444">'
                   f'{escape(line)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
