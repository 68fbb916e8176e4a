"""Claims and failure records: how sweeps share a results folder without duplicating or looping.

While a config is computed, its claim file ``<id>.claim`` (created atomically and
exclusively, like ``O_CREAT | O_EXCL``, holding the owner's pid, host and time)
sits beside the results; a second sweep on the same folder skips it and waits.
A claim whose owner on this host is dead, or written on another host more than
``CLAIM_TTL_S`` ago, is stale and taken over (two takeovers of one stale claim at
the same instant are not excluded; both then compute the config, and the atomic
result write keeps one). A config that fails leaves ``<id>.failed.json`` (label,
id, error), so a rerun does not retry it forever; ``sweep(..., retry_failed=True)``
clears the records.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from .experiments import ExperimentConfig, result_path
from .io import atomic_create_bytes, read_json

CLAIM_TTL_S = 48 * 3600     # a claim by a process on another host is stale after this long


class SweepFailed(RuntimeError):
    """Some configs of a sweep failed (each recorded in ``<id>.failed.json``); the others ran."""


def failure_path(cfg: ExperimentConfig, results_dir="results") -> Path:
    """Where a failed config's record goes: ``<id>.failed.json`` beside the results."""
    return result_path(cfg, results_dir).with_suffix(".failed.json")


def claim_path(cfg: ExperimentConfig, results_dir="results") -> Path:
    """The claim (lock) file of a config being computed: ``<id>.claim`` beside the results."""
    return result_path(cfg, results_dir).with_suffix(".claim")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(cfg: ExperimentConfig, results_dir) -> bool:
    """Claim ``cfg`` atomically and exclusively; False when a live process holds it.

    A claim is stale (taken over) when its owner, on this host, is no longer
    running, or when it was written on another host more than ``CLAIM_TTL_S`` ago.
    """
    path = claim_path(cfg, results_dir)
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
    for _ in range(2):
        if atomic_create_bytes(path, json.dumps(owner).encode()):
            return True
        try:
            held = json.loads(path.read_text())
            stale = (not _alive(held["pid"]) if held["host"] == owner["host"]
                     else time.time() - held["time"] > CLAIM_TTL_S)
        except FileNotFoundError:
            continue                              # released meanwhile: try again
        except (ValueError, KeyError, TypeError):
            stale = True                          # not a claim this code wrote
        if not stale:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return False


def release(cfg: ExperimentConfig, results_dir) -> None:
    try:
        claim_path(cfg, results_dir).unlink()
    except FileNotFoundError:
        pass


def watch_parent(parent: int) -> None:
    """Worker initialiser: exit as soon as the parent process is gone (e.g. killed with -9)."""
    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def failures(configs, results_dir="results") -> list:
    """The recorded failures (``<id>.failed.json``) of ``configs``: dicts with ``id``, ``label``, ``error``."""
    out = []
    for c in configs:
        try:
            out.append(read_json(failure_path(c, results_dir)))
        except (FileNotFoundError, ValueError, RuntimeError):
            pass
    return out
