"""Nothing lost: every file the package writes is atomic and verified on read.

Three kinds of file, three writers, all through ``itercourse.io.atomic_write_bytes``
(temporary file in the same folder, fsync, ``os.replace``):

    checkpoints   io.atomic_torch_save          (train(..., checkpoint=...))
    results       io.atomic_write_json          (experiments.run)
    datasets      digitclutter.save_digitclutter (load_dataset(..., cache=True), the CLI)

Each carries a SHA-256 of its payload, checked by its reader. The tests:

- a source scan: no module writes a file any other way (except io.py itself);
- a write interrupted at the rename, at the fsync, or by an exception inside
  it leaves the previous good file intact and no temporary file behind;
- a process killed with SIGKILL while it rewrites a file in a loop leaves a
  file that verifies (the old or the new version, never a mix); temporary
  files a killed process could not clean up are hidden names ending in
  ``.tmp`` that no reader picks up;
- truncated, bit-flipped, emptied or edited files raise ``CorruptFileError``
  naming the path; the dataset cache and the results cache recover from them;
- training that dies while writing a checkpoint resumes from the last good one.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from itercourse import experiments
from itercourse import io as cio
from itercourse.digitclutter import load_digitclutter, save_digitclutter
from itercourse.io import CorruptFileError

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "itercourse"


# ------------------------------------------------------------------ the three writers and their readers

def _npz_payload(v: int):
    return np.full((4, 1, 8, 8), v, np.uint8), np.eye(10, dtype=np.float32)[:4] * (v % 2)


WRITERS = {
    # name: (write(path, version), read(path) -> comparable value, file name)
    "json": (lambda p, v: cio.atomic_write_json(p, {"version": v, "acc": [0.1 * v] * 50}),
             lambda p: cio.read_json(p)["version"], "result.json"),
    "torch": (lambda p, v: cio.atomic_torch_save(p, {"version": v, "w": torch.full((1000,), float(v))}),
              lambda p: int(cio.torch_load_verified(p)["version"]), "ckpt.pt"),
    "npz": (lambda p, v: save_digitclutter(p, *_npz_payload(v), version=v),
            lambda p: int(load_digitclutter(p)[0][0, 0, 0, 0]), "clutter.npz"),
}
KINDS = sorted(WRITERS)


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------ 1. nothing writes around io.py

WRITE_METHODS = {"write_text", "write_bytes"}                      # pathlib: never atomic
SAVE_CALLS = {"savefig": 0, "savez": 0, "savez_compressed": 0, "imsave": 0, "to_csv": 0,
              "save": None, "dump": 1}                             # name -> index of the destination argument
SAVE_OWNERS = {"save": {"torch", "np", "numpy"}, "dump": {"json", "pickle", "yaml", "torch"}}   # whose save/dump


def _in_memory(node: ast.AST) -> bool:
    """A destination that is a buffer, not a path: ``buf``, ``io.BytesIO()``, ``BytesIO()``..."""
    if isinstance(node, ast.Call):
        f = node.func
        return (isinstance(f, ast.Attribute) and f.attr in ("BytesIO", "StringIO")) or \
               (isinstance(f, ast.Name) and f.id in ("BytesIO", "StringIO"))
    return isinstance(node, ast.Name) and any(k in node.id.lower() for k in ("buf", "stream", "bytes"))


def non_atomic_writes(path: Path, root: Path = REPO) -> list[str]:
    """Calls in one module that write a file without going through itercourse.io."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        where = f"{path.relative_to(root).as_posix()}:{node.lineno}"
        if name in WRITE_METHODS:
            found.append(f"{where} {name}()")
        elif name in ("open", "fdopen"):
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and set(mode.value) & set("wax+"):
                found.append(f"{where} open(..., {mode.value!r})")
        elif name in SAVE_CALLS and isinstance(f, ast.Attribute):
            owner = f.value.id if isinstance(f.value, ast.Name) else ""
            if name in SAVE_OWNERS and owner not in SAVE_OWNERS[name]:
                continue                           # e.g. a local helper called save(), not torch.save
            index = SAVE_CALLS[name]
            if index is None:                      # torch.save(obj, dest) / np.save(dest, arr)
                index = 1 if owner == "torch" else 0
            dest = node.args[index] if len(node.args) > index else \
                next((k.value for k in node.keywords if k.arg in ("f", "fname", "file", "fp")), None)
            if dest is not None and not _in_memory(dest):
                found.append(f"{where} {name}() to a path")
    return found


def test_every_write_goes_through_io():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.name != "io.py" for hit in non_atomic_writes(path)]
    assert not found, ("files written without itercourse.io (use atomic_write_bytes / atomic_write_json / "
                       "atomic_torch_save):\n" + "\n".join(found))


