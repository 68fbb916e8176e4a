"""Lock files: how sweeps (and runs) share a results folder without computing a config twice.

While a config is computed, its lock file ``<id>.claim`` (created atomically and
exclusively, like ``O_CREAT | O_EXCL``, holding the owner's pid, host, time and
process start time) sits beside the results; a second sweep on the same folder
skips it and waits, saying so ("waiting for <id> held by <host>/<pid> since ...").
The owner touches the file every ``HEARTBEAT_S`` (its modification time is the
heartbeat). A lock is stale, and taken over, when its owner on this host is no
longer running, or its pid now belongs to another process (the start time in
``/proc/<pid>/stat`` differs), or its pid is not a positive integer; a lock from
another host is stale once its heartbeat is older than ``LOCK_TTL_S`` (two
takeovers of one stale lock at the same instant are not excluded; both then
compute the config, and the atomic result write keeps one). The record a failed
config leaves (``<id>.failed.json``) is the sweep's: :func:`itercourse.sweeps.failure_path`.

(The files keep the suffix ``.claim`` they have always had: results folders and ``.gitignore`` know it.)
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from .config_id import result_path
from .io import atomic_create_bytes

HEARTBEAT_S = 60.0          # how often the owner of a lock touches it
LOCK_TTL_S = 15 * 60        # a lock from another host is stale when its heartbeat is older than this
_beats: dict = {}           # lock path -> threading.Event that stops its heartbeat


def lock_path(cfg, results_dir="results") -> Path:
    """The lock file of a config being computed: ``<id>.claim`` beside the results."""
    return result_path(cfg, results_dir).with_suffix(".claim")


def _alive(pid: int) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False                              # pid 0 / -1 name process groups, not an owner
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_time(pid: int):
    """When process ``pid`` started (clock ticks since boot, field 22 of ``/proc/<pid>/stat``); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])    # fields after "(comm)": state is field 3
    except (OSError, ValueError, IndexError):
        return None


def _heartbeat_age(path: Path, held: dict) -> float:
    """Seconds since the lock's owner last touched it (its mtime), or since it was written."""
    try:
        last = max(path.stat().st_mtime, float(held.get("time", 0)))
    except FileNotFoundError:
        return 0.0
    return time.time() - last


def is_stale(path: Path, held: dict) -> bool:
    """Whether a lock read from ``path`` no longer has a live owner (see the module docstring)."""
    pid = held["pid"]
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return True
    if held["host"] != socket.gethostname():
        return _heartbeat_age(path, held) > LOCK_TTL_S
    if not _alive(pid):
        return True
    recorded, now = held.get("start"), start_time(pid)
    return recorded is not None and now is not None and recorded != now       # the pid was reused


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            os.utime(path)
        except OSError:
            return


def acquire(cfg, results_dir) -> bool:
    """Lock ``cfg`` atomically and exclusively; False when a live process holds its lock.

    A stale lock (see :func:`is_stale`) is taken over. While held, a thread touches the lock
    file every ``HEARTBEAT_S`` seconds, so sweeps on other hosts can tell it is alive.
    """
    path = lock_path(cfg, results_dir)
    pid = os.getpid()
    owner = {"pid": pid, "host": socket.gethostname(), "time": time.time(), "start": start_time(pid)}
    for _ in range(2):
        if atomic_create_bytes(path, json.dumps(owner).encode()):
            stop = threading.Event()
            _beats[str(path)] = stop
            threading.Thread(target=_heartbeat, args=(path, stop), daemon=True).start()
            return True
        try:
            stale = is_stale(path, json.loads(path.read_text()))
        except FileNotFoundError:
            continue                              # released meanwhile: try again
        except (ValueError, KeyError, TypeError, AttributeError):
            stale = True                          # not a lock file this code wrote
        if not stale:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return False


def release(cfg, results_dir) -> None:
    """Give up ``cfg``'s lock: stop its heartbeat and remove the file (harmless when not held)."""
    path = lock_path(cfg, results_dir)
    stop = _beats.pop(str(path), None)
    if stop is not None:
        stop.set()
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def holder(cfg, results_dir) -> dict | None:
    """The live owner of ``cfg``'s lock (pid, host, time), or None when it is free, stale or this process's."""
    path = lock_path(cfg, results_dir)
    try:
        held = json.loads(path.read_text())
        if is_stale(path, held):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if held["pid"] == os.getpid() and held["host"] == socket.gethostname():
        return None
    return held


def waiting_line(cfg, held: dict) -> str:
    """``waiting for <id> held by <host>/<pid> since <time>``: what a waiting sweep or run prints."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(held.get("time", 0))))
    return (f"waiting for {cfg.id} ({cfg.label()}) held by {held.get('host')}/{held.get('pid')} since {since} "
            f"(another sweep or run is computing it; its lock file is {cfg.id}.claim)")


def wait_while_locked(cfg, results_dir, *, log=print, poll_s: float = 5.0) -> bool:
    """Wait, saying so once, while another live process holds ``cfg``'s lock; True if there was one."""
    held = holder(cfg, results_dir)
    if held is None:
        return False
    (log or print)(waiting_line(cfg, held))
    while holder(cfg, results_dir) is not None:
        time.sleep(poll_s)
    return True
