"""Issue 12: no silent wrong results, no lost work. One section per item of the issue, in its order.

Each test asserts the error type and the words naming the argument and what is
allowed, or the corrected behaviour. Items that are plain bad inputs also have a
row in the tables of ``tests/test_errors.py``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
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

from itercourse import __main__ as cli
from itercourse import config_id, locks
from itercourse import experiments as ex
from itercourse.data import BatchLoader, load_dataset
from itercourse.digitclutter import make_digitclutter
from itercourse.experiments import ExperimentConfig, config_hash, legacy_hash, load_result, load_results
from itercourse.indices import iterative_convergence_indices
from itercourse.io import atomic_write_bytes, atomic_write_json, read_json
from itercourse.models import ResNetConfig, build_resnet
from itercourse.refinement import gradient_alignment
from itercourse.sweeps import SweepFailed, expand_grid, load_grid, sweep
from itercourse.training import DivergedError, TrainConfig, evaluate, train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results"
NO_GPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
NO_MPS_ONLY = pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None
                                 and torch.backends.mps.is_available(), reason="needs a machine without MPS")
pytestmark = pytest.mark.filterwarnings("ignore:accuracy .* is at or below chance:RuntimeWarning")


def tiny(**kw) -> ExperimentConfig:
    train = kw.pop("train", {})
    model = kw.pop("model", {})
    return ExperimentConfig(
        experiment=kw.pop("experiment", "tiny"), train_size=kw.pop("train_size", 64), test_size=32, index_size=32,
        model=ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 2), branch_norm="none", **model),
        train=TrainConfig(**{"epochs": 1, "batch_size": 32, "fast": False, "augment": False, **train}), **kw)


def tiny_model(**kw):
    return build_resnet(ResNetConfig(in_channels=1, widths=(4, 4), blocks=(2, 2), branch_norm="none", **kw), seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_dataset("digitclutter", root=str(tmp_path_factory.mktemp("data")), train_size=32, test_size=16)


@pytest.fixture(autouse=True)
def quick_extras(monkeypatch):
    monkeypatch.setattr(ex, "_lipschitz", lambda model, data: {})


def call(capsys, *argv):
    try:
        code = cli.main(list(argv))
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv, says=()):
    code, out, err = call(capsys, *argv)
    assert code == 2, (code, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    missing = [s for s in says if s not in err]
    assert not missing, f"stderr lacks {missing}: {err}"
    return err


# ------------------------------------------------------------------ 1. one canonical form per config

def test_no_coupling_has_one_id():
    assert tiny(train={"coupling": None}).id == tiny(train={"coupling": 0.0}).id == tiny(train={"coupling": 0}).id
    assert tiny(train={"coupling": None}).id != tiny(train={"coupling": 0.5}).id


def test_default_dataset_options_have_the_id_of_none():
    assert tiny(dataset_options={"num_digits": 3}).id == tiny(dataset_options={}).id
    assert tiny(dataset_options={"num_digits": 4}).id != tiny().id


def test_identical_init_is_a_bool_and_coupled_is_resolved_by_the_grid():
    with pytest.raises(TypeError, match="identical_init='coupled'.*True or False"):
        TrainConfig(identical_init="coupled")
    cfgs = expand_grid({"train": {"identical_init": "coupled"}, "model": {"in_channels": 1}},
                       {"coupling": [0.0, 0.5]})
    assert [c.train.identical_init for c in cfgs] == [False, True]


def test_committed_results_keep_their_ids():
    """Every committed result is named by its canonical id; results written before the canonical ids
    (no ``meta["code"]``: before provenance) also keep the id they were written under."""
    for path in sorted(COMMITTED.glob("*/*.json")):
        stored = read_json(path)
        assert stored["id"] == path.stem == config_hash(stored["config"]), path
        if not stored.get("meta", {}).get("code"):
            assert stored["id"] == legacy_hash(stored["config"]), path


def test_run_without_coupling_finds_the_committed_result(monkeypatch):
    """`run --experiment digitclutter_grid --seed 1` (no --coupling): the CLI's own lookup, no training."""
    monkeypatch.setattr(ex, "train", lambda *a, **k: pytest.fail("run() trained"))
    args = cli.build_parser().parse_args(["run", "--experiment", "digitclutter_grid", "--seed", "1"])
    cfg = cli.run_config(args)
    assert cfg.train.coupling is None
    assert load_result(cfg, COMMITTED) is not None
    assert ex.run(cfg, COMMITTED).config.train.coupling == 0.0