def test_the_scan_sees_non_atomic_writes(tmp_path):
    """The scanner itself, on code with every kind of write it must catch and the ones it must allow."""
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""\
        import io, json, torch, numpy as np
        open("a.txt", "w").write("x")                  # caught
        Path("b").write_text("x")                      # caught
        torch.save(obj, "c.pt")                        # caught
        np.savez("d.npz", a=1)                         # caught
        json.dump(obj, open("e.json", "w"))            # caught (open + dump)
        fig.savefig("f.png")                           # caught
        buf = io.BytesIO(); torch.save(obj, buf)       # allowed
        fig.savefig(buf, format="png")                 # allowed
        np.savez_compressed(io.BytesIO(), a=1)         # allowed
        save(fig, "accuracy.png")                      # allowed (a local helper, not torch.save)
        open("g.txt").read(); open("h", "rb")          # allowed (reads)
    """))
    hits = non_atomic_writes(probe, root=tmp_path)
    assert len(hits) == 7, hits


def test_a_figure_is_written_as_a_png_through_io(tmp_path, monkeypatch):
    """``atomic_write_png``: the bytes ``savefig`` makes in memory, renamed into place; a failed
    rename keeps the old picture and leaves no temporary file."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    path = cio.atomic_write_png(tmp_path / "out" / "f.png", fig, dpi=50)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50, bbox_inches="tight")
    assert path == tmp_path / "out" / "f.png" and path.read_bytes() == buf.getvalue()
    monkeypatch.setattr(cio.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError, match="f.png"):
        cio.atomic_write_png(path, fig, dpi=80)
    assert path.read_bytes() == buf.getvalue() and _temp_files(path.parent) == []
    plt.close(fig)


# ------------------------------------------------------------------ 2. interrupted writes keep the old file

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["rename", "fsync", "write"])
def test_interrupted_write_keeps_previous_file(kind, where, tmp_path, monkeypatch):
    write, read, name = WRITERS[kind]
    path = tmp_path / name
    write(path, 1)
    before = path.read_bytes()

    class Crash(BaseException):                # like KeyboardInterrupt: not an ordinary Exception
        pass

    def crash(*args, **kwargs):
        raise Crash(f"simulated crash at {where}")
    if where == "rename":
        monkeypatch.setattr(cio.os, "replace", crash)
    elif where == "fsync":
        monkeypatch.setattr(cio.os, "fsync", crash)
    else:                                      # the file write itself dies half-way
        real_fdopen = cio.os.fdopen

        class HalfWriter:
            def __init__(self, f):
                self.f = f
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                self.f.close()
            def write(self, data):
                self.f.write(data[: len(data) // 2])
                raise Crash("simulated crash half-way through write()")
            def __getattr__(self, attr):
                return getattr(self.f, attr)
        monkeypatch.setattr(cio.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))

    with pytest.raises(Crash):
        write(path, 2)
    monkeypatch.undo()
    assert path.read_bytes() == before, "the previous good file was changed"
    assert read(path) == 1
    assert _temp_files(tmp_path) == [], "an interrupted write left its temporary file behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("kind", KINDS)
def test_first_write_interrupted_leaves_nothing(kind, tmp_path, monkeypatch):
    write, _, name = WRITERS[kind]
    monkeypatch.setattr(cio.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path / name, 1)
    assert list(tmp_path.iterdir()) == [], "a failed first write must leave no file at all"


# ------------------------------------------------------------------ 3. SIGKILL in the middle of a write

KILL_SCRIPT = """
import sys, time, torch
from itercourse import io as cio
real_fsync = cio.os.fsync
def slow_fsync(fd):                    # a slow disk: the temporary file lives a while before the rename
    print("window", flush=True)
    time.sleep(0.2)
    real_fsync(fd)
cio.os.fsync = slow_fsync
path = sys.argv[1]
big = torch.arange(3_000_000, dtype=torch.float32)          # ~12 MB per write
v = 0
while True:
    v += 1
    cio.atomic_torch_save(path, {"version": v, "w": big + v})
    if v == 1:
        print("ready", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_during_writes_leaves_a_verified_file(tmp_path):
    """Kill a process that rewrites a checkpoint in a loop; the file on disk always verifies.

    The first kill lands inside a write for certain (the child says when its
    temporary file is written and not yet renamed); the second at a random moment.
    """
    path = tmp_path / "ckpt.pt"
    rng = np.random.default_rng(0)
    leftovers = set()
    for attempt in range(2):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
        try:
            lines = iter(proc.stdout.readline, "")
            assert "ready" in [next(lines).strip() for _ in range(2)]   # "window", then "ready"
            if attempt == 0:
                assert next(lines).strip() == "window"                   # version 2 is half-way to disk
            else:
                time.sleep(float(rng.uniform(0.05, 0.6)))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            proc.stdout.close()
        state = cio.torch_load_verified(path)                 # raises CorruptFileError if torn
        v = int(state["version"])
        assert torch.equal(state["w"][:5], torch.arange(5.0) + v), "a mix of two versions"
        if attempt == 0:
            assert v == 1, "killed before its rename, version 2 must not be visible"
            assert _temp_files(tmp_path), "the kill was meant to land inside a write"
        leftovers |= set(_temp_files(tmp_path))
    # What a kill leaves: hidden temporary files, never mistaken for the file itself.
    for name in leftovers:
        assert name.startswith(".ckpt.pt.") and name.endswith(".tmp"), name
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["ckpt.pt"]


def test_readers_ignore_leftover_temporary_files(tmp_path):
    """A killed writer's temporary file is never read as a result, a dataset or a checkpoint."""
    folder = tmp_path / "results" / "grid"
    folder.mkdir(parents=True)
    (folder / ".abc123.json.k2j3h4.tmp").write_bytes(b'{"sha256": "half a fi')   # what SIGKILL leaves
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # not even a warning about it
        assert experiments.load_results("grid", tmp_path / "results") == []


# ------------------------------------------------------------------ 4. damaged files are detected, by path

def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif how == "bit-flip":
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "appended":
        path.write_bytes(data + b"garbage")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["truncated", "bit-flip", "empty", "appended"])
