"""Small standalone HTML pages (inline CSS, no external files): result tables and figures.

The same file opens on its own in a browser and is embedded on the Snakemake report's landing
page (`.. raw:: html` with `:file:`), so every CSS rule is scoped to an `n2v-` class and
cannot restyle the report around it. Figures are inlined as data URIs because the report's
`embeddedfigure` directive leaves the path unembedded (Snakemake 9.27).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MISSING = "—"

STYLE = """
.n2v-table-wrap { font-family: system-ui, sans-serif; font-size: 14px; margin: 1em 0; }
.n2v-table-wrap caption { font-weight: 600; text-align: left; padding-bottom: 0.4em; }
table.n2v-table { border-collapse: collapse; }
table.n2v-table th, table.n2v-table td { border: 1px solid #c8c8c8; padding: 3px 8px; }
table.n2v-table th { background: #eef1f5; }
table.n2v-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.n2v-table tbody tr:nth-child(even) { background: #f8f8f8; }
table.n2v-table tr.n2v-failed td { color: #b00020; font-weight: 600; background: #fde8ea; }
.n2v-table-wrap p.note { color: #555; font-size: 12px; max-width: 60em; }
/* The landing page's tables: narrow enough for the description column beside Snakemake's
   rule graph, and never wider than it (it scrolls instead of spilling onto the graph). */
.n2v-table-wrap.n2v-compact { font-size: 12px; max-width: 100%; overflow-x: auto; }
.n2v-compact table.n2v-table th, .n2v-compact table.n2v-table td { padding: 2px 5px; }
.n2v-compact table.n2v-table td.num { white-space: nowrap; }
figure.n2v-figure { margin: 1em 0; }
figure.n2v-figure img { max-width: 100%; height: auto; }
figure.n2v-figure figcaption { color: #555; font-size: 12px; max-width: 60em; }
"""


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: Callable[[Any], str] = str
    numeric: bool = False


def is_missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and value != value)


def fixed(digits: int, signed: bool = False) -> Callable[[Any], str]:
    """Formatter for numbers with `digits` decimals; MISSING for absent values."""
    sign = "+" if signed else ""

    def format_number(value: Any) -> str:
        if is_missing(value):
            return MISSING
        rounded = round(float(value), digits) + 0.0  # + 0.0 turns -0.0 into 0.0: no "-0.000"
        return f"{rounded:{sign}.{digits}f}"

    return format_number


def digits(spec: str) -> Callable[[Any], str]:
    """Formatter for numbers by a format spec (".2e", ".4g"); MISSING for absent values."""

    def format_number(value: Any) -> str:
        return MISSING if is_missing(value) else format(float(value), spec)

    return format_number


def render_markdown_table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> str:
    """Render render_table's table in Markdown (the docs/measured pages)."""
    lines = [
        "| " + " | ".join(c.header for c in columns) + " |",
        "|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|",
    ]
    for row in rows:
        cells = [MISSING if is_missing(row.get(c.key)) else c.fmt(row.get(c.key)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_table(
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    notes: Sequence[str] = (),
    row_class: Callable[[Mapping[str, Any]], str | None] | None = None,
    compact: bool = False,
) -> str:
    """Render a complete HTML document holding one table, its title and notes.

    `row_class` gives a row's CSS class (e.g. "n2v-failed": red), or None for none.
    `compact`: small type and a width capped at the container's (the landing page).
    """
    head = "".join(f"<th>{html.escape(c.header)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column.key)
            text = MISSING if is_missing(value) else column.fmt(value)
            css = ' class="num"' if column.numeric else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        css_class = row_class(row) if row_class is not None else None
        tr = f'<tr class="{html.escape(css_class)}">' if css_class else "<tr>"
        body.append(tr + "".join(cells) + "</tr>")
    note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return _document(
        title,
        f'<div class="n2v-table-wrap{" n2v-compact" if compact else ""}">'
        '<table class="n2v-table">'
        f"<caption>{html.escape(title)}</caption>\n"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody></table>\n"
        f"{note_html}</div>",
    )


def render_table_blocks(
    title: str,
    columns: Sequence[Column],
    blocks: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
    notes: Sequence[str] = (),
    compact: bool = False,
) -> str:
    """Render one HTML document holding a table per (caption, rows) block, notes after all.

    The methods table has one block per noise level: each reads as its own table.
    `compact` as in render_table.
    """
    tables = []
    for caption, rows in blocks:
        page = render_table(caption, columns, rows)
        # The one table of each single-table page, without that page's head.
        start, end = page.index('<table class="n2v-table">'), page.index("</table>")
        tables.append(page[start : end + len("</table>")])
    note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return _document(
        title,
        f'<div class="n2v-table-wrap{" n2v-compact" if compact else ""}">'
        f'<p class="n2v-title"><b>{html.escape(title)}</b></p>\n'
        + "\n".join(tables)
        + f"\n{note_html}</div>",
    )


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        f"{body}\n</body></html>\n"
    )


def render_figure(title: str, png: str | Path, caption: str = "") -> str:
    """Render a complete HTML document showing the PNG inline (data URI) with a caption."""
    encoded = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    caption_html = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return _document(
        title,
        f'<figure class="n2v-figure"><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{encoded}">{caption_html}</figure>',
    )
