"""Helpers every section shares: HTML escaping, key/value tables, the section frame, figure
divs (counted, for the page's figure meta), and images as data URIs.

Every piece of user text goes through `esc` (html.escape); figure labels go through
lrfind.probe.page.plot_text (plotly renders labels as HTML-like markup); plotly's JSON escapes
`<` itself.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union


TEMPLATE = "plotly_white"


@dataclass(frozen=True)
class Fragment:
    """A piece of the page and how many plotly figures it draws."""
    html: str
    figures: int = 0


@dataclass(frozen=True)
class ImageCell:
    """An image inlined as `data:image/png;base64,...`; a corrupt or unreadable one has uri None
    and its error (the page shows a placeholder, the warnings name it)."""
    file: str
    uri: Optional[str]
    width: Optional[int]
    height: Optional[int]
    error: Optional[str] = None


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def number_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def kv_table(rows, css: str = "kv") -> str:
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="{css}">{body}</table>'


def drawn(name: str, figure) -> Fragment:
    """The figure's div (no plotly.js of its own: the page head inlines it once); empty for None."""
    if figure is None:
        return Fragment("")
    div = figure.to_html(include_plotlyjs=False, full_html=False, div_id=f"fig-{name}",
                         config={"displaylogo": False, "responsive": True})
    return Fragment(f'<div class="figure" data-figure="{esc(name)}">{div}</div>', 1)


def section(anchor: str, title: str, caption: str, *parts: Union[Fragment, str]) -> Fragment:
    """`<h2>` title, the caption as a note, then the parts in order (figures counted)."""
    cap = f'<p class="note">{esc(caption)}</p>' if caption else ""
    pieces = [part if isinstance(part, Fragment) else Fragment(part) for part in parts]
    return Fragment(f'<h2 id="{anchor}">{esc(title)}</h2>{cap}' + "".join(p.html for p in pieces),
                    sum(p.figures for p in pieces))


def display_size(image: ImageCell, at_least: int) -> str:
    """width/height attributes: small images (the tiny model's 64 px samples) shown enlarged."""
    scale = max(1, at_least // max(image.width, image.height, 1))
    return f'width="{image.width * scale}" height="{image.height * scale}"'


def unreadable(cell: ImageCell) -> str:
    """The placeholder of an image the report could not read (the warnings name it too)."""
    return f'<span class="unreadable" title="{esc(cell.file)}">unreadable image<br>{esc(Path(cell.file).name)}</span>'


def image_data_uri(path: Path, max_side: int) -> tuple[str, int, int]:
    """The image as `data:image/png;base64,...` (shrunk to max_side), with its width and height."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB") if image.mode not in ("RGB", "RGBA", "L") else image.copy()
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), image.width, image.height


def image_cell(path: Path, max_side: int) -> ImageCell:
    """The image inlined, or (one bad PNG: a crash mid-write by another tool, a truncated copy)
    its error, so that it does not stop the report."""
    from PIL import Image

    try:
        uri, width, height = image_data_uri(path, max_side)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        return ImageCell(file=str(path), uri=None, width=None, height=None,
                         error=f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}")
    return ImageCell(file=str(path), uri=uri, width=width, height=height)
