"""Kernel-free slider figures: every frame embedded, one visible, a range input that switches them."""
import base64
import json
import re
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from itercourse.viz.explorers import PNG_MAGIC, slider_figure, slider_html  # noqa: E402


def small_figure(k):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, k])
    return fig


def test_frames_are_embedded_and_only_the_initial_one_is_visible():
    frames = {f"lam = {k}": small_figure(k) for k in range(3)}
    text = slider_html(frames, "demo", label="strength", initial=1)
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) == 3 and all(base64.b64decode(u).startswith(PNG_MAGIC) for u in uris)
    assert len(set(uris)) == 3
    assert text.count("display:block") == 1 and text.count("display:none") == 2
    assert 'type="range"' in text and 'max="2"' in text and 'value="1"' in text
    assert "<script" in text and "src=\"http" not in text          # inline JS only, nothing external
    assert "lam = 1" in text and plt.get_fignums() == []            # figures were closed after rendering


def test_svg_and_png_bytes_frames_and_stable_ids():
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    a = slider_html({"a": svg, "b": svg}, "t")
    assert a.count("data:image/svg+xml;base64,") == 2
    assert a == slider_html({"a": svg, "b": svg}, "t")              # deterministic output
    assert slider_figure({"a": svg}, "t")._repr_html_() == slider_html({"a": svg}, "t")


@pytest.mark.parametrize("frames,initial,exc", [({}, 0, ValueError), ({"a": b"not an image"}, 0, ValueError),
                                                ({"a": 3}, 0, TypeError), ({"a": "<svg/>"}, 2, ValueError)])
def test_bad_frames_are_explained(frames, initial, exc):
    with pytest.raises(exc):
        slider_html(frames, initial=initial)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the inline script")
def test_inline_script_switches_frames(tmp_path):
    text = slider_html({"a": "<svg/>", "b </script>": "<svg/>", "c": "<svg/>"}, "t")
    script = re.search(r"<script>(.*)</script>", text, re.S).group(1)
    uid = re.search(r'id="(icsf-[0-9a-f]+)"', text).group(1)
    mock = """
const frames = [0, 1, 2].map(() => ({style: {display: "none"}}));
const range = {value: "0", listeners: [], addEventListener(kind, fn) { this.listeners.push(fn); }};
const value = {textContent: ""};
const document = {getElementById: id => id.endsWith("-range") ? range : value,
                  getElementsByClassName: cls => frames};
""" + script + """
range.value = "1"; range.listeners.forEach(f => f());
console.log(JSON.stringify({shown: frames.map(f => f.style.display), label: value.textContent}));
"""
    js = tmp_path / "slider.js"
    js.write_text(mock)
    out = json.loads(subprocess.run(["node", str(js)], capture_output=True, text=True, check=True).stdout)
    assert out == {"shown": ["none", "block", "none"], "label": "b </script>"}
    assert uid in text
