"""cardguard's HTML page: header, navigation and the one stylesheet ``/`` and ``/report`` share."""

from __future__ import annotations

import html
from collections.abc import Sequence

from cardguard.expose import flamegraph

CSS = """
:root{--ink:#1d2330;--muted:#5a6478;--line:#dfe3ea;--bg:#f6f7f9;--accent:#3b63b8}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 background:var(--bg);color:var(--ink)}
header.top{background:var(--ink);color:#fff;padding:14px 28px}
header.top h1{margin:0;font-size:20px}
header.top p{margin:4px 0 0;color:#c9d1e0;font-size:13px}
header.top nav{margin-top:6px;font-size:13px}
header.top nav a{color:#fff;margin-right:14px}
main{max-width:1240px;margin:0 auto;padding:16px 28px 40px}
h2{font-size:18px;margin:18px 0 6px}
a{color:var(--accent)}
section.target{margin:18px 0 28px}
section.target>h2{margin:0 0 4px}
.meta,.muted{color:var(--muted);font-size:13px}
.meta{margin:0 0 10px}
.links{font-size:13px;margin:0 0 10px}
.links a{margin-right:12px}
.note{background:#fff8e1;border-left:4px solid #e0b400;padding:6px 10px;margin:6px 0;
 font-size:13px}
.error{background:#fdecea;border-left:4px solid #c62828;padding:6px 10px;margin:6px 0}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e3e6ec;vertical-align:top;
 font-size:14px}
th{background:#eef0f4;font-weight:600}
.sev{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:700;
 color:#fff;text-transform:uppercase;letter-spacing:.03em}
.sev.critical{background:#c62828}.sev.warning{background:#d9822b}.sev.info{background:#4f6d9a}
.ok{color:#17702a}.bad{color:#b00020}
article{background:#fff;border:1px solid var(--line);border-radius:6px;margin:14px 0;
 padding:12px 16px}
article.critical{border-left:6px solid #c62828}article.warning{border-left:6px solid #d9822b}
article.info{border-left:6px solid #4f6d9a}
article h3{margin:0 0 6px;font-size:16px}
article .summary{font-size:15px;margin:4px 0 8px;font-weight:500}
article .actions{font-size:13px;margin:4px 0 0}
article .actions a{margin-right:14px}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f3f4f7;padding:8px 10px;overflow-x:auto;border-radius:4px;margin:6px 0}
.cols{display:flex;gap:18px;flex-wrap:wrap}
.cols>div{flex:1 1 420px;min-width:300px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0;font-size:13px}
dt{color:var(--muted)}dd{margin:0;word-break:break-word}
.fix{background:#eef7ee;border-left:4px solid #2e7d32;padding:8px 10px;margin:8px 0 4px}
.fix h4,.ev h4{margin:0 0 4px;font-size:13px;text-transform:uppercase;color:var(--muted)}
figure{margin:6px 0}figcaption{font-size:12px;color:var(--muted)}
svg.chart{display:block;font:11px system-ui,sans-serif}
svg.chart text{fill:var(--muted)}
svg.chart .pt:hover circle.dot{r:4.5}
.id{color:#8a93a6;font-size:12px}
.clean{background:#eef7ee;padding:10px 14px;border-radius:6px}
"""
CSS += flamegraph.CSS


def esc(x: object) -> str:
    """``x`` as text safe in HTML content and attribute values."""
    return html.escape(str(x), quote=True)


def page(title: str, subtitle: str, body: str, *, nav: Sequence[tuple[str, str]] = ()) -> str:
    """Wrap ``body`` (HTML) in cardguard's page: header, navigation, the one stylesheet.

    ``nav`` links are ``(text, href)``; the flame graphs' search script is
    added only when the body holds a flame graph.
    """
    links = "".join(f'<a href="{esc(h)}">{esc(t)}</a>' for t, h in nav)
    script = f"<script>{flamegraph.SCRIPT}</script>" if 'class="flamegraph"' in body else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
        f'<header class="top"><h1>{esc(title)}</h1><p>{subtitle}</p>'
        + (f"<nav>{links}</nav>" if links else "")
        + f"</header><main>\n{body}\n</main>{script}</body></html>\n"
    )
