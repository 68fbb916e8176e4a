"""Digitclutter generator: shapes, labels, determinism, occlusion order, and an oracle that
composites at the original 512x512 resolution and downsamples afterwards."""
import numpy as np
import pytest
import torch

from itercourse.digitclutter import (BACKGROUND, OUTLINE, SUPERSAMPLE, X_RANGE, Y_RANGE, _hires_glyphs,
                                     digit_coverage, load_digitclutter, make_digitclutter, save_digitclutter)
from itercourse.io import CorruptFileError


def hires_composite(meta, i, size=32):
    """Paint image i at 16x resolution with the generator's glyphs, then box-average: the original pipeline."""
    U, F, (cy, cx) = _hires_glyphs(size)
    big, h, w = SUPERSAMPLE * size, U.shape[1], U.shape[2]
    pad = max(h, w) + big
    canvas = np.full((big + 2 * pad, big + 2 * pad), float(BACKGROUND))
    for k in range(meta["num_digits"][i]):
        d, (ox, oy), f = meta["digits"][i, k], meta["offsets"][i, k], meta["face"][i, k]
        x0 = pad + big // 2 + int(np.trunc(big * ox)) - cx
        y0 = pad + big // 2 + int(np.trunc(big * oy)) - cy
        region = canvas[y0:y0 + h, x0:x0 + w]
        canvas[y0:y0 + h, x0:x0 + w] = region * (1 - U[d]) + OUTLINE * (U[d] - F[d]) + f * F[d]
    canvas = canvas[pad:pad + big, pad:pad + big]
    return canvas.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean((1, 3))


def test_shapes_dtypes_and_values():
    x, y = make_digitclutter(64)
    assert x.shape == (64, 1, 32, 32) and x.dtype == torch.uint8
    assert y.shape == (64, 10) and y.dtype == torch.float32
    assert (x == BACKGROUND).any(dim=(1, 2, 3)).all()          # every image shows background
    assert (x < 80).any() and (x > 200).any()                  # dark faces and white outlines appear
    for size in (8, 64):
        xs, _ = make_digitclutter(4, size=size)
        assert xs.shape == (4, 1, size, size)


def test_deterministic_per_seed_and_independent_of_n():
    a, la = make_digitclutter(50, seed=7)
    b, lb = make_digitclutter(50, seed=7)
    c, _ = make_digitclutter(50, seed=8)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    long, _ = make_digitclutter(1100, seed=7)                   # crosses a random-number chunk boundary
    assert torch.equal(long[:50], a)
    short, _ = make_digitclutter(1030, seed=7)
    assert torch.equal(long[:1030], short)


@pytest.mark.parametrize("num_digits", [1, 3, 10, (2, 5)])
def test_labels_are_the_digits_drawn(num_digits):
    x, y, meta = make_digitclutter(300, num_digits=num_digits, seed=1, return_meta=True)
    lo, hi = (num_digits, num_digits) if isinstance(num_digits, int) else num_digits
    counts = meta["num_digits"]
    assert counts.min() >= lo and counts.max() <= hi
    if lo < hi:
        assert set(np.unique(counts)) == set(range(lo, hi + 1))
    assert torch.equal(y.sum(1), torch.from_numpy(counts).float())
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    for i in range(len(x)):
        drawn = meta["digits"][i][meta["digits"][i] >= 0]
        assert len(drawn) == counts[i] == len(set(drawn.tolist()))          # distinct
        assert set(np.nonzero(y[i].numpy())[0].tolist()) == set(drawn.tolist())
        assert (meta["digits"][i][counts[i]:] == -1).all()


def test_positions_and_faces_in_their_ranges():
    _, _, meta = make_digitclutter(2000, seed=2, return_meta=True)
    off = meta["offsets"]
    assert np.abs(off[..., 0]).max() <= X_RANGE and np.abs(off[..., 1]).max() <= Y_RANGE
    assert np.abs(off[..., 0]).max() > 0.9 * X_RANGE and np.abs(off.mean((0, 1))).max() < 0.02
    assert meta["face"].min() >= 0 and meta["face"].max() <= 64
    _, _, black = make_digitclutter(20, face_grey=0, return_meta=True)
    assert (black["face"] == 0).all()


