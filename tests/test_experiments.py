"""Experiments: stable config ids, cached runs, resumption after SIGKILL, resumable sweeps, corrupt files."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from itercourse import experiments as ex
from itercourse.experiments import ExperimentConfig, Result, load_results, result_path, run
from itercourse import sweeps
from itercourse.sweeps import load_grid, sweep
from itercourse.io import CorruptFileError, read_json
from itercourse.models import ResNetConfig
from itercourse.training import TrainConfig

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def tiny(**kw) -> ExperimentConfig:
    """A config that trains in well under a second: 64 Digitclutter images, a 2-stage net of width 4-8."""
    train = kw.pop("train", {})
    model = kw.pop("model", {})
    return ExperimentConfig(
        experiment=kw.pop("experiment", "tiny"), dataset=kw.pop("dataset", "digitclutter"), train_size=64, test_size=32,
        index_size=32, model=ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 2), branch_norm="none", **model),
        train=TrainConfig(**{"epochs": 2, "batch_size": 32, "fast": False, "augment": False, **train}), **kw)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")          # Digitclutter cache shared by the tests of this file


REAL_LIPSCHITZ = ex._lipschitz


@pytest.fixture(autouse=True)
def quick_extras(monkeypatch):
    """The per-block Lipschitz report costs seconds; one test runs it, the others skip it."""
    monkeypatch.setattr(ex, "_lipschitz", lambda model, data: {})


@pytest.fixture
def count_training(monkeypatch):
    """Count calls of train() made by experiments.run."""
    calls = []
    real = ex.train

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(ex, "train", counting)
    return calls


# ---------------------------------------------------------------- identity

def test_config_hash_is_the_same_in_another_process_with_another_hash_seed():
    cfgs = [tiny(train={"coupling": 0.5}, model={"spectral_coeff": 0.9}, seed=3), tiny(index_options={"seed": 1, "max_pairs": 2})]
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from test_experiments import tiny
        print(tiny(train={"coupling": 0.5}, model={"spectral_coeff": 0.9}, seed=3).id)
        print(tiny(index_options={"max_pairs": 2, "seed": 1}).id)
    """)
    hash_seed = str(hash("itercourse") % 1000 + 1)       # certainly not this process's string hashing
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests")], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == [c.id for c in cfgs]
    assert all(len(c.id) == 12 and int(c.id, 16) >= 0 for c in cfgs)


def test_hash_depends_on_content_only():
    a = tiny(train={"coupling": 0})
    assert a.id == tiny(train={"coupling": 0.0}).id                      # 0 and 0.0 are the same number
    assert a.id == ExperimentConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(a)))).id
    assert a.id != tiny(train={"coupling": 0.25}).id
    assert a.id != tiny(seed=1).id
    assert tiny(seed=2).train.seed == 2                                  # one seed, one source of truth
    with pytest.raises(ValueError, match="train.seed=5 and seed=0 disagree"):
        tiny(train={"seed": 5})                                          # never overwritten silently
    assert tiny(index_options={"seed": 1, "max_pairs": 2}).id == tiny(index_options=(("max_pairs", 2), ("seed", 1))).id
    assert tiny(val_size=0).id == a.id != tiny(val_size=8).id            # no validation split: the old id


def test_bad_configs_name_the_field():
    with pytest.raises(ValueError, match="dataset='imagenet'"):
        tiny(dataset="imagenet")
    with pytest.raises(ValueError, match="experiment="):
        tiny(experiment="a/b")
    with pytest.raises(ValueError, match="unknown fields"):
        ExperimentConfig.from_dict({"experimnt": "x"})


# ---------------------------------------------------------------- caching

