"""The pictures, drawn from the codes as inline SVG: the forces of progress and the switch timeline.

Pure functions from code views (jtbd.web.views.CodeView) to SVG markup. Every piece of transcript
text goes through `escape`; the result is Markup, so Jinja inserts it as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from markupsafe import Markup, escape

from jtbd.web.views import CodeView

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies); the stylesheet
# uses the same ones for the highlights.
COLOURS = {"push": "#D55E00", "pull": "#009E73", "anxiety": "#E69F00", "habit": "#0072B2",
           "trigger": "#CC79A7", "job": "#56B4E9", "quote": "#888888"}
HINTS = {"push": "away from the old way", "pull": "towards the new way",
         "habit": "holds on to the old way", "anxiety": "holds back from the new way"}
# Push and pull drive the switch (towards the new way, right); habit and anxiety hold it back.
QUADRANTS = (("push", "pull"), ("habit", "anxiety"))
DRIVING = ("push", "pull")


def colour(code: CodeView) -> str:
    return COLOURS.get(code.force if code.kind == "force" else code.kind, "#888888")


def strongest(codes: Sequence[CodeView], n: int, spread: bool = False) -> list[CodeView]:
    """The n surest codes (highest score first, a person's decision before an unrated code);
    `spread`: one per interview before a second from any."""
    ranked = sorted(codes, key=lambda c: (c.score is None, -(c.score or 0.0), c.transcript, c.start))
    if not spread:
        return ranked[:n]
    seen: set[str] = set()
    first = [c for c in ranked if c.transcript not in seen and not seen.add(c.transcript)]
    chosen = {id(c) for c in first}
    return (first + [c for c in ranked if id(c) not in chosen])[:n]


def _wrap(text: str, width: int, lines: int) -> list[str]:
    """Words in at most `lines` lines of `width` characters; an ellipsis where it was cut."""
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        line = words.pop(0)
        while words and len(line) + 1 + len(words[0]) <= width:
            line += " " + words.pop(0)
        out.append(line[:width])
    if words and out:
        out[-1] = out[-1][: width - 1].rstrip() + "\u2026"
    return out


def _text(x: float, y: float, lines: Sequence[str], cls: str, step: int = 15) -> str:
    spans = "".join(f'<tspan x="{x:.0f}" dy="{0 if i == 0 else step}">{escape(line)}</tspan>'
                    for i, line in enumerate(lines))
    return f'<text class="{cls}" x="{x:.0f}" y="{y:.0f}">{spans}</text>'


def forces_svg(codes: Sequence[CodeView], per_quadrant: int, spread: bool,
               quadrant_href: Callable[[str], str], code_href: Callable[[CodeView], str]) -> Markup:
    """The four forces as the practice draws them: push and pull drive towards the new way (arrows
    right, above the line), habit and anxiety hold back (arrows left, below it). Each quadrant: its
    count, a link listing its codes, and its surest quotes."""
    width, box_w, box_h, gap = 760, 370, 200, 20
    forces = [c for c in codes if c.kind == "force"]
    parts = [f'<svg class="forces-diagram" viewBox="0 0 {width} {2 * box_h + 70}" role="img" '
             f'xmlns="http://www.w3.org/2000/svg" aria-label="forces of progress">',
             '<defs><marker id="arrowhead" markerWidth="8" markerHeight="8" refX="6" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#444"/></marker></defs>']
    for row, pair in enumerate(QUADRANTS):
        y = row * (box_h + 70)
        for col, force in enumerate(pair):
            x = col * (box_w + gap)
            mine = [c for c in forces if c.force == force]
            parts.append(_quadrant(force, mine, x, y, box_w, box_h, per_quadrant, spread,
                                   quadrant_href(force), code_href))
    driving = sum(c.force in DRIVING for c in forces)
    mid = box_h + 35
    parts.append(f'<line x1="40" y1="{mid}" x2="{width - 40}" y2="{mid}" stroke="#444" stroke-width="2" '
                 f'marker-end="url(#arrowhead)"/>')
    parts.append(_text(10, mid - 8, ["current way"], "axis-label"))
    parts.append(_text(width - 80, mid - 8, ["new way"], "axis-label"))
    balance = f"driving {driving} \u2192   \u2190 {len(forces) - driving} holding back"
    parts.append(_text(width / 2 - 90, mid + 20, [balance], "balance"))
    parts.append("</svg>")
    return Markup("".join(parts))


def _quadrant(force: str, codes: list[CodeView], x: float, y: float, w: float, h: float, n: int, spread: bool,
              href: str, code_href: Callable[[CodeView], str]) -> str:
    arrow = "\u2192" if force in DRIVING else "\u2190"
    head = f"{arrow} {force} ({len(codes)})" if force in DRIVING else f"{force} ({len(codes)}) {arrow}"
    out = [f'<g class="quadrant" id="quadrant-{force}" data-force="{force}" data-count="{len(codes)}">',
           f'<a class="quadrant-link" href="{escape(href)}"><title>list the {len(codes)} {force} codes</title>',
           f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{COLOURS[force]}" fill-opacity="0.10" '
           f'stroke="{COLOURS[force]}" stroke-width="2"/>',
           _text(x + 12, y + 22, [head], "quadrant-title"),
           _text(x + 12, y + 38, [HINTS[force] + " \u00b7 list them"], "quadrant-hint"), "</a>"]
    top = y + 60
    for code in strongest(codes, n, spread):
        mark = "\u2713 " if code.by_person else ""
        # 50 characters of 12px italic fit the box's 346 units with the wide fonts too (DejaVu Sans: 56 ran over)
        lines = _wrap(f"{mark}\u201c{code.lead}{code.quote}\u201d", 50, 2)
        who = f"\u2014 {code.transcript}" + ("" if code.by_person else " (suggested)")
        out.append(f'<a class="quadrant-quote" href="{escape(code_href(code))}"><title>{escape(code.quote)}</title>'
                   + _text(x + 12, top, lines + [who], "quote" + (" person" if code.by_person else ""), 14)
                   + "</a>")
        top += 14 * (len(lines) + 1) + 6
    if not codes:
        out.append(_text(x + 12, top, ["none coded"], "quadrant-hint"))
    out.append("</g>")
    return "".join(out)


@dataclass(frozen=True)
class TimelineRow:
    transcript: str
    href: str
    duration: float | None  # seconds when the interview has timestamps
    length: int  # characters of text, for placing codes by position
    codes: Sequence[CodeView]


def position(row: TimelineRow, code: CodeView) -> float:
    """Where a code falls on its interview's own axis, 0 to 1: by its timestamp where the interview
    has them, else by its place in the text."""
    if row.duration and code.seconds is not None:
        return min(max(code.seconds / row.duration, 0.0), 1.0)
    return min(max(code.start / max(row.length, 1), 0.0), 1.0)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def timeline_svg(rows: Sequence[TimelineRow], code_href: Callable[[CodeView], str], row_height: int = 44,
                 label_width: int = 170) -> Markup:
    """Each interview a row along its own time axis: triggers on the line, the driving forces above it,
    the holding ones below, each a link to its span."""
    width, right = 760, 20
    axis = width - label_width - right
    height = row_height * max(len(rows), 1) + 24
    parts = [f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" '
             f'xmlns="http://www.w3.org/2000/svg" aria-label="switch timeline">']
    for i, row in enumerate(rows):
        mid = i * row_height + row_height / 2 + 4
        by = "by time" if row.duration else "by position"
        parts.append(f'<g class="timeline-row" data-transcript="{escape(row.transcript)}" data-axis="{by}">')
        parts.append(f'<a href="{escape(row.href)}">' + _text(4, mid - 2, [_short(row.transcript, 22)], "row-label")
                     + "</a>" + _text(4, mid + 12, [by], "row-hint"))
        parts.append(f'<line x1="{label_width}" y1="{mid}" x2="{label_width + axis}" y2="{mid}" stroke="#999"/>')
        end = _clock(row.duration) if row.duration else "end"
        parts.append(_text(label_width + axis - 30, mid + 16, [end], "row-hint"))
        for code in sorted(row.codes, key=lambda c: c.start):
            parts.append(_marker(code, label_width + position(row, code) * axis, mid, code_href(code)))
        parts.append("</g>")
    if not rows:
        parts.append(_text(10, 20, ["no interviews yet"], "row-hint"))
    parts.append("</svg>")
    return Markup("".join(parts))


def _marker(code: CodeView, x: float, mid: float, href: str) -> str:
    fill = colour(code)
    what = code.force if code.kind == "force" else code.kind
    title = escape(f"{what}{' ' + code.timestamp if code.timestamp else ''}: \u201c{code.quote}\u201d")
    opacity = "1" if code.by_person else "0.75"
    if code.kind == "trigger":
        shape = (f'<path d="M{x:.1f},{mid - 7} L{x + 7:.1f},{mid} L{x:.1f},{mid + 7} L{x - 7:.1f},{mid} z" '
                 f'fill="{fill}" fill-opacity="{opacity}" stroke="#222"/>')
    else:
        y = mid - 10 if code.force in DRIVING else mid + 10
        shape = f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{fill}" fill-opacity="{opacity}" stroke="#222" ' \
                f'stroke-width="{1.5 if code.by_person else 0.5}"/>'
    return (f'<a class="timeline-code" href="{escape(href)}" data-kind="{escape(what)}">'
            f'<title>{title}</title>{shape}</a>')


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def trend_svg(trend: dict) -> Markup:
    """The model's agreement by review order (views.review_trend): along the reviewed suggestions in
    the order they were first answered, a bar per batch as high as its precision (the share whose label
    the reviewer kept), and a dashed line at each re-decision (`jtbd redecide`)."""
    width, height, left, right, top, bottom = 760, 190, 44, 16, 18, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    total = max(trend["reviewed"], 1)

    def x(n: float) -> float:
        return left + plot_w * n / total

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    parts = [f'<svg class="trend" viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg" '
             f'aria-label="the model\u2019s agreement as reviews accumulate">']
    for value in (0.0, 0.5, 1.0):
        parts.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - right}" y2="{y(value):.1f}" stroke="#ddd"/>')
        parts.append(_text(left - 30, y(value) + 4, [f"{value:.1f}"], "row-hint"))
    for b in trend["batches"]:
        x0, x1 = x(b["first"] - 1) + 1, x(b["last"]) - 1
        precision = b["precision"] or 0.0
        kappa = "" if b["kappa"] is None else f", kappa {b['kappa']:.2f} over {b['kappa_pairs']} forces"
        title = (f"reviewed suggestions {b['first']}\u2013{b['last']}: precision {precision:.2f} "
                 f"({b['accepted']} accepted, {b['changed']} changed, {b['rejected']} rejected){kappa}")
        parts.append(f'<g class="trend-batch" data-first="{b["first"]}" data-last="{b["last"]}" '
                     f'data-precision="{precision}"><title>{escape(title)}</title>'
                     f'<rect x="{x0:.1f}" y="{y(precision):.1f}" width="{max(x1 - x0, 1):.1f}" '
                     f'height="{plot_h * precision:.1f}" fill="{COLOURS["job"]}" '
                     f'fill-opacity="{0.6 if b["after_redecisions"] else 0.35}" stroke="#0072B2"/>'
                     + _text((x0 + x1) / 2 - 12, y(precision) - 4, [f"{precision:.2f}"], "row-hint")
                     + _text((x0 + x1) / 2 - 14, height - bottom + 16, [f"{b['first']}\u2013{b['last']}"], "row-hint")
                     + "</g>")
    for r in trend["redecisions"]:
        at = x(r["after_reviewed"])
        parts.append(f'<g class="trend-redecision" data-after="{r["after_reviewed"]}"><title>re-decided '
                     f'{escape(r["at"])}</title><line x1="{at:.1f}" y1="{top - 6}" x2="{at:.1f}" '
                     f'y2="{height - bottom}" stroke="#222" stroke-dasharray="4 3"/>'
                     + _text(at + 4, top + 4, ["re-decided"], "axis-label") + "</g>")
    if not trend["batches"]:
        parts.append(_text(left + 10, top + plot_h / 4, ["no reviewed suggestions yet"], "row-hint"))
    parts.append(_text(left, height - 4, ["reviewed suggestions, in the order first answered"], "row-hint"))
    parts.append("</svg>")
    return Markup("".join(parts))
