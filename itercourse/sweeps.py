"""Grids of experiments: the presets, expanding a grid into configs, and a resumable ``sweep``.

A grid is a base config plus lists of values for some fields; every
combination is one :class:`itercourse.experiments.ExperimentConfig`:

    configs = product(grid[k1], grid[k2], ...) applied to base     (first key varies slowest)

The book's grids are the Python :data:`itercourse.presets.PRESETS`, the one source of
their values: ``python -m itercourse sweep --preset NAME`` runs one,
``--dump`` prints it as YAML to edit and run as a file, and the ``run``
command's defaults are one preset's base config (:func:`preset_base`).
``sweep(configs)`` runs a grid locally or through submitit (SLURM job
arrays), skipping every config whose result already verifies. A config that
fails leaves a failure record ``<id>.failed.json`` (label, id, error) and the
sweep goes on; a rerun does not retry it forever (``retry_failed=True`` clears
the records), and at the end :class:`SweepFailed` lists the failures. Local
workers exit when the sweep's process dies (:func:`watch_parent`). And
:func:`committed_or_sweep` gives a chapter the committed results of a grid,
or (in smoke mode) a tiny grid trained in a temporary folder.
"""
from __future__ import annotations

import atexit
import copy
import dataclasses
import itertools
import json
import math
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from .errors import check_choice, check_positive_int
from .locks import acquire, holder, release, waiting_line
from .config_id import _canonical, canonical_config, flat, result_path
from .experiments import ExperimentConfig, Result, is_done, load_result, load_results, run
from .io import atomic_write_json, read_json
from .models import ResNetConfig
from .training import TrainConfig
from .presets import PRESETS, grid_yaml  # noqa: F401 (re-exported: sweeps.PRESETS)
from .smoke import is_smoke

EXECUTORS = ("local", "submitit")
MAX_CONFIGS = 10_000          # the most configs one grid may expand to (checked before any is built)


# ---------------------------------------------------------------- grids

def expand_grid(base: dict, grid: dict) -> list[ExperimentConfig]:
    """Every combination of the ``grid`` values applied to the ``base`` config dict.

    Grid keys name a field: ``coupling`` / ``spectral_coeff`` / ``seed`` (the
    three of the book's grid), or any dotted path ``model.X`` / ``train.X`` /
    top-level ``X``. The first key varies slowest, so with ``seed`` first a
    sweep finishes every cell of seed 0 before it starts seed 1 (a stopped
    sweep then leaves whole replicates). ``train.identical_init: "coupled"``
    in ``base`` means True exactly when coupling > 0.
    """
    if not isinstance(grid, dict):
        raise TypeError(f"grid={grid!r} must be a mapping from field name to a list of values")
    keys = list(grid)
    for k in keys:
        if not isinstance(grid[k], (list, tuple)) or len(grid[k]) == 0:
            raise ValueError(f"grid[{k!r}]={grid[k]!r} must be a non-empty list of values")
    _check_grid_size(math.prod(len(grid[k]) for k in keys), {k: len(grid[k]) for k in keys})
    configs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        d = copy.deepcopy(base)
        d.setdefault("model", {})
        d.setdefault("train", {})
        for k, v in zip(keys, values):
            for path, value in (v.items() if isinstance(v, dict) else [(k, v)]):
                _set_path(d, _GRID_ALIASES.get(path, path), value)
        if d["train"].get("identical_init") == "coupled":
            d["train"]["identical_init"] = bool(d["train"].get("coupling") or 0)
        configs.append(ExperimentConfig.from_dict(d))
    return configs


_GRID_ALIASES = {"coupling": "train.coupling", "spectral_coeff": "model.spectral_coeff"}


def _check_grid_size(n: int, sizes) -> None:
    if n > MAX_CONFIGS:
        raise ValueError(f"the grid expands to {n} configs ({sizes}); allowed: at most {MAX_CONFIGS} configs "
                         "per grid: split it into several grid files (experiments)")


def grid_labels(configs) -> list:
    """``[c.label(configs) for c in configs]`` in O(n): the fields that vary are found once."""
    flats = [flat(canonical_config(asdict(c))) for c in configs]
    keys = set().union(*flats) if flats else set()
    varying = {k for k in keys if len({json.dumps(_canonical(f.get(k)), sort_keys=True) for f in flats}) > 1}
    return [c.label(varying=varying) for c in configs]


def _grid_keys() -> list:
    """Every key a grid may vary: the aliases, top-level fields, ``model.<field>`` and ``train.<field>``."""
    names = lambda kind: [f.name for f in dataclasses.fields(kind)]
    return (sorted(_GRID_ALIASES) + [n for n in names(ExperimentConfig) if n not in ("model", "train")]
            + [f"model.{n}" for n in names(ResNetConfig)] + [f"train.{n}" for n in names(TrainConfig)])