def test_run_twice_trains_once(tmp_path, data_root, count_training, monkeypatch):
    monkeypatch.setattr(ex, "_lipschitz", REAL_LIPSCHITZ)
    cfg = tiny(model={"spectral_coeff": 0.9})
    first = run(cfg, tmp_path / "results", tmp_path / "ckpt", data_root=data_root, progress=False)
    second = run(cfg, tmp_path / "results", tmp_path / "ckpt", data_root=data_root, progress=False)
    assert len(count_training) == 1
    assert second.final_test_acc == first.final_test_acc and second.history == first.history
    stored = read_json(result_path(cfg, tmp_path / "results"))
    assert stored["id"] == cfg.id and stored["meta"]["versions"]["torch"] == torch.__version__
    assert set(first.indices) >= {"recurrence", "convergence", "divergence", "recurrence_performance"}
    assert first.extras["parameters"] >= first.extras["effective_parameters"] > 0
    bounds = [row["bound"] for row in first.extras["lipschitz"]]
    assert len(bounds) == 4 and max(bounds) <= 0.9 * (1 + 1e-3)       # the constraint held after training
    assert not any((tmp_path / "ckpt").rglob("*.pt"))                   # checkpoint removed after the result
    assert "val_acc" not in first.extras


def test_a_validation_split_is_scored_and_changes_no_training_number(tmp_path, data_root):
    plain = run(tiny(), tmp_path, tmp_path / "ckpt", data_root=data_root, progress=False)
    held = run(tiny(val_size=16), tmp_path, tmp_path / "ckpt", data_root=data_root, progress=False)
    assert held.history.train_acc == plain.history.train_acc and held.final_test_acc == plain.final_test_acc
    assert held.extras["val_size"] == 16 and 0 <= held.extras["val_acc"] <= 1
    with pytest.raises(ValueError, match="val_size=-2"):
        tiny(val_size=-2)


@pytest.mark.parametrize("damage", ["truncate", "edit", "garbage"])
def test_corrupt_result_is_detected_and_recomputed(tmp_path, data_root, count_training, damage):
    cfg = tiny()
    good = run(cfg, tmp_path, tmp_path / "ckpt", data_root=data_root, progress=False)
    path = result_path(cfg, tmp_path)
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "edit":                                              # valid JSON, wrong checksum
        path.write_text(text.replace(f'"final_test_acc": {good.final_test_acc}', '"final_test_acc": 0.999'))
        assert path.read_text() != text
    else:
        path.write_bytes(b"\x00\x01 not json")
    with pytest.raises(CorruptFileError):
        Result.from_json(path)
    with pytest.warns(RuntimeWarning, match="recomputed"):
        again = run(cfg, tmp_path, tmp_path / "ckpt", data_root=data_root, progress=False)
    assert len(count_training) == 2                                     # trained again, not loaded
    assert again.final_test_acc == good.final_test_acc                  # deterministic on the CPU
    assert read_json(path)["id"] == cfg.id                              # a good file replaced the bad one


def test_result_of_another_config_is_not_used(tmp_path, data_root, count_training):
    a, b = tiny(), tiny(seed=1)
    run(a, tmp_path, tmp_path / "ckpt", data_root=data_root, progress=False)
    os.replace(result_path(a, tmp_path), result_path(b, tmp_path))      # a file under the wrong name
    with pytest.warns(RuntimeWarning):
        res = run(b, tmp_path, tmp_path / "ckpt", data_root=data_root, progress=False)
    assert res.config == b and len(count_training) == 2


def test_load_results_skips_corrupt_files_with_a_warning(tmp_path, data_root):
    cfgs = [tiny(), tiny(seed=1)]
    for c in cfgs:
        run(c, tmp_path, tmp_path / "ckpt", data_root=data_root, progress=False)
    result_path(cfgs[1], tmp_path).write_text("{")
    with pytest.warns(RuntimeWarning, match="skipping"):
        results = load_results("tiny", tmp_path)
    assert [r.id for r in results] == [cfgs[0].id]


# ---------------------------------------------------------------- resumption

KILL_SCRIPT = """
import importlib, os, signal, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import itercourse.training as tr   # the module; itercourse.train is the function
from test_experiments import tiny
from itercourse.experiments import run
real_save = tr.atomic_torch_save
def save_then_die(path, obj):
    real_save(path, obj)
    os.kill(os.getpid(), signal.SIGKILL)     # killed right after its first checkpoint
tr.atomic_torch_save = save_then_die
run(tiny(train={{"epochs": 3, "coupling": 0.5, "identical_init": True}}, model={{"spectral_coeff": 0.9}}),
    {results!r}, {ckpt!r}, data_root={data!r}, progress=False)
"""