def test_a_result_under_a_legacy_spelling_is_found_and_counted_once(tmp_path):
    src = sorted((COMMITTED / "digitclutter_grid").glob("*.json"))[0]
    stored = read_json(src)
    cfg = ExperimentConfig.from_dict(stored["config"])
    old = json.loads(json.dumps(stored))
    old["config"]["train"]["coupling"] = None if not cfg.train.coupling else cfg.train.coupling
    old["config"]["dataset_options"] = [["num_digits", 3]]
    old["id"] = legacy_hash(old["config"])
    assert old["id"] != cfg.id
    folder = tmp_path / "digitclutter_grid"
    atomic_write_json(folder / f"{old['id']}.json", old)
    assert load_result(cfg, tmp_path) is not None                  # found under the old id
    atomic_write_json(folder / f"{cfg.id}.json", stored)
    assert len(load_results("digitclutter_grid", tmp_path)) == 1  # both files: one config, counted once


def test_report_counts_no_config_twice():
    results = load_results("digitclutter_grid", COMMITTED)
    ids = [config_hash(dataclasses.asdict(r.config)) for r in results]
    assert len(ids) == len(set(ids)) == 20


def test_a_new_field_at_its_neutral_value_keeps_old_ids(monkeypatch):
    """How others register a field: NEUTRAL_FIELDS[(section, name)] = value that means 'as before'."""
    d = dataclasses.asdict(tiny())
    monkeypatch.setitem(config_id.NEUTRAL_FIELDS, ("train", "lr_scaling"), "none")
    grown = json.loads(json.dumps(d))
    grown["train"]["lr_scaling"] = "none"
    assert config_hash(grown) == config_hash(d)
    grown["train"]["lr_scaling"] = "linear"
    assert config_hash(grown) != config_hash(d)


# ------------------------------------------------------------------ 2. checkpoints know their run

def test_checkpoint_of_another_train_config_is_refused(tmp_path, data):
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, fast=False, augment=False)
    train(tiny_model(), data, cfg, checkpoint=ckpt, progress=False, log=lambda *a: None)
    with pytest.raises(ValueError, match=r"checkpoint=.*c\.pt.*another run \(train differ\).*allowed"):
        train(tiny_model(), data, dataclasses.replace(cfg, lr=0.001), checkpoint=ckpt, progress=False)
    assert train(tiny_model(), data, cfg, checkpoint=ckpt, progress=False, log=lambda *a: None).epoch == [1]


def test_checkpoint_of_another_architecture_is_refused(tmp_path, data):
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=8, fast=False, augment=False)
    train(tiny_model(), data, cfg, checkpoint=ckpt, progress=False, log=lambda *a: None)
    other = build_resnet(ResNetConfig(in_channels=1, widths=(8, 8), blocks=(2, 2), branch_norm="none"), seed=0)
    with pytest.raises(ValueError, match=r"another run \(architecture differ\)") as info:
        train(other, data, cfg, checkpoint=ckpt, progress=False)
    assert "size mismatch" not in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ 3. a failing config does not block a sweep

def test_sweep_records_a_failure_goes_on_and_does_not_loop(tmp_path, monkeypatch):
    bad, good = tiny(train={"lr": 1e6}, seed=0), tiny(seed=1)
    kw = dict(results_dir=tmp_path / "r", checkpoint_dir=tmp_path / "c", data_root=str(tmp_path / "d"),
              progress=False, log=lambda *a: None)
    with pytest.raises(SweepFailed) as info:
        sweep([bad, good], **kw)
    message = str(info.value)
    assert "1 of 2 configs failed" in message and bad.id in message and bad.label() in message
    assert "diverged" in message and "--retry-failed" in message
    assert load_result(good, tmp_path / "r") is not None          # the config after it ran
    record = read_json(locks.failure_path(bad, tmp_path / "r"))
    assert record["id"] == bad.id and "lr=" in record["error"]
    monkeypatch.setattr(ex, "train", lambda *a, **k: pytest.fail("a recorded failure was retried"))
    with pytest.raises(SweepFailed):
        sweep([bad, good], **kw)                                   # no retraining, same report