def _set_path(d: dict, dotted: str, value):
    if dotted not in _grid_keys():
        raise ValueError(f"grid key {dotted!r} is not a config field; allowed: {_grid_keys()}")
    parts = dotted.split(".")
    target = d[parts[0]] if len(parts) == 2 else d
    target[parts[-1]] = value


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice in one mapping (yaml keeps the last silently)."""


def _unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ValueError(f"grid file: key {key!r} appears twice (lines {seen[key] + 1} and "
                             f"{key_node.start_mark.line + 1}); allowed: each key once per mapping")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_grid_file(path) -> dict:
    """A grid YAML file as a dict: duplicate keys and YAML syntax errors (a TAB) raise ``ValueError``."""
    text = Path(path).read_text()
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ValueError(f"grid file {str(path)!r} is not valid YAML{at}: {getattr(err, 'problem', err)}; "
                         "allowed: YAML indented with spaces (no TABs)") from None


def expand_grids(base: dict, grids) -> list[ExperimentConfig]:
    """:func:`expand_grid` for one grid mapping, or the union of a list of them (ordered by seed, stably).

    A list lets a grid hold cells that are not a full product, e.g. every
    arm x coupling from identical initial blocks plus, per arm, one ordinary
    cell (independent initialisation, coupling 0). Sorting the union by seed
    keeps whole replicates together when a sweep stops half-way.
    """
    if isinstance(grids, dict):
        return expand_grid(base, grids)
    if not isinstance(grids, (list, tuple)) or not grids:
        raise ValueError(f"grid={grids!r} must be a mapping or a non-empty list of mappings")
    sizes = [math.prod(len(v) for v in g.values() if isinstance(v, (list, tuple))) if isinstance(g, dict) else 0
             for g in grids]
    _check_grid_size(sum(sizes), sizes)
    configs = [c for g in grids for c in expand_grid(base, g)]
    return sorted(configs, key=lambda c: c.seed)


def load_grid(spec) -> list[ExperimentConfig]:
    """Configs of a grid given as a dict ``{base..., grid: {...} or [{...}, ...]}``, a YAML path, or a preset name."""
    if isinstance(spec, str) and spec in PRESETS:
        spec = PRESETS[spec]()
    elif isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"grid file {str(path)!r} does not exist; presets: {sorted(PRESETS)}")
        spec = read_grid_file(path)
    if not isinstance(spec, dict) or "grid" not in spec:
        raise ValueError("a grid must be a mapping with the base config fields and a 'grid' mapping, e.g. "
                         "{experiment: ..., model: {...}, train: {...}, grid: {coupling: [0, 1], seed: [0, 1]}}")
    return expand_grids(_base_of(spec), spec["grid"])


def _base_of(spec: dict) -> dict:
    """A grid spec's base config fields: everything but its ``grid`` and its ``description``."""
    return {k: v for k, v in spec.items() if k not in ("grid", "description")}


def preset_base(name: str) -> ExperimentConfig:
    """The base config of preset ``name``: its data, model and recipe before any grid value is applied.

    For the arms presets this is the conventional arm's ordinary cell (batch norm, independent
    initialisation, coupling 0). ``python -m itercourse run`` takes its defaults from one preset's base.
    """
    check_choice("preset", name, sorted(PRESETS))
    return expand_grid(_base_of(PRESETS[name]()), {})[0]          # the empty grid: the base, "coupled" resolved


# ---------------------------------------------------------------- failure records and workers

class SweepFailed(RuntimeError):
    """Some configs of a sweep failed (each recorded in ``<id>.failed.json``); the others ran."""


def failure_path(cfg, results_dir="results") -> Path:
    """Where a failed config's record goes: ``<id>.failed.json`` beside the results."""
    return result_path(cfg, results_dir).with_suffix(".failed.json")


def watch_parent(parent: int) -> None:
    """Worker initialiser: exit as soon as the parent process is gone (e.g. killed with -9)."""
    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


# ---------------------------------------------------------------- sweeps

def _run_locked(cfg: ExperimentConfig, results_dir, checkpoint_dir, device, data_root, log=None) -> str:
    """Run one config under its lock: ``"done"``, ``"locked"`` (another process has it) or ``"failed"``.

    A failure is recorded in ``<id>.failed.json`` (label, id, error) instead of raised.
    """
    if not acquire(cfg, results_dir):
        return "locked"
    try:
        run(cfg, results_dir, checkpoint_dir, device=device, data_root=data_root, progress=False,
            log=log or (lambda *a: None))
        return "done"
    except Exception as err:                 # recorded, and the sweep goes on with the rest
        atomic_write_json(failure_path(cfg, results_dir), {
            "id": cfg.id, "label": cfg.label(), "error": f"{type(err).__name__}: {err}",
            "config": dataclasses.asdict(cfg)})
        return "failed"
    finally:
        release(cfg, results_dir)