def test_run_killed_after_first_checkpoint_resumes_to_the_same_result(tmp_path, data_root):
    cfg = tiny(train={"epochs": 3, "coupling": 0.5, "identical_init": True}, model={"spectral_coeff": 0.9})
    script = KILL_SCRIPT.format(tests=str(ROOT / "tests"), results=str(tmp_path / "a"),
                                ckpt=str(tmp_path / "ck"), data=str(data_root))
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ckpt = ex.checkpoint_path(cfg, tmp_path / "ck")
    assert ckpt.exists() and not result_path(cfg, tmp_path / "a").exists()

    logs = []
    resumed = run(cfg, tmp_path / "a", tmp_path / "ck", data_root=data_root, progress=False, log=logs.append)
    assert any("resumed" in m and "epoch 1/3" in m for m in logs), logs
    fresh = run(cfg, tmp_path / "b", tmp_path / "ck2", data_root=data_root, progress=False)
    assert resumed.history.epoch == [1, 2, 3]
    assert resumed.history.test_loss == fresh.history.test_loss          # bit-identical on the CPU
    assert resumed.history.train_loss == fresh.history.train_loss
    assert resumed.final_test_acc == fresh.final_test_acc
    assert resumed.indices["recurrence"] == pytest.approx(fresh.indices["recurrence"])


def test_truncated_checkpoint_is_not_used(tmp_path, data_root):
    cfg = tiny()
    ckpt = ex.checkpoint_path(cfg, tmp_path / "ck")
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04 half a zip file")
    logs = []
    res = run(cfg, tmp_path / "a", tmp_path / "ck", data_root=data_root, progress=False, log=logs.append)
    assert any("ignoring unusable checkpoint" in m for m in logs), logs
    fresh = run(cfg, tmp_path / "b", tmp_path / "ck2", data_root=data_root, progress=False)
    assert res.history.test_loss == fresh.history.test_loss


# ---------------------------------------------------------------- sweeps

