"""The identity of a config: one canonical form, and its hash.

    hash(cfg) = sha256(canonical_json(canonical_config(asdict(cfg))))[:12]

One canonical form per config. Before hashing, equivalent spellings are
normalised (``canonical_config``): ``train.coupling`` None == 0.0
(canonical 0.0: a strength-0 coupling leaves every gradient unchanged);
``dataset_options`` entries equal to the loader's defaults are dropped (so
``{"num_digits": 3}`` == ``{}``); and a field listed in :data:`NEUTRAL_FIELDS`
is left out of the hash while it holds its neutral value. Compatibility path:
the ids of the committed results (itercourse 0.1.0) do not change, because
every field they lack is in ``NEUTRAL_FIELDS``; and ``experiments.load_result`` also
looks for a result under the *legacy* id (the hash of ``asdict`` as it was
spelled), so a result stored under another spelling of
the same config is found, not retrained.

**Adding a config field** (to ``ResNetConfig``, ``TrainConfig`` or
``ExperimentConfig``): give it a default that reproduces the old behaviour and
register that default here, ``NEUTRAL_FIELDS[("model", "branch_init")] =
"default"`` (section, field; section ``None`` for a top-level field). Old
results then keep their ids, and new configs at the default find them.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
from pathlib import Path

from .digitclutter import make_digitclutter

# Fields added after itercourse 0.1.0, with the value that means "as before": left out of the hash
# while they hold it, so old results keep their ids. (section, field) -> neutral value; section None
# = a field of ExperimentConfig itself. Extend it when you add a field (see the module docstring).
NEUTRAL_FIELDS: dict = {
    ("model", "branch_init"): "default",
    ("model", "block_map"): "residual",
    ("model", "contraction_step"): 1.0,
    (None, "val_size"): 0,
}

# ---------------------------------------------------------------- the files named by a config's id

def result_path(cfg, results_dir="results") -> Path:
    """Where ``run(cfg)`` keeps its result: ``results_dir/<experiment>/<id>.json``."""
    return Path(results_dir) / cfg.experiment / f"{cfg.id}.json"


def weights_path(cfg, results_dir="results") -> Path:
    """Where ``run(cfg)`` keeps the trained weights: ``results_dir/<experiment>/<id>.pt`` (beside the result)."""
    return Path(results_dir) / cfg.experiment / f"{cfg.id}.pt"


def checkpoint_path(cfg, checkpoint_dir="checkpoints") -> Path:
    """Where training checkpoints ``cfg`` every epoch: ``checkpoint_dir/<experiment>/<id>.pt``."""
    return Path(checkpoint_dir) / cfg.experiment / f"{cfg.id}.pt"


# ---------------------------------------------------------------- canonical form and hash

def flat(d: dict, prefix: str = "") -> dict:
    """A nested dict as one level of dotted keys (lists as tuples): ``{"train.lr": 0.1, ...}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def check_parameters(name: str, options: dict, fn, exclude=()) -> None:
    """Raise ``ValueError`` unless every key of ``options`` is a keyword parameter of ``fn``."""
    allowed = [p for p in inspect.signature(fn).parameters if p not in exclude]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{name} has unknown keys {unknown}; allowed: {allowed}")


def _dataset_defaults(dataset: str) -> dict:
    """The keyword defaults ``load_dataset`` passes on for ``dataset`` (digitclutter: make_digitclutter's)."""
    if dataset != "digitclutter":
        return {}
    return {k: p.default for k, p in inspect.signature(make_digitclutter).parameters.items()
            if p.default is not inspect.Parameter.empty}


def canonical_config(cfg: dict) -> dict:
    """``cfg`` (an ``asdict`` of an ExperimentConfig) with equivalent spellings made one (the form that is hashed).

    coupling None -> 0.0; dataset_options equal to the loader's defaults dropped; fields of
    :data:`NEUTRAL_FIELDS` at their neutral value left out.
    """
    d = copy.deepcopy(cfg)
    train = d.get("train")
    if isinstance(train, dict) and train.get("coupling") is None and "coupling" in train:
        train["coupling"] = 0.0
    defaults = _dataset_defaults(d.get("dataset", "digitclutter"))
    if d.get("dataset_options"):
        d["dataset_options"] = [list(kv) for kv in d["dataset_options"]
                                if not (kv[0] in defaults and _same(defaults[kv[0]], kv[1]))]
    for (section, name), neutral in NEUTRAL_FIELDS.items():
        holder = d if section is None else d.get(section)
        if isinstance(holder, dict) and name in holder and _same(holder[name], neutral):
            del holder[name]
    return d


def _same(a, b) -> bool:
    return _canonical(a) == _canonical(b)


def _canonical(obj):
    """Numbers as floats, tuples as lists, dict keys sorted: equal configs give equal text."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (int, float)):
        return float(obj)
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    raise TypeError(f"cannot hash a config containing {obj!r} ({type(obj).__name__})")


def hash_of(d: dict) -> str:
    """12 hex digits of the SHA-256 of ``d``'s canonical JSON (sorted keys, numbers as floats)."""
    text = json.dumps(_canonical(d), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def spellings(cfg: dict) -> list:
    """Equivalent spellings of ``cfg`` that 0.1.0 hashed differently (coupling None / 0.0; the default
    ``num_digits`` written out or not): where :func:`itercourse.experiments.load_result` looks for old ids."""
    base = canonical_config(cfg)
    out = []
    for coupling in (0.0, None):
        for options in ([], [["num_digits", 3]] if base.get("dataset") == "digitclutter" else []):
            d = copy.deepcopy(base)
            d["train"]["coupling"] = coupling if d["train"]["coupling"] in (0, None) else d["train"]["coupling"]
            d["dataset_options"] = sorted([list(kv) for kv in d["dataset_options"]] + options)
            out.append(d)
    return out


# ---------------------------------------------------------------- ids

def config_hash(cfg) -> str:
    """Stable 12-hex id of a config (or of its ``asdict``): sha256 of its canonical JSON.

    Independent of PYTHONHASHSEED, of the process, of int-vs-float spelling (0 == 0.0) and of
    the equivalent spellings :func:`canonical_config` makes one.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):     # an ExperimentConfig
        cfg = dataclasses.asdict(cfg)
    if not isinstance(cfg, dict):
        raise TypeError(f"cfg={cfg!r} must be an ExperimentConfig or its asdict()")
    return hash_of(canonical_config(cfg))


def legacy_hash(cfg) -> str:
    """The 0.1.0 id: the hash of ``asdict`` as spelled, without :func:`canonical_config`."""
    return hash_of(dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else cfg)