def test_damaged_file_raises_corrupt_file_error_naming_it(kind, how, tmp_path):
    write, read, name = WRITERS[kind]
    path = tmp_path / name
    write(path, 3)
    _damage(path, how)
    with pytest.raises(CorruptFileError) as info:
        read(path)
    assert str(path) in str(info.value), str(info.value)


def test_edited_json_fails_its_checksum(tmp_path):
    """Changing a number by hand (the file stays valid JSON) is detected too."""
    path = cio.atomic_write_json(tmp_path / "r.json", {"acc": 0.51})
    wrapped = json.loads(path.read_text())
    wrapped["data"]["acc"] = 0.99
    path.write_text(json.dumps(wrapped))
    with pytest.raises(CorruptFileError, match="checksum") as info:
        cio.read_json(path)
    assert str(path) in str(info.value)


def test_json_without_checksum_is_refused(tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"acc": 0.5}))               # written by hand, not by itercourse
    with pytest.raises(CorruptFileError) as info:
        cio.read_json(path)
    assert str(path) in str(info.value)


def test_dataset_cache_recovers_from_a_damaged_file(tmp_path):
    """load_dataset(cache=True) regenerates a truncated cache file and rewrites it atomically."""
    from itercourse.data import load_dataset
    first = load_dataset("digitclutter", root=str(tmp_path), train_size=16, test_size=8, cache=True)
    files = sorted((tmp_path / "digitclutter").glob("*.npz"))
    assert len(files) == 2
    _damage(files[0], "truncated")
    with pytest.raises(CorruptFileError):
        load_digitclutter(files[0])
    again = load_dataset("digitclutter", root=str(tmp_path), train_size=16, test_size=8, cache=True)
    assert torch.equal(first.train_images, again.train_images) and torch.equal(first.test_labels, again.test_labels)
    for f in files:
        load_digitclutter(f)                                 # both verify again
    assert _temp_files(tmp_path / "digitclutter") == []


def test_results_cache_reports_and_ignores_a_damaged_result(tmp_path):
    cfg = experiments.ExperimentConfig(experiment="grid")
    path = experiments.result_path(cfg, tmp_path)
    cio.atomic_write_json(path, {"id": cfg.id, "config": "whatever"})
    _damage(path, "truncated")
    with pytest.warns(RuntimeWarning, match=str(path).replace("\\", "\\\\")):
        assert experiments.load_result(cfg, tmp_path) is None


# ------------------------------------------------------------------ 5. training survives a crash while checkpointing

def test_training_resumes_after_a_crash_while_checkpointing(tmp_path, monkeypatch):
    """The checkpoint of epoch 2 fails at its rename: epoch 1's checkpoint survives, and training resumes from it."""
    from itercourse.data import load_dataset
    from itercourse.models import ResNetConfig, build_resnet
    from itercourse.training import TrainConfig, train

    torch.set_num_threads(1)
    data = load_dataset("digitclutter", root=str(tmp_path / "data"), train_size=32, test_size=16)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, fast=False, augment=False)
    make = lambda: build_resnet(ResNetConfig(in_channels=1, widths=(4, 4), blocks=(1, 1)), seed=0)
    ckpt = tmp_path / "ck" / "run.pt"

    real_replace, calls = cio.os.replace, []

    def replace_that_dies_on_the_second_checkpoint(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt("power cut while saving epoch 2")
        return real_replace(src, dst)
    monkeypatch.setattr(cio.os, "replace", replace_that_dies_on_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(make(), data, cfg, checkpoint=ckpt, progress=False, log=lambda *a: None)
    monkeypatch.undo()

    state = cio.torch_load_verified(ckpt)
    assert state["epoch"] == 0, "the checkpoint on disk must be the last complete one (epoch 1)"
    assert _temp_files(ckpt.parent) == []

    logs = []
    resumed = train(make(), data, cfg, checkpoint=ckpt, progress=False, log=logs.append)
    assert any("resumed" in line and "after epoch 1/3" in line for line in logs), logs
    assert resumed.epoch == [1, 2, 3]
    straight = train(make(), data, cfg, checkpoint=None, progress=False, log=lambda *a: None)
    np.testing.assert_allclose(resumed.train_loss, straight.train_loss, rtol=1e-5, atol=1e-6)