def test_half_finished_sweep_resumes(tmp_path, data_root, monkeypatch, count_training):
    configs = [tiny(seed=s) for s in range(3)]
    real_run = sweeps.run

    def fail_on_third(cfg, *a, **k):
        if cfg.seed == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real_run(cfg, *a, **k)
    monkeypatch.setattr(sweeps, "run", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        sweep(configs, results_dir=tmp_path, checkpoint_dir=tmp_path / "ck", data_root=data_root, progress=False)
    assert len(count_training) == 2
    monkeypatch.setattr(sweeps, "run", real_run)
    results = sweep(configs, results_dir=tmp_path, checkpoint_dir=tmp_path / "ck", data_root=data_root,
                    progress=False)
    assert len(count_training) == 3                                     # only the missing one ran
    assert [r.config for r in results] == configs


def test_sweep_recomputes_a_corrupt_result(tmp_path, data_root, count_training):
    configs = [tiny(seed=s) for s in range(2)]
    sweep(configs, results_dir=tmp_path, checkpoint_dir=tmp_path / "ck", data_root=data_root, progress=False)
    result_path(configs[0], tmp_path).write_text('{"sha256": "0", "data": {}}')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sweep(configs, results_dir=tmp_path, checkpoint_dir=tmp_path / "ck", data_root=data_root, progress=False)
    assert len(count_training) == 3


def test_submitit_local_executor_runs_a_two_config_sweep(tmp_path, data_root):
    submitit = pytest.importorskip("submitit", reason="submitit is not installed")
    from submitit.core.utils import FailedSubmissionError, UncompletedJobError
    configs = [tiny(seed=s, train={"epochs": 1}) for s in range(2)]
    try:
        results = sweep(configs, "submitit", cluster="local", results_dir=tmp_path / "res",
                        checkpoint_dir=tmp_path / "ck", data_root=data_root, submitit_folder=tmp_path / "logs",
                        slurm={"timeout_min": 5}, threads=1, progress=False)
    except (FailedSubmissionError, UncompletedJobError, OSError) as err:   # the executor itself, not our job
        pytest.skip(f"submitit's local executor cannot run jobs here: {err}")
    assert [r.config for r in results] == configs
    assert all(result_path(c, tmp_path / "res").exists() for c in configs)
    assert len(list((tmp_path / "logs").glob("*_result.pkl"))) == 2                 # two real submitit jobs


# ---------------------------------------------------------------- grids

def test_book_grid_is_the_issue_grid():
    configs = load_grid("digitclutter")
    assert len(configs) == 20 and len({c.id for c in configs}) == 20
    cells = {(c.train.coupling, c.model.spectral_coeff, c.seed) for c in configs}
    assert cells == {(lam, sc, s) for lam in (0.0, 0.25, 0.5, 0.75, 1.0) for sc in (None, 0.9) for s in (0, 1)}
    for c in configs:
        assert c.train.identical_init == (c.train.coupling > 0)        # coupled runs start from identical blocks
        assert c.model.spectral_flavour == "operator"
    assert [c.seed for c in configs[:10]] == [0] * 10                   # seed 0 of every cell comes first


@pytest.mark.parametrize("name", sorted(sweeps.PRESETS))
def test_a_presets_base_is_its_config_before_any_grid_value(name):
    """``preset_base``: the spec's own fields, the grid left out; the arms grids' base is one of their
    cells (the conventional arm's ordinary ResNet, seed 0)."""
    spec, base = sweeps.PRESETS[name](), sweeps.preset_base(name)
    assert (base.experiment, base.dataset, base.train_size, base.test_size) == \
        (spec["experiment"], spec["dataset"], spec["train_size"], spec["test_size"])
    assert all(getattr(base.model, k) == (tuple(v) if isinstance(v, list) else v) for k, v in spec["model"].items())
    assert all(getattr(base.train, k) == v for k, v in spec["train"].items() if v != "coupled")
    assert isinstance(base.train.identical_init, bool)
    if name.startswith("digitclutter_arms") and "lr" not in name and "ladder" not in name:   # the ladder: 2x, 4x only
        cell = next(c for c in load_grid(name) if c.id == base.id)
        assert (cell.seed, cell.train.coupling, cell.train.identical_init, cell.model.branch_norm) == (0, 0.0, False, "bn")


@pytest.mark.parametrize("name", sorted(sweeps.PRESETS))
def test_dumped_preset_is_the_same_grid(name, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_text(sweeps.grid_yaml(name))                  # what `sweep --preset NAME --dump` prints
    assert [c.id for c in load_grid(path)] == [c.id for c in load_grid(name)]


def test_grid_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="grid"):
        sweeps.expand_grid({}, {"coupling": []})
    with pytest.raises(ValueError, match="grid key"):
        sweeps.expand_grid({}, {"optimizer.lr": [1]})
    with pytest.raises(FileNotFoundError, match="presets"):
        load_grid(str(tmp_path / "missing.yaml"))


# ---------------------------------------------------------------- trained weights and reanalysis

@pytest.mark.parametrize("model", [{}, {"spectral_coeff": 0.9}, {"spectral_coeff": 0.8, "block_map": "contraction",
                                                                  "share": True}],
                         ids=["plain", "constrained", "contraction"])
def test_weights_are_saved_and_reload_to_the_same_test_accuracy(tmp_path, data_root, model):
    from itercourse.data import load_dataset
    from itercourse.experiments import load_weights, weights_path
    from itercourse.training import evaluate
    cfg = tiny(model=model)
    res = run(cfg, tmp_path / "r", tmp_path / "c", data_root=str(data_root), progress=False, log=lambda *a: None)
    assert weights_path(cfg, tmp_path / "r").exists()
    assert res.indices["indices_version"] == 2
    for st in res.indices["per_stage"]:                     # the block map is recorded
        assert len(st["state_norms"]) == len(st["step_sizes"]) + 1 and st["jacobian_growth"]["median"] > 0
    model_ = load_weights(cfg, tmp_path / "r")
    data = load_dataset(cfg.dataset, str(data_root), train_size=cfg.train_size, test_size=cfg.test_size,
                        seed=cfg.data_seed, cache=True)
    assert evaluate(model_, data.loader("test", batch_size=16))["acc"] == pytest.approx(res.final_test_acc, abs=1e-9)


def test_reanalyse_recomputes_from_the_weights_without_training(tmp_path, data_root, count_training):
    from itercourse.experiments import reanalyse
    cfg = tiny()
    first = run(cfg, tmp_path / "r", tmp_path / "c", data_root=str(data_root), progress=False, log=lambda *a: None)
    # make the stored indices stale (as if written by older code), then reanalyse
    path = result_path(cfg, tmp_path / "r")
    stale = Result(first.config, first.history, {"recurrence": 0.0}, first.final_test_acc, first.final_test_loss,
                   first.extras, first.meta)
    from itercourse.io import atomic_write_json
    atomic_write_json(path, stale.to_json())
    done = reanalyse("tiny", tmp_path / "r", data_root=str(data_root), log=lambda *a: None)
    assert len(count_training) == 1 and len(done) == 1
    again = load_results("tiny", tmp_path / "r")[0]
    assert again.indices["indices_version"] == 2 and again.indices["rate"] == pytest.approx(first.indices["rate"])
    assert "reanalysed" in again.meta and again.history.train_acc == first.history.train_acc


def test_reanalyse_refuses_weights_that_do_not_belong_to_the_result(tmp_path, data_root):
    """The stored accuracy is the oracle: weights that do not reproduce it are refused, nothing is rewritten."""
    from itercourse.experiments import reanalyse
    from itercourse.io import atomic_write_json
    cfg = tiny()
    res = run(cfg, tmp_path / "r", tmp_path / "c", data_root=str(data_root), progress=False, log=lambda *a: None)
    other = Result(res.config, res.history, res.indices, res.final_test_acc + 0.5, res.final_test_loss,
                   res.extras, res.meta)
    atomic_write_json(result_path(cfg, tmp_path / "r"), other.to_json())
    before = result_path(cfg, tmp_path / "r").read_bytes()
    with pytest.raises(CorruptFileError, match="do not belong"):
        reanalyse("tiny", tmp_path / "r", data_root=str(data_root), log=lambda *a: None)
    assert result_path(cfg, tmp_path / "r").read_bytes() == before


# ---------------------------------------------------------------- one uncached run on the coupling dial

def test_coupling_point_at_the_ends_of_the_dial(data_root):
    """Known answers: at lambda = 1 from identical blocks the blocks stay exactly identical (spread 0,
    difference 0, similarity 1, one block's worth of parameters per stage); at lambda = 0 from independent
    inits they stay apart. The record says what ran and is JSON-ready; the recipe passed in is not changed."""
    from itercourse.coupling import effective_parameters, make_blocks_identical
    from itercourse.data import load_dataset
    from itercourse.experiments import coupling_point
    from itercourse.models import build_resnet, count_parameters
    data = load_dataset("digitclutter", root=str(data_root), train_size=64, test_size=32)
    model_cfg = ResNetConfig(in_channels=1, widths=(4, 8), blocks=(3, 3), branch_norm="none")
    recipe = TrainConfig(epochs=1, batch_size=32, fast=False, augment=False)
    tied = coupling_point(data, model_cfg, 1.0, train_cfg=recipe, identical_init=True, seed=2)
    free = coupling_point(data, model_cfg, 0.0, train_cfg=recipe, identical_init=False, seed=2)
    assert recipe.coupling == 0.0 and recipe.seed == 0                        # the caller's recipe is untouched

    assert tied["strength"] == 1.0 and tied["identical_init"] is True and tied["seed"] == 2
    assert tied["dataset"] == "digitclutter" and tied["model"] == dataclasses.asdict(model_cfg)
    assert tied["train"] == dataclasses.asdict(dataclasses.replace(recipe, coupling=1.0, identical_init=True, seed=2))
    assert tied["history"]["epoch"] == [1] and tied["seconds"] > 0
    assert tied["spread"] == tied["spread_conv"] == [0.0, 0.0] and tied["max_difference"] == [0.0, 0.0]
    assert torch.tensor(tied["similarity_last_stage"]) == pytest.approx(torch.ones(3, 3))
    recurrent = make_blocks_identical(build_resnet(model_cfg, seed=0))
    assert tied["effective_parameters"] == pytest.approx(effective_parameters(recurrent))
    assert tied["parameters"] == free["parameters"] == count_parameters(build_resnet(model_cfg, seed=0))

    assert free["strength"] == 0.0 and free["identical_init"] is False
    assert all(s > 0.5 for s in free["spread"]) and all(d > 0 for d in free["max_difference"])
    assert free["effective_parameters"] > tied["effective_parameters"] + 1000
    json.dumps([tied, free])                                                 # JSON-ready