def test_later_digits_occlude_earlier_ones():
    x, _, meta = make_digitclutter(200, num_digits=4, seed=3, return_meta=True)
    checked = 0
    for i in range(len(x)):
        covers = [digit_coverage(int(d), tuple(meta["offsets"][i, k])) for k, d in enumerate(meta["digits"][i])]
        img = x[i, 0].numpy().astype(float)
        u_last, f_last = covers[-1]
        # fully inside the last digit's face: exactly its face grey, whatever lies beneath
        assert np.array_equal(img[f_last >= 1.0], np.full((f_last >= 1.0).sum(), meta["face"][i, -1]))
        # fully on its outline: white
        assert (img[(u_last >= 1.0) & (f_last <= 0.0)] == OUTLINE).all()
        # untouched by every digit: background
        untouched = np.all([u <= 0.0 for u, _ in covers], axis=0)
        assert (img[untouched] == BACKGROUND).all()
        # a face pixel of an earlier digit that the last digit covers shows the last digit
        hidden = (covers[0][1] >= 1.0) & (f_last >= 1.0)
        checked += hidden.sum()
        assert (img[hidden] == meta["face"][i, -1]).all()
    assert checked > 0                                          # the overlap case did occur


def test_single_digit_equals_hires_rendering():
    x, _, meta = make_digitclutter(40, num_digits=1, seed=4, return_meta=True)
    for i in range(len(x)):
        ref = hires_composite(meta, i)
        assert np.abs(ref - x[i, 0].numpy()).max() <= 0.5 + 1e-3     # exact up to rounding


def test_clutter_close_to_hires_rendering():
    x, _, meta = make_digitclutter(40, num_digits=(2, 5), seed=5, return_meta=True)
    err = np.stack([np.abs(hires_composite(meta, i) - x[i, 0].numpy()) for i in range(len(x))])
    assert err.mean() < 1.0                     # under one grey level on average
    assert (err > 2).mean() < 0.05              # only pixels where two digit edges meet differ


def test_debris_paints_over_the_same_scene():
    clean, y, meta = make_digitclutter(100, seed=6, return_meta=True)
    dirty, yd, meta_d = make_digitclutter(100, seed=6, debris=True, return_meta=True)
    assert torch.equal(y, yd) and np.array_equal(meta["digits"], meta_d["digits"])
    changed = (clean != dirty).float().mean(dim=(1, 2, 3))
    assert (changed > 0.02).all()
    none, _ = make_digitclutter(100, seed=6, debris=True, n_debris=0)
    assert torch.equal(none, clean)
    heavy, _ = make_digitclutter(100, seed=6, debris=True, n_debris=50)
    assert (heavy != clean).float().mean() > (dirty != clean).float().mean()


@pytest.mark.parametrize("kwargs, err", [
    (dict(n=0), ValueError), (dict(n=2.5), TypeError), (dict(n=4, num_digits=0), ValueError),
    (dict(n=4, num_digits=11), ValueError), (dict(n=4, num_digits=(4, 2)), ValueError),
    (dict(n=4, num_digits=(1, 2, 3)), ValueError), (dict(n=4, size=4), ValueError),
    (dict(n=4, seed=-1), ValueError), (dict(n=4, debris="yes"), TypeError),
    (dict(n=4, face_grey=300), ValueError), (dict(n=4, debris=True, debris_size=(6, 40)), ValueError),
])
def test_bad_arguments_name_themselves(kwargs, err):
    with pytest.raises(err) as info:
        make_digitclutter(**kwargs)
    bad = [k for k in kwargs if k != "n"] or ["n"]
    assert bad[-1] in str(info.value)


def test_save_and_load_roundtrip_with_checksum(tmp_path):
    x, y, meta = make_digitclutter(30, seed=9, return_meta=True)
    path = save_digitclutter(tmp_path / "dc.npz", x.numpy(), y.numpy(), meta, n=30, seed=9)
    x2, y2, meta2, params = load_digitclutter(path)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert np.array_equal(meta["digits"], meta2["digits"]) and "seed" in params
    blob = path.read_bytes()
    path.write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    with pytest.raises(CorruptFileError):
        load_digitclutter(path)