def _run_job(cfg_dict: dict, results_dir: str, checkpoint_dir: str, device, data_root: str,
             threads: int | None) -> str:
    """One grid point in a worker process (local pool or submitit job); returns its status."""
    if threads is not None:
        torch.set_num_threads(threads)
    cfg = ExperimentConfig.from_dict(cfg_dict)
    return _run_locked(cfg, results_dir, checkpoint_dir, device, data_root)


def failures(configs, results_dir="results") -> list:
    """The recorded failures (``<id>.failed.json``) of ``configs``: dicts with ``id``, ``label``, ``error``.

    A record whose config has a verified result since (computed by another sweep or a rerun) is out of
    date and not counted.
    """
    out = []
    for c in configs:
        try:
            record = read_json(failure_path(c, results_dir))
        except (FileNotFoundError, ValueError, RuntimeError):
            continue
        if not is_done(c, results_dir):
            out.append(record)
    return out


def sweep(configs, executor: str = "local", *, results_dir="results", checkpoint_dir="checkpoints",
          device=None, data_root="data", workers: int = 1, threads: int | None = None,
          cluster: str | None = None, submitit_folder="submitit_logs", slurm: dict | None = None,
          progress: bool = True, log=print, retry_failed: bool = False, poll_s: float = 5.0) -> list[Result]:
    """Run every config of a grid that has no verified result yet; return all results in grid order.

    ``executor="local"``: in this process (``workers=1``) or in ``workers``
    spawned processes, each using ``threads`` torch threads (workers exit
    when this process dies).
    ``executor="submitit"``: one job per pending config, submitted as a
    SLURM job array through ``submitit.AutoExecutor(cluster=cluster)``
    (``cluster="local"`` runs them as local processes, ``"debug"`` in this
    one); ``slurm`` holds executor parameters such as
    ``{"timeout_min": 60, "slurm_partition": "gpu", "gpus_per_node": 1}``.
    A sweep that stopped half-way resumes: done configs are loaded, not rerun.
    Each config is locked (lock file ``<id>.claim``, atomic) while it runs, so two sweeps on one folder
    share the grid; a config another sweep holds is waited for. A config that fails is recorded
    in ``<id>.failed.json`` and the others go on; at the end :class:`SweepFailed` lists the
    failures. A rerun skips recorded failures unless ``retry_failed``.
    """
    configs = list(configs)
    for c in configs:
        if not isinstance(c, ExperimentConfig):
            raise TypeError(f"configs must be ExperimentConfig objects; got {c!r}")
    check_choice("executor", executor, EXECUTORS)
    check_positive_int("workers", workers)
    if len({c.id for c in configs}) != len(configs):
        raise ValueError("configs contains duplicates (two configs with the same id)")
    if retry_failed:
        for c in configs:
            try:
                failure_path(c, results_dir).unlink()
            except FileNotFoundError:
                pass
    failed_before = {f["id"] for f in failures(configs, results_dir)}
    pending = [c for c in configs if not is_done(c, results_dir) and c.id not in failed_before]
    bar = tqdm(total=len(configs), initial=len(configs) - len(pending), desc="grid", disable=not progress)
    args = lambda c: (asdict(c), str(results_dir), str(checkpoint_dir), device, str(data_root), threads)
    deferred, announced = [], set()                   # locked by another sweep: waited for below

    if executor == "submitit" and pending:
        import submitit                                # imported only when chosen
        ex = submitit.AutoExecutor(folder=str(submitit_folder), cluster=cluster)
        params = {"timeout_min": 60, **(slurm or {})}
        if ex.cluster == "slurm":
            params.setdefault("slurm_array_parallelism", 32)
        ex.update_parameters(**params)
        with ex.batch():                              # one SLURM job array for the whole batch
            jobs = [ex.submit(_run_job, *args(c)) for c in pending]
        for c, job in zip(pending, jobs):
            if job.result() == "locked":
                deferred.append(c)
            bar.update(1)
    elif workers == 1 or len(pending) <= 1:
        for c in pending:
            bar.set_postfix_str(c.label())
            if threads is not None:
                torch.set_num_threads(threads)
            if _run_locked(c, results_dir, checkpoint_dir, device, data_root, log) == "locked":
                deferred.append(c)
            bar.update(1)
    elif pending:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=watch_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_run_job, *args(c)): c for c in pending}
            for fut in as_completed(futures):
                if fut.result() == "locked":
                    deferred.append(futures[fut])
                bar.set_postfix_str(futures[fut].label())
                bar.update(1)
    while deferred:                                   # another sweep's configs: wait, or take over stale ones
        c = deferred.pop(0)
        if is_done(c, results_dir) or failure_path(c, results_dir).exists():
            continue
        if _run_locked(c, results_dir, checkpoint_dir, device, data_root, log) == "locked":
            held = holder(c, results_dir)
            if held is not None and c.id not in announced:       # never wait in silence
                announced.add(c.id)
                (log or print)(waiting_line(c, held))
            deferred.append(c)
            time.sleep(poll_s)
    bar.close()
    failed = failures(configs, results_dir)
    if failed:
        lines = "\n".join(f"  {f['label']} (id {f['id']}): {f['error']}" for f in failed)
        raise SweepFailed(f"{len(failed)} of {len(configs)} configs failed (records: <id>.failed.json in "
                          f"{str(Path(results_dir) / configs[0].experiment)!r}; rerun with retry_failed=True / "
                          f"--retry-failed to try them again):\n{lines}")
    results = [load_result(c, results_dir) for c in configs]
    missing = [f"{c.label()} (id {c.id})" for c, r in zip(configs, results) if r is None]
    if missing:
        raise RuntimeError(f"{len(missing)} configs finished without a verified result: {missing}")
    return results


