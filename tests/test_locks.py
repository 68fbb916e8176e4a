"""Lock files: two sweeps (or a sweep and a run) on one results folder never compute a config twice,
never wait in silence, and never hang on the lock of a process that is gone.

A config being computed has its lock file ``<id>.claim`` (itercourse.locks): created exclusively, with the
owner's pid, host, start time and a heartbeat. A lock whose owner is dead, whose pid was reused or
whose heartbeat stopped is stale and taken over; a live one is waited for, saying so. (That a sweep's
workers exit with it, so a killed sweep leaves no process holding a lock: ``tests/test_sweeps.py``.)
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from itercourse import experiments as ex
from itercourse import locks
from itercourse.experiments import ExperimentConfig, Result
from itercourse.io import atomic_write_json
from itercourse.sweeps import sweep
from itercourse.training import History
from test_errors import small_config

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:accuracy .* is at or below chance:RuntimeWarning")


tiny = small_config          # the error tests' small config: 64 images, widths (4, 8), batch 32


def fake_result(cfg: ExperimentConfig, acc: float = 0.5) -> Result:
    """A result written without training (the files the report and the sweep read)."""
    h = History(epoch=[1], lr=[0.1], train_loss=[1.0], train_acc=[acc], test_loss=[1.0], test_acc=[acc], seconds=[0.1])
    return Result(cfg, h, {"recurrence": 0.1, "convergence": 0.2, "divergence": 0.3}, acc, 1.0)


def write(res: Result, results_dir: Path) -> Path:
    path = Path(results_dir) / res.config.experiment / f"{res.id}.json"
    atomic_write_json(path, res.to_json())
    return path


@pytest.fixture(autouse=True)
def quick_extras(monkeypatch):
    """The Lipschitz report of a finished run is not what these tests check: skipped, to save time."""
    monkeypatch.setattr(ex, "_lipschitz", lambda model, data: {})


# ------------------------------------------------------------------ locks instead of check-then-act races

def test_a_lock_is_exclusive_and_a_dead_owner_is_stale(tmp_path):
    cfg = tiny()
    assert locks.acquire(cfg, tmp_path)
    assert not locks.acquire(cfg, tmp_path)                         # held by this live process
    locks.release(cfg, tmp_path)
    locks.release(cfg, tmp_path)                                   # releasing twice is harmless
    sleeper = subprocess.Popen([sys.executable, "-c", "pass"])
    sleeper.wait()                                                  # a pid that is certainly dead
    path = locks.lock_path(cfg, tmp_path)
    path.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename, "time": time.time()}))
    assert locks.acquire(cfg, tmp_path)                              # stale: taken over
    assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_config_locked_by_another_sweep_is_not_trained_twice(tmp_path, monkeypatch):
    from itercourse import sweeps
    cfg = tiny()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = locks.lock_path(cfg, tmp_path / "r")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"pid": other.pid, "host": os.uname().nodename, "time": time.time()}))
        monkeypatch.setattr(ex, "train", lambda *a, **k: pytest.fail("trained a config another sweep holds"))
        assert sweeps._run_locked(cfg, tmp_path / "r", tmp_path / "c", None, str(tmp_path / "d")) == "locked"
    finally:
        other.kill()
        other.wait()
    monkeypatch.undo()
    monkeypatch.setattr(ex, "_lipschitz", lambda model, data: {})
    results = sweep([cfg], results_dir=tmp_path / "r", checkpoint_dir=tmp_path / "c",
                    data_root=str(tmp_path / "d"), progress=False, log=lambda *a: None, poll_s=0.1)
    assert results[0].id == cfg.id and not path.exists()           # the dead owner's lock was taken over


# ------------------------------------------------------------------ locks never hang in silence

@pytest.fixture
def other_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _lock_file(cfg, results_dir, **held):
    path = locks.lock_path(cfg, results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "time": time.time(), **held}))
    return path


def test_a_lock_whose_pid_was_reused_is_stale(tmp_path, other_process):
    cfg = tiny()
    _lock_file(cfg, tmp_path, pid=other_process, start=locks.start_time(other_process) + 1)
    assert locks.acquire(cfg, tmp_path)                      # the pid lives, but is another process
    locks.release(cfg, tmp_path)
    _lock_file(cfg, tmp_path, pid=other_process, start=locks.start_time(other_process))
    assert not locks.acquire(cfg, tmp_path)                  # the real owner keeps it


@pytest.mark.parametrize("pid", [0, -1, "12"])
def test_a_lock_with_pid_zero_is_stale(tmp_path, pid):
    cfg = tiny()
    _lock_file(cfg, tmp_path, pid=pid)
    assert locks.acquire(cfg, tmp_path)
    locks.release(cfg, tmp_path)


def test_a_foreign_lock_goes_stale_when_its_heartbeat_stops(tmp_path):
    cfg = tiny()
    path = _lock_file(cfg, tmp_path, pid=123, host="elsewhere")
    assert not locks.acquire(cfg, tmp_path)                  # fresh heartbeat: held
    old = time.time() - locks.LOCK_TTL_S - 60
    path.write_text(json.dumps({"pid": 123, "host": "elsewhere", "time": old}))
    os.utime(path, (old, old))
    assert locks.acquire(cfg, tmp_path)                      # killed on another host: taken over
    locks.release(cfg, tmp_path)


def test_waiting_is_visible_and_ends_when_the_lock_is_released(tmp_path, other_process):
    cfg = tiny()
    path = _lock_file(cfg, tmp_path, pid=other_process, start=locks.start_time(other_process))
    lines = []
    threading.Timer(0.3, path.unlink).start()
    assert locks.wait_while_locked(cfg, tmp_path, log=lines.append, poll_s=0.05)
    assert len(lines) == 1 and f"waiting for {cfg.id}" in lines[0]
    assert f"held by {socket.gethostname()}/{other_process} since" in lines[0]


def test_run_honours_a_sweeps_lock(tmp_path, monkeypatch):
    cfg = tiny()
    waited = []

    def fake_wait(c, results_dir, log=print):           # the sweep finished while run() waited
        waited.append(c.id)
        write(fake_result(c), Path(results_dir))
        return True
    monkeypatch.setattr(ex, "wait_while_locked", fake_wait)
    monkeypatch.setattr(ex, "train", lambda *a, **k: pytest.fail("run() trained a config a sweep was computing"))
    res = ex.run(cfg, tmp_path / "r", tmp_path / "ck", data_root=str(tmp_path / "d"), progress=False)
    assert waited == [cfg.id] and res.id == cfg.id


def test_locks_heartbeat_while_held(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "HEARTBEAT_S", 0.05)
    cfg = tiny()
    assert locks.acquire(cfg, tmp_path)
    path = locks.lock_path(cfg, tmp_path)
    os.utime(path, (1, 1))
    time.sleep(0.3)
    assert path.stat().st_mtime > time.time() - 5
    locks.release(cfg, tmp_path)
