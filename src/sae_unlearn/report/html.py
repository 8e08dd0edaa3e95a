"""``report.html``: the Markdown report rendered to one self-contained page (images inlined), so it
can be mailed or attached to a ticket without its plots folder.

Why render the Markdown rather than write HTML by hand: one source for both reports, so the page
and the terminal version never disagree. ``markdown-it-py`` (already a dependency of ``rich``) does
the rendering; only the image inlining is ours.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 1px 4px; border-radius: 3px; }
"""

_IMG_SRC = re.compile(r'<img src="([^"]+)"')


def _inline_images(body: str, base_dir: Path) -> str:
    def data_uri(match: re.Match) -> str:
        src = html.unescape(match.group(1))
        path = base_dir / src
        if src.startswith(("data:", "http:", "https:")) or not path.is_file():
            return match.group(0)
        mime = "image/png" if path.suffix.lower() == ".png" else f"image/{path.suffix.lstrip('.').lower()}"
        return f'<img src="data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"'

    return _IMG_SRC.sub(data_uri, body)


def render_html(markdown_text: str, base_dir: Path, title: str) -> str:
    """A complete HTML page; images referenced relative to ``base_dir`` are embedded as data URIs."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{_inline_images(body, base_dir)}</body></html>\n"
    )