def test_retry_failed_tries_again(tmp_path, monkeypatch):
    bad = tiny(train={"lr": 1e6})
    kw = dict(results_dir=tmp_path / "r", checkpoint_dir=tmp_path / "c", data_root=str(tmp_path / "d"),
              progress=False, log=lambda *a: None)
    with pytest.raises(SweepFailed):
        sweep([bad], **kw)
    calls = []
    monkeypatch.setattr(ex, "train", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(ValueError("again")))
    with pytest.raises(SweepFailed, match="again"):
        sweep([bad], retry_failed=True, **kw)
    assert calls == [1]


def test_sweep_list_labels_tell_configs_apart(capsys, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(textwrap.dedent("""\
        experiment: lr_grid
        model: {in_channels: 1, widths: [4], blocks: [1]}
        grid: {train.lr: [0.1, 0.01], seed: [0]}
        """))
    code, out, err = call(capsys, "sweep", str(grid), "--list", "--results-dir", str(tmp_path / "r"))
    assert code == 0, err
    labels = [line.split("lr_grid", 1)[1].strip() for line in out.splitlines()]
    assert len(set(labels)) == 2 and "train.lr=0.1" in labels[0] and "train.lr=0.01" in labels[1]


# ------------------------------------------------------------------ 4. report and load_results say what they drop

def test_report_lists_skipped_files_and_exits_non_zero(tmp_path, capsys):
    folder = tmp_path / "digitclutter_grid"
    shutil.copytree(COMMITTED / "digitclutter_grid", folder)
    damaged = sorted(folder.glob("*.json"))[:2]
    for p in damaged:
        p.write_text(p.read_text()[:100])
    argv = ["report", "--results-dir", str(tmp_path), "--out", str(tmp_path / "rep")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        code, out, err = call(capsys, *argv)
        assert code == 1 and "2 result file(s) skipped" in err and "--allow-missing" in err
        assert all(p.name in out for p in damaged)
        report = (tmp_path / "rep" / "report.md").read_text()
        assert "2 result file(s) skipped" in report and all(p.name in report for p in damaged)
        assert "18 runs" in report
        code, out, err = call(capsys, *argv, "--allow-missing")
    assert code == 0 and damaged[0].name in out


def test_load_results_of_a_missing_or_file_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment='nope'.*no results folder.*sweep"):
        load_results("nope", tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="experiment='afile'.*is a file"):
        load_results("afile", tmp_path)


# ------------------------------------------------------------------ 5. checks before expensive work

def test_index_options_are_checked_at_construction():
    with pytest.raises(ValueError, match=r"index_options has unknown keys \['max_pair'\]; allowed: .*'max_pairs'"):
        tiny(index_options={"max_pair": 3})


def test_model_channels_are_checked_against_the_dataset():
    with pytest.raises(ValueError, match=r"model.in_channels=3.*dataset='digitclutter'.*allowed: in_channels=1"):
        ExperimentConfig(model=ResNetConfig(in_channels=3))
    assert ExperimentConfig().model.in_channels == 1              # the default model fits the dataset
    assert ExperimentConfig(dataset="cifar100").model.num_classes == 100


def test_checkpoint_dir_that_is_a_file_fails_before_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ex, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    (tmp_path / "ck").write_text("a file")
    one_line_error(capsys, "run", "--checkpoint-dir", str(tmp_path / "ck"), "--results-dir", str(tmp_path / "r"),
                   says=("ck", "is a file, not a folder"))


def test_divergence_stops_training_at_the_first_epoch(tmp_path, data):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e6, fast=False, augment=False)
    with pytest.raises(DivergedError, match=r"diverged.*epoch 1.*allowed: a finite loss.*lr=1e\+06"):
        train(tiny_model(), data, cfg, progress=False)


# ------------------------------------------------------------------ 6. sizes checked before generating

@pytest.mark.parametrize("kw, says", [
    ({"n": 10 ** 9}, ("n=1000000000", "n * size^2 <=", "n <= 2097152 at size=32")),
    ({"n": 4, "size": 256}, ("size=256", "8..128")),
    ({"n": 4, "size": 100_000}, ("size=100000", "8..128")),
])
def test_digitclutter_sizes(kw, says):
    with pytest.raises(ValueError) as info:
        make_digitclutter(**kw)
    assert all(s in str(info.value) for s in says), str(info.value)


@pytest.mark.parametrize("argv, says", [
    (["digitclutter", "--n", "1000000000", "--out", "c.npz"], ("--n", "1000000000", "n <= 2097152")),
    (["digitclutter", "--size", "256", "--out", "c.npz"], ("--size", "256", "8..128")),
    (["digitclutter", "--size", "100000", "--out", "c.npz"], ("--size", "100000", "8..128")),
    (["run", "--train-size", "1000000000"], ("--train-size", "1000000000", "1..2000000")),
])
def test_size_flags_fail_in_one_line(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, *argv, says=says)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ 7. silent misreadings

@pytest.mark.parametrize("name", ["fast", "augment", "couple_norm", "compile", "identical_init"])
def test_bool_fields_refuse_strings(name):
    with pytest.raises(TypeError, match=f"{name}='False' must be True or False"):
        TrainConfig(**{name: "False"})


def test_a_yaml_string_false_is_refused(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text('experiment: x\nmodel: {in_channels: 1}\ntrain: {fast: "false"}\ngrid: {seed: [0]}\n')
    with pytest.raises(TypeError, match="fast='false' must be True or False"):
        load_grid(grid)


def test_milestones_are_increasing_fractions():
    with pytest.raises(ValueError, match=r"milestones\[i\]=50.*\(0.0, 1.0\)"):
        TrainConfig(milestones=(50, 75))
    with pytest.raises(ValueError, match=r"milestones=\(0.75, 0.5\).*increasing order"):
        TrainConfig(milestones=(0.75, 0.5))
    assert TrainConfig(milestones=0.5).milestones == (0.5,)


def test_batch_loader_refuses_float_images():
    with pytest.raises(TypeError, match=r"images has dtype torch.float32; allowed: torch.uint8"):
        BatchLoader(torch.rand(4, 1, 8, 8), torch.zeros(4), (0.5,), (0.2,))


def test_index_size_above_test_size_is_an_error():
    with pytest.raises(ValueError, match="index_size=1000 is larger than test_size=16.*index_size <= 16"):
        ExperimentConfig(test_size=16, index_size=1000)


def test_misspelled_grid_key_is_named():
    with pytest.raises(ValueError, match=r"grid key 'train.lrr' is not a config field; allowed: .*'train.lr'"):
        expand_grid({"model": {"in_channels": 1}}, {"train.lrr": [0.1]})
    with pytest.raises(ValueError, match=r"unknown fields \['sede'\]; a misspelling"):
        ExperimentConfig.from_dict({"sede": 1})


def test_duplicate_yaml_keys_are_an_error(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("experiment: x\ngrid: {seed: [0]}\ngrid: {seed: [1]}\n")
    with pytest.raises(ValueError, match=r"key 'grid' appears twice \(lines 2 and 3\)"):
        load_grid(grid)


# ------------------------------------------------------------------ 8. one-line errors, not tracebacks

@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
def test_model_refuses_other_dtypes(dtype):
    with pytest.raises(TypeError, match=f"x has dtype {dtype}.*allowed: torch.float32"):
        tiny_model()(torch.zeros(2, 1, 32, 32, dtype=dtype))


@NO_MPS_ONLY
def test_mps_without_mps():
    with pytest.raises(ValueError, match="device='mps': no Apple MPS device.*device='cpu'"):
        evaluate(tiny_model(), [], device="mps")


@NO_GPU_ONLY
def test_load_dataset_on_cuda_without_a_gpu(tmp_path):
    with pytest.raises(ValueError, match="device='cuda': no CUDA GPU"):
        load_dataset("digitclutter", root=str(tmp_path), train_size=8, test_size=8, device="cuda")


@NO_MPS_ONLY
def test_run_device_mps_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, "run", "--device", "mps", "--train-size", "64", "--test-size", "32",
                   says=("device='mps'", "no Apple MPS device"))


def test_grid_yaml_with_a_tab(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("experiment: x\ngrid:\n\tseed: [0]\n")
    with pytest.raises(ValueError, match=r"g.yaml' is not valid YAML at line 3.*no TABs"):
        load_grid(grid)


def test_train_on_a_tuple(data):
    with pytest.raises(TypeError, match=r"data=tuple must be an ImageData"):
        train(tiny_model(), (data.train_images, data.train_labels), progress=False)


def test_indices_with_bad_loaders(data):
    x, y = next(iter(data.loader("test", batch_size=8)))
    with pytest.raises(TypeError, match=r"loader must yield \(x, y\) batches.*a Tensor of shape \(8, 1, 32, 32\)"):
        iterative_convergence_indices(tiny_model(), [x])
    with pytest.raises(ValueError, match="x has 3 channels.*in_channels=1"):
        iterative_convergence_indices(tiny_model(), [(x.repeat(1, 3, 1, 1), y)])
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        iterative_convergence_indices(tiny_model(), [(x.double(), y)])


def test_gradient_alignment_labels():
    x = torch.zeros(2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"y \(dtype torch.int64, shape \(2, 10\).*class indices \(B,\) in 0..9"):
        gradient_alignment(tiny_model(), x, torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"values 0..12\) is not allowed.*0..9"):
        gradient_alignment(tiny_model(), x, torch.tensor([0, 12]))
    assert len(gradient_alignment(tiny_model(), x, torch.tensor([0, 1]))) > 0   # labels follow the model's device


def test_numpy_integers_are_accepted():
    cfg = ExperimentConfig(seed=np.int64(1), train_size=np.int64(100), test_size=64, index_size=np.int32(32))
    assert type(cfg.seed) is int and cfg.id == ExperimentConfig(seed=1, train_size=100, test_size=64,
                                                                  index_size=32).id


def test_digitclutter_out_folder_and_preview_suffix(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    one_line_error(capsys, "digitclutter", "--n", "4", "--out", "folder", says=("--out", "'folder' is a folder", ".npz"))
    one_line_error(capsys, "digitclutter", "--n", "4", "--out", "c.npz", "--preview", "p.jpg",
                   says=("--preview", "'p.jpg'", ".png"))
    assert not (tmp_path / "c.npz").exists()


# ------------------------------------------------------------------ 9. file modes follow the umask

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        p = atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == mode


# ------------------------------------------------------------------ 10. workers exit with their parent

PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from itercourse.locks import watch_parent

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
        while locks._alive(worker) and time.time() < deadline:
            time.sleep(0.2)
        gone = not locks._alive(worker) or _zombie(worker)
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


# ------------------------------------------------------------------ 11. locks instead of check-then-act races

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


def test_a_checkpoint_written_before_owners_still_resumes(tmp_path, data):
    """Checkpoints of 0.1.0 carry only ``train_config``: they resume for the same recipe and shapes."""
    from itercourse.io import atomic_torch_save, torch_load_verified
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=8, fast=False, augment=False)
    train(tiny_model(), data, cfg, checkpoint=ckpt, progress=False, log=lambda *a: None)
    state = torch_load_verified(ckpt)
    del state["owner"]
    atomic_torch_save(ckpt, state)
    logs = []
    assert train(tiny_model(), data, cfg, checkpoint=ckpt, progress=False, log=logs.append).epoch == [1]
    assert any("resumed" in m for m in logs)
    with pytest.raises(ValueError, match=r"another run \(train differ\)"):
        train(tiny_model(), data, dataclasses.replace(cfg, lr=0.01), checkpoint=ckpt, progress=False)


def test_numpy_bools_become_bools():
    cfg = TrainConfig(identical_init=np.float64(0.5) > 0)
    assert cfg.identical_init is True
