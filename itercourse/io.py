"""Atomic, verified file writes: nothing the course writes is ever half-written.

Every file goes to a temporary name in the same folder, is flushed to disk,
and then replaces the target with ``os.replace`` (atomic on POSIX and
Windows). A crash at any moment leaves either the old file or the new one.
JSON and torch files carry a SHA-256 of their payload, checked on read, so a
truncated or corrupted file is detected instead of silently used.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch


class CorruptFileError(RuntimeError):
    """A file exists but is truncated, corrupted or not in the expected format."""


class UnsafeFileError(CorruptFileError):
    """A torch file holds objects other than tensors and plain containers: unpickling it could run code."""


def ensure_writable_folder(path: str | os.PathLike) -> Path:
    """Create the folder that will hold ``path`` (if needed) and check it can be written; returns ``path``.

    Call it before a long computation whose result goes to ``path``, so a bad
    path fails at once instead of after hours of work. Raises
    ``NotADirectoryError`` when a file sits where a folder is needed and
    ``PermissionError`` (or the ``OSError`` of the file system) when the folder
    cannot be created or written. Note: for root, ``os.access`` grants every
    permission, so only the first case can stop a root process.
    """
    path = Path(path)
    folder = path.parent
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise NotADirectoryError(f"path={str(path)!r} cannot be written: {str(blocker)!r} is a file, not a "
                                 "folder; choose a path inside a folder (or move that file away)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(f"path={str(path)!r}: cannot create the folder {str(folder)!r} ({err.strerror or err}); "
                        "choose a folder you can write to") from err
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"path={str(path)!r}: the folder {str(folder)!r} is not writable; "
                              "choose a folder you can write to")
    return path


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename), mode ``0o666 & ~umask``."""
    path = ensure_writable_folder(path)
    if path.is_dir():
        raise IsADirectoryError(f"path={str(path)!r} is a folder; allowed: a file name, e.g. "
                                f"{str(path / ('out' + (path.suffix or '.dat')))!r}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())       # mkstemp gives 0600: follow the umask like open() does
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and not isinstance(err, (NotADirectoryError, IsADirectoryError)):
            # a full disk or a quota says ENOSPC without a name: say which file, and that nothing changed
            raise type(err)(err.errno, f"{err.strerror or err} while writing {str(path)!r} "
                                       f"({len(data)} bytes); nothing was written and the previous file, if "
                                       "any, is intact: free some space or choose another folder") from err
        raise
    return path


def atomic_write_png(path: str | os.PathLike, fig, dpi: int = 120) -> Path:
    """Save a matplotlib figure as a PNG atomically (``bbox_inches="tight"``): the CLI's report and preview."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def atomic_create_bytes(path: str | os.PathLike, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist (a lock); False when it already does.

    The data goes to a temporary file first, then ``os.link`` gives it its name: atomic, exclusive
    (like ``O_CREAT | O_EXCL``) and never seen half-written.
    """
    path = ensure_writable_folder(path)
    tmp = atomic_write_bytes(path.with_name(f".{path.name}.{os.getpid()}.new"), data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON atomically, wrapped with a checksum of its canonical text."""
    payload = json.dumps(obj, sort_keys=True, indent=1, default=str)
    wrapped = {"sha256": _digest(payload.encode()), "data": json.loads(payload)}
    return atomic_write_bytes(path, json.dumps(wrapped, sort_keys=True, indent=1).encode())


def read_json(path: str | os.PathLike) -> Any:
    """Read a file written by :func:`atomic_write_json`, verifying its checksum."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path={str(path)!r} does not exist; check the path (a missing result is "
                                "computed by itercourse.experiments.run)")
    try:
        wrapped = json.loads(path.read_text())
        data = wrapped["data"]
        expected = wrapped["sha256"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise CorruptFileError(f"path={str(path)!r} is not a readable itercourse JSON file ({err})") from err
    actual = _digest(json.dumps(data, sort_keys=True, indent=1, default=str).encode())
    if actual != expected:
        raise CorruptFileError(f"path={str(path)!r} failed its checksum: the file was modified or truncated")
    return data


def atomic_write_with_trailer(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` atomically, followed by its SHA-256 as 64 hex digits: the trailer
    :func:`read_with_trailer` checks (torch checkpoints and weights, Digitclutter caches)."""
    return atomic_write_bytes(path, data + _digest(data).encode())


def read_with_trailer(path: str | os.PathLike, remedy: str = "") -> bytes:
    """The payload of a file written by :func:`atomic_write_with_trailer`; ``CorruptFileError`` (with
    ``remedy`` appended to its message) when the trailer does not match: truncated or modified."""
    blob = Path(path).read_bytes()
    data, trailer = blob[:-64], blob[-64:]
    if len(blob) < 64 or _digest(data).encode() != trailer:
        raise CorruptFileError(f"path={str(path)!r} failed its checksum: the file is truncated or corrupted{remedy}")
    return data


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` atomically, followed by a 64-hex-digit SHA-256 trailer checked on load."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_with_trailer(path, buf.getvalue())


def torch_load_verified(path: str | os.PathLike, map_location=None) -> Any:
    """Load a file written by :func:`atomic_torch_save`, raising ``CorruptFileError`` if damaged.

    The file is unpickled with ``weights_only=True``: only tensors and plain containers (dicts,
    lists, tuples, numbers, strings) load. The checksum has no key (anyone can recompute it), so it
    proves the file is whole, not who wrote it; a crafted file that would run code when unpickled is
    refused with :class:`UnsafeFileError` and nothing in it runs.
    """
    path = Path(path)
    data = read_with_trailer(path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()
        raise UnsafeFileError(
            f"path={str(path)!r} was refused: it holds objects other than tensors and plain containers, "
            "and unpickling them could run code (torch.load(weights_only=True) says: "
            f"{next((l for l in first if 'Unsupported' in l or 'global' in l), first[0] if first else err)}). "
            "Allowed: checkpoints written by itercourse. Nothing in it was run; delete it if you did not "
            "write it") from None