# ---------------------------------------------------------------- the book's results, or a smoke grid

@dataclass
class GridResults:
    """The results a chapter shows and where they came from."""

    results: list          # one Result per config, in grid order
    folder: Path           # the results folder they were loaded from or written to
    committed: bool        # True: the repository's committed results; False: trained now (temporary folder)


INSTALLED_RESULTS = "_results"   # the committed results/ as installed with the package (setup.py copies them)


def find_results_dir(*, required: bool = False) -> Path | None:
    """The committed results the book reads, found from any working directory.

    In this order: ``results/`` in the working directory or its parent (a
    clone, seen from its root or from ``book/``); the copy installed with the
    package (``itercourse/_results``, from ``pip install git+...``); the
    ``results/`` of the repository the package is imported from (an editable
    install, ``pip install -e .``). So a chapter opened alone, as Colab opens
    it, reads the same committed results as the book. Returns ``None`` when
    there are none, or with ``required=True`` raises ``FileNotFoundError``
    naming the places it looked.
    """
    package = Path(__file__).resolve().parent
    repo = package.parent
    places = [Path("results"), Path("..") / "results", package / INSTALLED_RESULTS]
    if (repo / "pyproject.toml").is_file():                  # imported from a clone (editable install)
        places.append(repo / "results")
    found = next((p for p in places if p.is_dir()), None)
    if found is None and required:
        raise FileNotFoundError("no committed results found; looked in " + ", ".join(str(p) for p in places)
                                + ". Install the package with its results (pip install "
                                "'itercourse @ git+https://github.com/itercourse/itercourse') or run from a clone.")
    return found


def _temporary_folder(name: str) -> Path:
    """A new temporary folder ``<tmp>/<name>_*``, removed when the Python process (the kernel) exits."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


def committed_or_sweep(configs, smoke_configs=None, *, results_dir=None, require: bool = False,
                       name: str = "itercourse", preset: str | None = None) -> GridResults:
    """The committed results of ``configs``; in smoke mode a sweep of ``smoke_configs`` in a temporary folder.

    Outside smoke mode, when some result of ``configs`` is missing from the
    committed folder: ``require=True`` raises ``FileNotFoundError`` naming the
    sweep command (``preset``) that computes them; otherwise the smoke grid
    (default: ``configs``) is trained in a temporary folder, never the
    committed one. The temporary folder is removed when the process exits.
    """
    configs = list(configs)
    folder = Path(results_dir) if results_dir is not None else find_results_dir()
    if not is_smoke() and folder is not None and all(is_done(c, folder) for c in configs):
        by_id = {r.id: r for e in {c.experiment for c in configs} for r in load_results(e, folder)}
        return GridResults([by_id[c.id] for c in configs], folder, True)
    if not is_smoke() and require:
        missing = [c.label() for c in configs if folder is None or not is_done(c, folder)]
        raise FileNotFoundError(f"{len(missing)} of {len(configs)} results are missing from {folder}: {missing}. "
                                f"Run: python -m itercourse sweep --preset {preset or '<name>'}")
    tmp = _temporary_folder(name)
    results = sweep(configs if smoke_configs is None else smoke_configs, results_dir=tmp,
                    checkpoint_dir=tmp / "checkpoints", data_root=tmp / "data", progress=False,
                    log=lambda *a: None)
    return GridResults(results, tmp, False)
