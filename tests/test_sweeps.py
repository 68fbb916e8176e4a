"""Sweeps (itercourse.sweeps): the workers of a local sweep exit with it, so a sweep killed with -9
leaves no process behind that holds a lock or keeps training.

(Grids and resuming: ``tests/test_experiments.py``; failure records: ``tests/test_errors.py``; lock files:
``tests/test_locks.py``.)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from itercourse.locks import _alive   # is this pid a live process? (the locks' own check)

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ workers exit with their parent

PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from itercourse.sweeps import watch_parent

def job(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=watch_parent,
                               initargs=(os.getpid(),))
    pool.submit(job, sys.argv[1])
    time.sleep(120)
"""


def test_workers_exit_when_the_parent_is_killed(tmp_path):
    script, pidfile = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(pidfile)], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.time() + 120
        while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
            time.sleep(0.2)
        worker = int(pidfile.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 15
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.2)
        gone = not _alive(worker) or _zombie(worker)
        if not gone:
            os.kill(worker, signal.SIGKILL)
        assert gone, "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
