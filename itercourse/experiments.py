"""Experiments: one config -> one cached result file, and one uncached training run on the coupling dial.

An experiment is everything that decides a number in the book: the dataset
and its sizes, the model (``ResNetConfig``), the training recipe
(``TrainConfig``: coupling strength lives in ``TrainConfig.coupling``), the
seed and the index settings. Its id is a hash of that content:

    id(cfg) = sha256(canonical_json(asdict(cfg)))[:12]

canonical JSON = sorted keys, no whitespace, every number written as a float,
so the id is the same in every process, on every machine and for every
``PYTHONHASHSEED``. ``run(cfg)`` writes ``results/<experiment>/<id>.json``
(atomically, with a checksum) and returns that file's ``Result`` the next
time it is asked; a corrupt or truncated file is reported and recomputed,
never used. Training checkpoints every epoch, so a killed run resumes.
Grids of configs, their presets and ``sweep`` live in :mod:`itercourse.sweeps`.

One canonical form per config (equivalent spellings hash alike, old results keep their ids):
see :mod:`itercourse.config_id`, which also says how to add a config field.

Pattern: results cached by a hash of their config (uvadlc notebooks);
results carry their config and code version (cifar10-airbench).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.nn.utils import parametrize

from .coupling import block_difference, block_similarity, block_spread, effective_parameters
from .data import DATASET_SPECS, DATASETS, load_dataset
from .errors import check_bool, check_choice, check_int, check_positive_int
from .locks import wait_while_locked
from .config_id import (canonical_config, check_parameters, checkpoint_path, config_hash, flat, hash_of,
                        legacy_hash, result_path, spellings, weights_path)
from .indices import iterative_convergence_indices, recurrence_index
from .io import (CorruptFileError, atomic_torch_save, atomic_write_json, ensure_writable_folder, read_json,
                 torch_load_verified)
from .lipschitz import branch_lipschitz_report
from .models import ResNetConfig, build_resnet, count_parameters
from .provenance import code_provenance
from .training import History, TrainConfig, check_not_diverged, eval_batch_size, evaluate, resolve_device, train
from .version import __version__

# Image channels and classes of each dataset: checked against the model before any data is made.


def _shape(dataset: str) -> tuple:
    """``(channels, classes)`` of ``dataset``, from the registry (:data:`itercourse.data.DATASET_SPECS`)."""
    spec = DATASET_SPECS[dataset]
    return spec.channels, spec.classes

MULTILABEL = ("digitclutter",)       # datasets whose labels are multi-hot sets (one sigmoid per class)

# The most training/test images a config may ask for (digitclutter is generated in memory: n * 32 * 32 bytes).
MAX_IMAGES = 2_000_000


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that decides one experiment's numbers; its hash names the result file."""

    experiment: str = "scratch"                          # folder under results/ (one per grid)
    dataset: str = "digitclutter"                        # one of DATASETS
    train_size: int | None = 10_000                      # training images (None = the whole split)
    test_size: int | None = 2_000                        # test images (None = the whole split)
    data_seed: int = 0                                   # which images (same for every seed of a grid)
    model: ResNetConfig | None = None                    # architecture (None: ResNetConfig() fitted to the dataset)
    train: TrainConfig = field(default_factory=TrainConfig)    # recipe (coupling = gradient coupling)
    seed: int = 0                                        # initial weights and data order (train.seed := seed)
    index_size: int = 1_000                              # test images used for the three indices
    index_options: tuple = ()                            # extra ((name, value), ...) for the index function
    index_performance: bool = True                       # also the "performance" recurrence index (swap blocks)
    dataset_options: tuple = ()                          # extra ((name, value), ...) for load_dataset, e.g. num_digits
    val_size: int = 0                                    # training-split images held out for validation (never trained on)

    def __post_init__(self):
        if not isinstance(self.experiment, str) or not self.experiment or "/" in self.experiment \
                or self.experiment.startswith("."):
            raise ValueError(f"experiment={self.experiment!r} must be a non-empty folder name without '/', "
                             "e.g. 'digitclutter_grid'")
        check_choice("dataset", self.dataset, DATASETS)
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        for name in ("seed", "data_seed", "index_size", "train_size", "test_size", "val_size"):
            value = getattr(self, name)          # numpy integers (np.int64(1)) become plain ints
            if value is not None and not isinstance(value, (bool, int)) and hasattr(value, "__index__"):
                object.__setattr__(self, name, int(value))
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None and getattr(self, name) > MAX_IMAGES:
                raise ValueError(f"{name}={getattr(self, name)} is too large; allowed: 1..{MAX_IMAGES} "
                                 "(None = the whole split)")
        check_int("data_seed", self.data_seed, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_int("val_size", self.val_size, minimum=0)
        check_positive_int("index_size", self.index_size)
        check_bool("index_performance", self.index_performance)
        test_n = self.test_size if self.test_size is not None or self.dataset != "digitclutter" else 10_000
        if test_n is not None and self.index_size > test_n:
            raise ValueError(f"index_size={self.index_size} is larger than test_size={test_n}; the indices "
                             f"use test images: choose index_size <= {test_n}")
        if self.model is None:                 # the default architecture, with the dataset's channels and classes
            channels, classes = _shape(self.dataset)
            object.__setattr__(self, "model", ResNetConfig(in_channels=channels, num_classes=classes))
        if not isinstance(self.model, ResNetConfig):
            raise TypeError(f"model={self.model!r} must be a ResNetConfig")
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train={self.train!r} must be a TrainConfig")
        if self.train.seed != self.seed:       # one seed, one source of truth: ``seed``
            if self.train.seed != TrainConfig.seed:
                raise ValueError(f"train.seed={self.train.seed} and seed={self.seed} disagree; an experiment has one "
                                 f"seed: set seed={self.train.seed} and leave train.seed at its default")
            object.__setattr__(self, "train", replace(self.train, seed=self.seed))
        for name in ("index_options", "dataset_options"):
            object.__setattr__(self, name, _options(name, getattr(self, name)))
        check_parameters("index_options", dict(self.index_options), iterative_convergence_indices,
                          exclude=("model", "loader"))
        channels, classes = _shape(self.dataset)
        if (self.model.in_channels, self.model.num_classes) != (channels, classes):
            raise ValueError(f"model.in_channels={self.model.in_channels}, model.num_classes="
                             f"{self.model.num_classes} do not fit dataset={self.dataset!r}; allowed: "
                             f"in_channels={channels}, num_classes={classes}")
        if self.dataset in MULTILABEL and self.train.label_smoothing:
            raise ValueError(f"train.label_smoothing={self.train.label_smoothing!r} does nothing on "
                             f"dataset={self.dataset!r} (multi-label: one sigmoid per class) but would change the "
                             "id; allowed: label_smoothing=0.0 for this dataset")
        size = dict(self.dataset_options).get("size", 32)
        if self.model.spectral_coeff is not None and size != self.model.input_size:
            raise ValueError(f"model.input_size={self.model.input_size} but dataset={self.dataset!r} gives "
                             f"{size}x{size} images: the Lipschitz cap spectral_coeff={self.model.spectral_coeff} "
                             f"is computed for input_size and would not hold; allowed: input_size={size}")

    # ---------------------------------------------------------------- identity
    @property
    def id(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON of ``asdict(self)``."""
        return config_hash(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        """Inverse of ``asdict``: rebuild the nested configs (lists become tuples again)."""
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"config has unknown fields {sorted(unknown)}; a misspelling, or a file written "
                             "by another version of itercourse (fields allowed: "
                             f"{[f.name for f in dataclasses.fields(cls)]})")
        model = d.get("model", {})
        if isinstance(model, dict) and d.get("dataset", "digitclutter") in DATASET_SPECS:
            channels, classes = _shape(d.get("dataset", "digitclutter"))   # default: fit the dataset
            model = {"in_channels": channels, "num_classes": classes, **model}
        d["model"] = _sub_config(ResNetConfig, model, "model")
        d["train"] = _sub_config(TrainConfig, d.get("train", {}), "train")
        return cls(**d)

    def label(self, others=(), *, varying=None) -> str:
        """Short human-readable description, e.g. ``coupling=0.5 c=0.9 seed=1``.

        With ``others`` (the other configs of a grid), every further field whose value varies
        across them is appended (``train.lr=0.01``), so configs that differ never share a label.
        ``varying``: those fields already found (``sweeps.grid_labels``, O(n) for a whole grid).
        """
        c = self.model.spectral_coeff
        lam = self.train.coupling
        arm = [name for name, on in (("BN", self.model.branch_norm == "bn"),
                                     ("zero-init", self.model.branch_init == "zero"),
                                     ("identical-init", self.train.identical_init is True)) if on]
        text = " ".join([f"coupling={lam:g} c={'none' if c is None else f'{c:g}'} seed={self.seed}"] + arm)
        shown = {"train.coupling", "model.spectral_coeff", "seed", "train.seed", "model.branch_norm",
                 "model.branch_init", "train.identical_init"}
        mine = flat(canonical_config(asdict(self)))
        if varying is not None:
            varying = sorted(k for k in mine if k not in shown and k in varying)
        else:
            flats = [flat(canonical_config(asdict(o))) for o in others]
            varying = sorted(k for k in mine if k not in shown and any(f.get(k) != mine[k] for f in flats))
        return " ".join([text] + [f"{k}={mine[k]}" for k in varying])


def _options(name: str, value) -> tuple:
    """A dict or ((name, value), ...) as a sorted tuple of pairs (hashable, order-free)."""
    items = value.items() if isinstance(value, dict) else value
    try:
        return tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in items))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}={value!r} must be a dict or ((name, value), ...)") from err


def _sub_config(kind, d, name):
    if isinstance(d, kind):
        return d
    if not isinstance(d, dict):
        raise TypeError(f"{name}={d!r} must be a dict of {kind.__name__} fields")
    allowed = {f.name for f in dataclasses.fields(kind)}
    unknown = set(d) - allowed
    if unknown:
        raise ValueError(f"{name} has unknown fields {sorted(unknown)}; allowed: {sorted(allowed)}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return kind(**d)


# ---------------------------------------------------------------- results

@dataclass
class Result:
    """One finished experiment: its config, training history, indices and final accuracy."""

    config: ExperimentConfig          # what was run
    history: History                  # per-epoch losses, accuracies, learning rates, seconds
    indices: dict                     # recurrence / convergence / divergence (+ whatever indices.py reports)
    final_test_acc: float             # accuracy on the test split after the last epoch
    final_test_loss: float = float("nan")
    extras: dict = field(default_factory=dict)   # parameters, effective parameters, etc.
    meta: dict = field(default_factory=dict)     # versions, device, wall time, date

    id: str = ""                                  # the config's hash when it ran (the file's name)

    def __post_init__(self):
        self.id = self.id or self.config.id

    def to_json(self) -> dict:
        return {"id": self.id, "config": asdict(self.config), "history": self.history.as_dict(),
                "indices": self.indices, "final_test_acc": self.final_test_acc,
                "final_test_loss": self.final_test_loss, "extras": self.extras, "meta": self.meta}

    @classmethod
    def from_json(cls, obj) -> "Result":
        """From a path (verified with ``io.read_json``) or an already-loaded dict."""
        d = read_json(obj) if isinstance(obj, (str, os.PathLike)) else obj
        try:
            d = _without_neutral_unknowns(d)
            cfg = ExperimentConfig.from_dict(d["config"])
            res = cls(config=cfg, history=History(**d["history"]), indices=dict(d["indices"]),
                      final_test_acc=float(d["final_test_acc"]),
                      final_test_loss=float(d.get("final_test_loss", float("nan"))),
                      extras=dict(d.get("extras", {})), meta=dict(d.get("meta", {})),
                      id=config_hash(d["config"]))
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptFileError(f"result {obj if not isinstance(obj, dict) else '<dict>'} is not a "
                                   f"valid Result ({err})") from err
        # The id is the hash of the config *as stored* (canonical form; a result written before
        # the canonical form may carry the legacy hash of its spelling, and keeps it).
        if d.get("id") == legacy_hash(d["config"]) and d.get("id") != res.id:
            res.id = d["id"]
        elif d.get("id") != res.id:
            raise CorruptFileError(f"result says id={d.get('id')!r} but its stored config hashes to {res.id!r}")
        return res


def _without_neutral_unknowns(d: dict) -> dict:
    """A result dict whose config lost the fields this version does not know, when that keeps its id.

    A newer itercourse may add a config field at a neutral value (left out of the hash, see
    :mod:`itercourse.config_id`): its results are the same experiments and load here. Unknown
    fields that change the id are kept, so :meth:`ExperimentConfig.from_dict` names them.
    """
    cfg = d.get("config") if isinstance(d, dict) else None
    if not isinstance(cfg, dict):
        return d
    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    sections = {"model": ResNetConfig, "train": TrainConfig}
    stripped = {k: v for k, v in cfg.items() if k in known}
    for name, kind in sections.items():
        if isinstance(stripped.get(name), dict):
            allowed = {f.name for f in dataclasses.fields(kind)}
            stripped[name] = {k: v for k, v in stripped[name].items() if k in allowed}
    if stripped == cfg:
        return d
    try:
        same = d.get("id") == config_hash(stripped)
    except (TypeError, ValueError):
        same = False
    return {**d, "config": stripped} if same else d


def load_weights(cfg: ExperimentConfig, results_dir="results", *, device=None):
    """The trained model of ``cfg``, rebuilt from its config and its saved weights (checksum verified,
    loaded with ``weights_only=True``); ``FileNotFoundError`` if the run kept no weights."""
    path = weights_path(cfg, results_dir)
    if not path.exists():
        raise FileNotFoundError(f"no weights for {cfg.experiment}/{cfg.id} at {str(path)!r}: the run predates "
                                "saved weights (itercourse 0.3) or the file was removed; rerun it to get them")
    device = resolve_device(device)
    model = build_resnet(cfg.model, seed=cfg.seed).to(device)
    state = torch_load_verified(path, map_location=device)
    model.load_state_dict(state)
    return model


def load_result(cfg: ExperimentConfig, results_dir="results", *, warn: bool = True) -> Result | None:
    """The cached ``Result`` of ``cfg``, or ``None`` when absent or unusable (then a warning says why).

    Looks under the canonical id, then under the legacy id of ``cfg``'s spelling (compatibility path).
    """
    path = result_path(cfg, results_dir)
    if not path.exists():
        old = [path.with_name(f"{hash_of(d)}.json") for d in spellings(asdict(cfg))]
        path = next((p for p in old if p.exists()), None)
        if path is None:
            return None
    try:
        res = Result.from_json(path)
        if config_hash(asdict(res.config)) != cfg.id:
            raise CorruptFileError(f"path={str(path)!r} holds the result of config {res.id}, not {cfg.id}")
        return res
    except FileNotFoundError:                           # removed between the check and the read
        return None
    except CorruptFileError as err:
        if warn:
            warnings.warn(f"{err}; it will be recomputed", RuntimeWarning, stacklevel=2)
        return None


def is_done(cfg: ExperimentConfig, results_dir="results") -> bool:
    """True when the result file of ``cfg`` exists and verifies."""
    return load_result(cfg, results_dir, warn=False) is not None


def load_results(experiment: str, results_dir="results", *, skipped: list | None = None) -> list[Result]:
    """Every verified result under ``results_dir/<experiment>/`` (corrupt files are warned about, skipped).

    A folder that does not exist (or is a file) raises ``FileNotFoundError`` / ``NotADirectoryError``.
    With ``skipped`` (a list), the skipped files are appended to it as ``(path, reason)``. Two files
    of one config (canonical and legacy spelling) count once.
    """
    folder = Path(results_dir) / experiment
    if not folder.exists():
        raise FileNotFoundError(f"experiment={experiment!r}: no results folder {str(folder)!r}; run "
                                "'python -m itercourse sweep --preset ...' first, or check the results folder "
                                "and the experiment name (allowed here: "
                                f"{sorted(p.name for p in Path(results_dir).glob('*') if p.is_dir())})")
    if not folder.is_dir():
        raise NotADirectoryError(f"experiment={experiment!r}: {str(folder)!r} is a file, not a results folder")
    out, seen = [], set()
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith(".failed.json"):          # a failure record (sweeps.py), not a result
            continue
        try:
            res = Result.from_json(path)
            if res.config.experiment != experiment:
                raise CorruptFileError(f"it belongs to experiment {res.config.experiment!r}, not to the folder "
                                       f"{experiment!r} (copied from another folder?); not counted")
            if path.stem != res.id:
                raise CorruptFileError(f"its config has id {res.id!r} but the file is named {path.name!r} "
                                       f"(renamed or copied?); allowed: {res.id}.json")
        except CorruptFileError as err:
            warnings.warn(f"skipping {path}: {err}", RuntimeWarning, stacklevel=2)
            if skipped is not None:
                skipped.append((str(path), str(err)))
            continue
        key = config_hash(asdict(res.config))
        if key not in seen:
            seen.add(key)
            out.append(res)
    return out


# ---------------------------------------------------------------- one run

def _versions() -> dict:
    return {"itercourse": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _index_loader(data, size: int, batch_size: int | None = None):
    """The first ``size`` test images, in order, as a loader for the index functions
    (batches of 250 on the CPU, as the committed results; 1000 on a GPU)."""
    part = dataclasses.replace(data, test_images=data.test_images[:size], test_labels=data.test_labels[:size])
    if batch_size is None:
        batch_size = 1000 if part.test_images.device.type == "cuda" else 250
    return part.loader("test", batch_size=batch_size)


def run(cfg: ExperimentConfig, results_dir="results", checkpoint_dir="checkpoints", *, device=None,
        data_root="data", progress: bool = True, keep_checkpoint: bool = False, log=print) -> Result:
    """The ``Result`` of ``cfg``: loaded from ``results_dir`` if a verified file exists, else computed.

    Computing: load the data, build the model (seed = ``cfg.seed``), train it
    (checkpoint every epoch under ``checkpoint_dir``; an interrupted run
    resumes there), evaluate, compute the three indices, and write the
    result atomically. The checkpoint is removed once the result is written
    unless ``keep_checkpoint``.
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError(f"cfg={cfg!r} must be an ExperimentConfig")
    cached = load_result(cfg, results_dir)
    if cached is not None:
        return cached
    if wait_while_locked(cfg, results_dir, log=log):   # a sweep was computing it: its result, if it wrote one
        cached = load_result(cfg, results_dir)
        if cached is not None:
            return cached
    path = result_path(cfg, results_dir)
    ensure_writable_folder(path)                        # fail now, not after hours of training
    ensure_writable_folder(checkpoint_path(cfg, checkpoint_dir))
    try:                                                # unusable: keep it for inspection, out of the way
        if load_result(cfg, results_dir, warn=False) is None:
            os.replace(path, path.with_suffix(".json.corrupt"))
    except FileNotFoundError:
        pass

    t0 = time.perf_counter()
    device = resolve_device(device)
    data = load_dataset(cfg.dataset, data_root, train_size=cfg.train_size, test_size=cfg.test_size,
                        seed=cfg.data_seed, device=device, cache=True, val_size=cfg.val_size,
                        **dict(cfg.dataset_options))
    if (data.in_channels, data.num_classes) != (cfg.model.in_channels, cfg.model.num_classes):
        raise ValueError(f"dataset={cfg.dataset!r} has {data.in_channels} channel(s) and {data.num_classes} "
                         f"classes but the model has in_channels={cfg.model.in_channels}, "
                         f"num_classes={cfg.model.num_classes}; make them match")
    model = build_resnet(cfg.model, seed=cfg.seed)
    ckpt = checkpoint_path(cfg, checkpoint_dir)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    history = train(model, data, cfg.train, device=device, checkpoint=ckpt, progress=progress, log=log,
                    architecture=asdict(cfg.model))

    t_analysis = time.perf_counter()
    test, indices, extras = analyse(model, data, cfg, device)
    meta = {"versions": _versions(), "device": str(device), "seed": cfg.seed,
            "wall_time_s": time.perf_counter() - t0, "threads": torch.get_num_threads(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "train_seconds": float(sum(history.seconds)),
            "analysis_seconds": time.perf_counter() - t_analysis, "code": code_provenance()}
    result = Result(cfg, history, indices, float(test["acc"]), float(test["loss"]), extras, meta)
    atomic_torch_save(weights_path(cfg, results_dir), {k: v.detach().cpu() for k, v in model.state_dict().items()})
    atomic_write_json(path, result.to_json())          # the result last: a result file implies its weights
    if not keep_checkpoint:
        try:
            ckpt.unlink()
        except FileNotFoundError:
            pass
    return result


def analyse(model, data, cfg: ExperimentConfig, device) -> tuple[dict, dict, dict]:
    """Everything measured on a trained model: test accuracy and loss, the indices, parameter counts and
    Lipschitz report; ``(test, indices, extras)``. :func:`run` and :func:`reanalyse` both call it."""
    analysis = contextlib.ExitStack()          # constrained weights computed once for the whole analysis
    analysis.enter_context(parametrize.cached())
    test = evaluate(model, data.loader("test", batch_size=eval_batch_size(device)), device)
    check_not_diverged("test", test["loss"], test["classes"], nonfinite=test["nonfinite"], lr=cfg.train.lr)
    indices = iterative_convergence_indices(model, _index_loader(data, cfg.index_size),
                                           **dict(cfg.index_options))
    if cfg.index_performance:                  # block swaps scored by the loss, not by the state
        try:
            perf = recurrence_index(model, _index_loader(data, cfg.index_size), kind="performance")
            indices.update(recurrence_performance=perf["index"], recurrence_performance_sem=perf["sem"],
                           performance_per_stage=perf["per_stage"])
        except ValueError as err:               # every pair degenerate: report it, keep the run
            indices.update(recurrence_performance=None, recurrence_performance_error=str(err))
    indices = {k: _jsonable(v) for k, v in indices.items()}
    extras = {**_parameter_counts(model), **_lipschitz(model, data)}
    if data.val_images is not None:            # held-out training images: what a learning rate is chosen on
        val = evaluate(model, data.loader("val", batch_size=eval_batch_size(device)), device)
        extras.update(val_acc=float(val["acc"]), val_loss=float(val["loss"]), val_size=len(data.val_images))
    analysis.close()
    return test, indices, extras


def reanalyse(experiment: str, results_dir="results", *, device=None, data_root="data", log=print) -> list[Result]:
    """Recompute the analysis of every result in ``results_dir/<experiment>/`` from its saved weights.

    No training: each model is rebuilt from its config and weights, its test accuracy is checked against
    the stored one (a mismatch raises: the weights do not belong to the result), and the indices and
    extras are replaced; history and training metadata are kept, ``meta.reanalysed`` records when and
    with which code. Results without weights are listed and left alone. Returns the updated results.
    """
    out, missing = [], []
    for res in load_results(experiment, results_dir):
        cfg = res.config
        if not weights_path(cfg, results_dir).exists():
            missing.append(res.id)
            continue
        device_ = resolve_device(device)
        data = load_dataset(cfg.dataset, data_root, train_size=cfg.train_size, test_size=cfg.test_size,
                            seed=cfg.data_seed, device=device_, cache=True, val_size=cfg.val_size,
                            **dict(cfg.dataset_options))
        model = load_weights(cfg, results_dir, device=device_)
        t0 = time.perf_counter()
        test, indices, extras = analyse(model, data, cfg, device_)
        if abs(float(test["acc"]) - res.final_test_acc) > 1e-6 + 2.0 / max(1, cfg.test_size):
            raise CorruptFileError(f"{experiment}/{res.id}: the saved weights give test accuracy {test['acc']:.4f}, "
                                   f"the result says {res.final_test_acc:.4f}; they do not belong together")
        meta = {**res.meta, "reanalysed": {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                           "analysis_seconds": time.perf_counter() - t0, "code": code_provenance(),
                                           "device": str(device_)}}
        new = Result(cfg, res.history, indices, res.final_test_acc, res.final_test_loss, extras, meta, id=res.id)
        atomic_write_json(result_path(cfg, results_dir), new.to_json())
        log(f"reanalysed {experiment}/{res.id}: test accuracy {test['acc']:.4f} (as stored)")
        out.append(new)
    if missing:
        log(f"{len(missing)} result(s) of {experiment} have no saved weights and were left as they are: "
            + ", ".join(missing))
    return out


# ---------------------------------------------------------------- one uncached run on the coupling dial

def coupling_point(data, model_cfg, strength: float | None, *, train_cfg=None, identical_init: bool = True,
                   seed: int = 0, progress: bool = False) -> dict:
    """Train one model at coupling ``strength`` and measure where it ended on the dial (JSON-ready dict).

    Chapter 4 sweeps the dial with these uncached runs; the grids of chapters 6-8 go through
    :func:`run`, which caches by config hash. Returns a record of its own, not a :class:`Result`:
    the config, per-epoch history, final ``block_spread`` (conv weights and all parameters),
    ``block_difference``, the last stage's block similarity matrix (conv weights),
    ``effective_parameters``, ``count_parameters`` and wall time.
    """
    train_cfg = TrainConfig() if train_cfg is None else train_cfg
    train_cfg = replace(train_cfg, coupling=strength, identical_init=identical_init, seed=seed)
    model = build_resnet(model_cfg, seed=seed)
    t0 = time.perf_counter()
    history = train(model, data, train_cfg, progress=progress)
    return {"strength": strength, "identical_init": identical_init, "seed": seed, "dataset": data.name,
            "model": asdict(model_cfg), "train": asdict(train_cfg), "history": history.as_dict(),
            "spread": block_spread(model), "spread_conv": block_spread(model, include_norm=False),
            "max_difference": block_difference(model),
            "similarity_last_stage": block_similarity(model, len(model.stages) - 1, include_norm=False).tolist(),
            "effective_parameters": effective_parameters(model), "parameters": count_parameters(model),
            "seconds": time.perf_counter() - t0}


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        return v.tolist() if v.numel() > 1 else float(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and callable(v.item):       # numpy scalars
        return v.item()
    return v


def _parameter_counts(model) -> dict:
    """Distinct parameters, effective parameters and per-stage block spread (coupling.py's definitions)."""
    out = {"parameters": count_parameters(model)}
    try:
        out["effective_parameters"] = float(effective_parameters(model))
        out["block_spread"] = [float(v) for v in block_spread(model)]
    except Exception as err:  # an analysis extra must never lose a finished training run
        warnings.warn(f"effective_parameters failed ({err}); result written without it", RuntimeWarning)
    return out


def _lipschitz(model, data, n: int = 32) -> dict:
    """Per block: the certified bound on Lip(F) and a Jacobian estimate at real inputs (lipschitz.py);
    for contraction stages the certified bound of the whole step in h (contraction.py)."""
    if getattr(model.cfg, "block_map", "residual") == "contraction":
        seen = {id(b): (s, b) for s, st in enumerate(model.stages) for b in st.blocks}
        return {"step_lipschitz": [{"stage": s, "bound": b.step_lipschitz_bound()} for s, b in seen.values()]}
    try:
        x = next(iter(data.loader("test", batch_size=n)))[0]
        return {"lipschitz": _jsonable(branch_lipschitz_report(model, x, n_iter=20))}
    except Exception as err:  # an analysis extra must never lose a finished training run
        warnings.warn(f"branch_lipschitz_report failed ({err}); result written without it", RuntimeWarning)
        return {}
