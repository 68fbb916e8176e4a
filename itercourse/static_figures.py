"""Interactive figures that need no Python kernel: precomputed frames behind a slider, in plain HTML.

ipywidgets explorers need a running kernel, so in the static book they are
dead controls. A *slider figure* instead embeds every frame as a base64 image
inside the notebook output, with an ``<input type="range">`` and a few lines
of inline JavaScript that show one frame at a time. It works in the built
book, in a trusted notebook and in any browser, offline: no external scripts,
no kernel. Without JavaScript the first frame stays visible.

Usage (each frame a matplotlib figure, PNG bytes or SVG text)::

    frames = {f"lambda = {lam}": draw(lam) for lam in strengths}
    slider_figure(frames, "Soft coupling: block similarity", label="strength")
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def figure_bytes(fig, fmt: str = "png", dpi: int = 80) -> bytes:
    """Render a matplotlib figure to PNG or SVG bytes and close it (so it is not displayed twice)."""
    import matplotlib.pyplot as plt
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt={fmt!r} is not allowed; choose one of ['png', 'svg']")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"Software": None} if fmt == "png" else
                {"Date": None, "Creator": None})
    plt.close(fig)
    return buf.getvalue()


def _data_uri(frame, fmt: str, dpi: int) -> str:
    """A ``data:`` URI for one frame: a Figure, PNG bytes or SVG text/bytes."""
    if hasattr(frame, "savefig"):
        frame = figure_bytes(frame, fmt, dpi)
    if isinstance(frame, str):
        frame = frame.encode()
    if not isinstance(frame, (bytes, bytearray)):
        raise TypeError(f"frame of type {type(frame).__name__} is not supported; pass a matplotlib Figure, "
                        "PNG bytes or SVG text")
    frame = bytes(frame)
    if frame.startswith(PNG_MAGIC):
        mime = "image/png"
    elif b"<svg" in frame[:2048]:
        mime = "image/svg+xml"
    else:
        raise ValueError("frame bytes are neither PNG (no PNG signature) nor SVG (no <svg tag); "
                         "pass a matplotlib Figure, PNG bytes or SVG text")
    return f"data:{mime};base64,{base64.b64encode(frame).decode('ascii')}"


def slider_html(frames: dict, title: str = "", *, label: str = "frame", initial: int = 0,
                fmt: str = "png", dpi: int = 80, max_width: str = "100%") -> str:
    """The HTML of a slider figure (see :func:`slider_figure`)."""
    if not isinstance(frames, dict) or not frames:
        raise ValueError(f"frames must be a non-empty dict label -> figure; got {type(frames).__name__} "
                         f"with {len(frames) if hasattr(frames, '__len__') else '?'} entries")
    names = [str(k) for k in frames]
    if not (isinstance(initial, int) and 0 <= initial < len(names)):
        raise ValueError(f"initial={initial!r} is out of range; it must be an integer in 0..{len(names) - 1}")
    uris = [_data_uri(f, fmt, dpi) for f in frames.values()]
    uid = "icsf-" + hashlib.sha1("".join(names + uris + [title]).encode()).hexdigest()[:12]
    imgs = "\n".join(
        f'<img class="{uid}-frame" src="{u}" alt="{html.escape(title)}: {html.escape(n)}" '
        f'style="max-width:{max_width};height:auto;display:{"block" if i == initial else "none"}"/>'
        for i, (n, u) in enumerate(zip(names, uris)))
    js_names = json.dumps(names).replace("</", "<\\/")     # a label cannot close the script early
    script = f"""<script>
(function () {{
  var names = {js_names};
  var range = document.getElementById("{uid}-range"), value = document.getElementById("{uid}-value");
  var frames = document.getElementsByClassName("{uid}-frame");
  range.addEventListener("input", function () {{
    for (var i = 0; i < frames.length; i++) frames[i].style.display = (i == range.value) ? "block" : "none";
    value.textContent = names[range.value];
  }});
}})();
</script>"""
    return f"""<div id="{uid}" style="border:1px solid #ddd;padding:8px;margin:8px 0">
<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>
<label style="display:flex;align-items:center;gap:8px">{html.escape(label)}
<input id="{uid}-range" type="range" min="0" max="{len(names) - 1}" step="1" value="{initial}" style="flex:0 1 320px"/>
<span id="{uid}-value" style="font-family:monospace">{html.escape(names[initial])}</span></label>
<noscript>(This slider needs JavaScript; the first frame is shown.)</noscript>
{imgs}
{script}
</div>"""


def slider_figure(frames: dict, title: str = "", *, label: str = "frame", initial: int = 0,
                  fmt: str = "png", dpi: int = 80, max_width: str = "100%"):
    """A kernel-free interactive figure: one precomputed frame per slider position.

    ``frames`` maps a label (shown next to the slider) to a matplotlib Figure
    (rendered to ``fmt`` at ``dpi`` and closed), PNG bytes or SVG text; order
    is slider order. Returns ``IPython.display.HTML`` (display it, or make it a
    cell's last expression). Every frame is embedded, so keep them few and small.
    """
    from IPython.display import HTML
    return HTML(slider_html(frames, title, label=label, initial=initial, fmt=fmt, dpi=dpi, max_width=max_width))
