"""Issue 25: no silent wrong results, round 3. One test per behaviour the issue lists, in its order.

Plain bad inputs also have a row in the tables of ``tests/test_errors.py``; here are the
behaviours a row cannot show (what is recorded, skipped, waited for, printed).
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import torch

from itercourse import __main__ as cli
from itercourse import locks, sweeps
from itercourse import experiments as ex
from itercourse import training
from itercourse.errors import DivergedError
from itercourse.experiments import ExperimentConfig, Result, load_result, load_results, result_path
from itercourse.io import UnsafeFileError, atomic_torch_save, atomic_write_bytes, atomic_write_json
from itercourse.models import ResNetConfig, build_resnet
from itercourse.report import cells, grid_table
from itercourse.sweeps import expand_grid, grid_labels, sweep
from itercourse.training import History, TrainConfig, check_not_diverged

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:accuracy .* is at or below chance:RuntimeWarning")


def tiny(**kw) -> ExperimentConfig:
    train = kw.pop("train", {})
    return ExperimentConfig(
        experiment=kw.pop("experiment", "tiny"), train_size=32, test_size=16, index_size=16,
        model=ResNetConfig(in_channels=1, widths=(4, 4), blocks=(1, 1), branch_norm="none"),
        train=TrainConfig(**{"epochs": 1, "batch_size": 16, "fast": False, "augment": False, **train}), **kw)


def fake_result(cfg: ExperimentConfig, acc: float = 0.5) -> Result:
    """A result written without training (the files the report and the sweep read)."""
    h = History(epoch=[1], lr=[0.1], train_loss=[1.0], train_acc=[acc], test_loss=[1.0], test_acc=[acc], seconds=[0.1])
    return Result(cfg, h, {"recurrence": 0.1, "convergence": 0.2, "divergence": 0.3}, acc, 1.0)


def write(res: Result, results_dir: Path, folder: str | None = None, name: str | None = None) -> Path:
    path = Path(results_dir) / (folder or res.config.experiment) / (name or f"{res.id}.json")
    atomic_write_json(path, res.to_json())
    return path


# ---------------------------------------------------------------- 1. checkpoints cannot run code

class Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):                 # unpickling it would call os.mkdir(target)
        return os.mkdir, (self.target,)


def test_a_crafted_checkpoint_is_refused_by_train_and_runs_nothing(tmp_path):
    ckpt = atomic_torch_save(tmp_path / "ckpt.pt", {"model": Evil(str(tmp_path / "code-ran"))})
    model = build_resnet(tiny().model, seed=0)
    data = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16)
    with pytest.raises(UnsafeFileError, match="could run code"):
        training.train(model, data, tiny().train, checkpoint=ckpt, progress=False, log=lambda *a: None)
    assert not (tmp_path / "code-ran").exists()
    assert ckpt.exists()                  # refused, not silently overwritten


def test_a_real_checkpoint_loads_with_weights_only(tmp_path):
    from itercourse.io import torch_load_verified
    data = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16)
    training.train(build_resnet(tiny().model, seed=0), data, tiny().train, checkpoint=tmp_path / "c.pt",
                   progress=False, log=lambda *a: None)
    state = torch_load_verified(tmp_path / "c.pt")
    assert state["epoch"] == 0 and "data" in state["owner"]


# ---------------------------------------------------------------- 2. divergence is refused

def test_an_absurd_or_non_finite_test_loss_is_divergence():
    check_not_diverged("test", 2.3, 10)                                   # a normal loss passes
    with pytest.raises(DivergedError, match=r"test loss is 5.9e\+24 in epoch 2.*lr=100"):
        check_not_diverged("test", 5.9e24, 10, epoch=2, lr=100.0)
    with pytest.raises(DivergedError, match="test loss is nan"):
        check_not_diverged("test", float("nan"), 10)
    with pytest.raises(DivergedError, match="3 example.* NaN or inf logits"):
        check_not_diverged("test", 2.3, 10, nonfinite=3)


def test_train_stops_when_the_test_loss_diverges(tmp_path, monkeypatch):
    real = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: {**real(*a, **k), "loss": 4.8e27})
    data = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16)
    with pytest.raises(DivergedError, match="test loss is 4.8e\\+27 in epoch 1"):
        training.train(build_resnet(tiny().model, seed=0), data, tiny().train, progress=False)


def test_evaluate_counts_non_finite_logits():
    model = build_resnet(tiny().model, seed=0)
    with torch.no_grad():
        model.fc.bias.fill_(float("nan"))
    out = training.evaluate(model, [(torch.zeros(2, 1, 32, 32), torch.zeros(2, 10))])
    assert out["nonfinite"] == 2 and out["classes"] == 10


def test_a_diverged_config_is_recorded_skipped_by_the_sweep_and_one_line_in_the_cli(tmp_path, monkeypatch, capsys):
    real = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: {**real(*a, **k), "loss": float("inf")})
    cfg = tiny()
    with pytest.raises(locks.SweepFailed, match="DivergedError"):
        sweep([cfg], results_dir=tmp_path / "r", checkpoint_dir=tmp_path / "ck", data_root=tmp_path / "d",
              progress=False, log=lambda *a: None)
    assert locks.failure_path(cfg, tmp_path / "r").exists() and not result_path(cfg, tmp_path / "r").exists()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--train-size", "32", "--test-size", "16", "--epochs", "1", "--batch-size", "16",
                  "--widths", "4", "4", "--blocks", "1", "1", "--no-fast", "--device", "cpu"])
    err = capsys.readouterr().err
    assert info.value.code != 0 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]        # (the rest is the progress bar)
    assert len(errors) == 1 and "training diverged" in errors[0] and "test loss is inf" in errors[0]


# ---------------------------------------------------------------- 3. report cells are replicates

def test_report_cells_never_mix_configs_that_differ_beyond_the_seed():
    a, b = tiny(train={"lr": 0.05}), tiny(train={"lr": 0.01})
    results = [fake_result(a, 0.5), fake_result(b, 0.7), fake_result(dataclasses.replace(a, seed=1), 0.6)]
    table = cells(results)
    assert len(table) == 2 and sorted(c["n"] for c in table.values()) == [1, 2]
    assert "other fields" in grid_table(results) and "train.lr=0.05" in grid_table(results)


def test_results_are_checked_against_their_folder_and_file_name(tmp_path):
    good = fake_result(tiny(experiment="mine"))
    write(good, tmp_path)
    write(fake_result(tiny(experiment="other", seed=1)), tmp_path, folder="mine")         # copied in
    write(fake_result(tiny(experiment="mine", seed=2)), tmp_path, name="0123456789ab.json")   # renamed
    skipped = []
    with pytest.warns(RuntimeWarning):
        loaded = load_results("mine", tmp_path, skipped=skipped)
    assert [r.id for r in loaded] == [good.id]
    reasons = " ".join(why for _, why in skipped)
    assert "belongs to experiment 'other'" in reasons and "file is named '0123456789ab.json'" in reasons


# ---------------------------------------------------------------- 4. checkpoints are owned by their data

def test_resuming_on_other_data_is_refused(tmp_path):
    model_cfg, cfg = tiny().model, tiny().train
    first = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16, seed=0)
    other = ex.load_dataset("digitclutter", str(tmp_path / "data"), train_size=32, test_size=16, seed=1)
    training.train(build_resnet(model_cfg, seed=0), first, cfg, checkpoint=tmp_path / "c.pt", progress=False,
                   log=lambda *a: None)
    with pytest.raises(ValueError, match="data differ"):
        training.train(build_resnet(model_cfg, seed=0), other, cfg, checkpoint=tmp_path / "c.pt", progress=False)
    assert training.data_fingerprint(first) == training.data_fingerprint(first.to("cpu"))


# ---------------------------------------------------------------- 5. Lipschitz cap for the images given

def test_lipschitz_report_is_for_the_images_given():
    from itercourse.lipschitz import branch_lipschitz_report
    from torch.nn.utils import parametrize
    model = build_resnet(ResNetConfig(in_channels=1, widths=(4, 4), blocks=(1, 1), branch_norm="none",
                                      spectral_coeff=0.9, input_size=4), seed=0)
    with parametrize.cached():                               # as run() computes it
        rows = branch_lipschitz_report(model, torch.zeros(2, 1, 16, 16), n_iter=5)
    assert [r["input_shape"] for r in rows] == [[4, 16, 16], [4, 8, 8]]


# ---------------------------------------------------------------- 6. locks never hang in silence

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


# ---------------------------------------------------------------- 6. grid sizes and an O(n) --list

def test_grid_labels_equal_the_per_config_labels():
    configs = expand_grid({"experiment": "g", "train_size": 32, "test_size": 16, "index_size": 16,
                           "model": {"in_channels": 1}},
                          {"seed": [0, 1], "coupling": [0.0, 1.0], "train.lr": [0.1, 0.05]})
    assert grid_labels(configs) == [c.label(configs) for c in configs]


def test_a_grid_is_size_checked_before_any_config_is_built(monkeypatch):
    monkeypatch.setattr(ExperimentConfig, "from_dict", lambda d: pytest.fail("built a config"))
    with pytest.raises(ValueError, match="1000000 configs"):
        expand_grid({}, {"seed": list(range(1000)), "train.lr": list(range(1, 1001))})


# ---------------------------------------------------------------- 7. work is not redone or misreported

def test_a_result_with_an_unknown_neutral_field_loads(tmp_path):
    cfg = tiny()
    d = fake_result(cfg).to_json()
    d["config"]["model"]["future_field"] = "default"            # a newer version's field at its neutral value
    d["config"]["another_future_field"] = None
    atomic_write_json(result_path(cfg, tmp_path), d)
    assert load_result(cfg, tmp_path) is not None
    assert not list(tmp_path.rglob("*.corrupt"))
    assert len(load_results(cfg.experiment, tmp_path, skipped=[])) == 1


def test_report_ignores_failure_records(tmp_path, capsys):
    cfg = tiny()
    write(fake_result(cfg), tmp_path)
    atomic_write_json(locks.failure_path(tiny(seed=1), tmp_path), {"id": "x", "label": "x", "error": "E: e"})
    skipped = []
    assert len(load_results(cfg.experiment, tmp_path, skipped=skipped)) == 1 and skipped == []
    assert cli.main(["report", "--experiment", cfg.experiment, "--results-dir", str(tmp_path),
                     "--out", str(tmp_path / "rep")]) == 0
    assert "skipped" not in capsys.readouterr().err


def test_an_out_of_date_failure_record_does_not_fail_the_sweep(tmp_path):
    cfg = tiny()
    write(fake_result(cfg), tmp_path)
    atomic_write_json(locks.failure_path(cfg, tmp_path), {"id": cfg.id, "label": "x", "error": "E: old"})
    assert sweeps.failures([cfg], tmp_path) == []
    assert [r.id for r in sweep([cfg], results_dir=tmp_path, progress=False)] == [cfg.id]


# ---------------------------------------------------------------- 8. Ctrl-C and full disks

def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setitem(cli.COMMANDS, "sweep", interrupted)
    assert cli.main(["sweep", "--preset", "smoke"]) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device while writing '.*result\.json'") as info:
        atomic_write_bytes(tmp_path / "result.json", b"{}")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 9. version floors

def test_version_floors():
    root = Path(__file__).resolve().parents[1]
    req, pyproject = (root / "requirements.txt").read_text(), (root / "pyproject.toml").read_text()
    assert "torch>=2.3" in req and "torchvision>=0.18" in req
    assert '"torch>=2.3"' in pyproject and '"torchvision>=0.18"' in pyproject
    assert 'license = "MIT"' in pyproject and '"setuptools>=77"' in pyproject
    assert hasattr(torch.amp, "GradScaler")              # what training.py needs (missing in torch 2.2)
