"""Command line: every subcommand explains itself, bad flags fail cleanly (exit 2), and the commands work."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import itercourse.__main__ as cli
import itercourse.experiments as ex
from itercourse import sweeps
from itercourse.__main__ import main
from itercourse.training import REFERENCE_BATCH
from itercourse.verdicts import arm_of

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def call(capsys, *argv):
    """Run the CLI in this process; return (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["report"], ["digitclutter"]])
def test_every_help_has_examples(capsys, command):
    code, out, _ = call(capsys, *command, "--help")
    assert code == 0
    assert "usage: python -m itercourse" in out and "examples:" in out


@pytest.mark.parametrize("argv,flag,allowed", [
    (["run", "--coupling", "1.5"], "--coupling", "[0.0, 1.0]"),
    (["run", "--dataset", "imagenet"], "--dataset", "digitclutter"),
    (["run", "--epochs", "0"], "--epochs", ">= 1"),
    (["run", "--epochs", "two"], "--epochs", "invalid int value"),
    (["run", "--depth", "21"], "--depth", "6m+2"),
    (["run", "--spectral-coeff", "0.9", "--branch-norm", "bn"], "--spectral-coeff", "branch_norm='none'"),
    (["sweep", "--preset", "imagenet"], "--preset", "digitclutter"),
    (["sweep"], "GRID/--preset", "exactly one"),
    (["sweep", "no/such/grid.yaml"], "GRID", "no such file"),
    (["sweep", "--preset", "smoke", "--executor", "ray"], "--executor", "submitit"),
    (["digitclutter", "--num-digits", "11", "--out", "x.npz"], "--num-digits", "1..10"),
    (["digitclutter", "--n", "5"], "--out", "required"),
    (["frobnicate"], "invalid choice", "run"),
])
def test_bad_arguments_exit_2_naming_the_flag(capsys, argv, flag, allowed):
    code, _, err = call(capsys, *argv)
    assert code == 2
    assert flag in err and allowed in err, err
    assert "Traceback" not in err


def test_module_entry_point_runs_as_a_script():
    out = subprocess.run([sys.executable, "-m", "itercourse", "sweep", "--preset", "nope"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--preset" in out.stderr and "Traceback" not in out.stderr


def test_sweep_list_and_dump(capsys):
    code, out, _ = call(capsys, "sweep", "--preset", "digitclutter", "--list", "--results-dir", "/nonexistent")
    assert code == 0 and len(out.splitlines()) == 20 and out.count("pending") == 20
    code, out, _ = call(capsys, "sweep", "--preset", "smoke", "--dump")
    assert code == 0 and out == sweeps.grid_yaml("smoke")


def test_digitclutter_command_writes_data_and_a_preview(tmp_path, capsys):
    from itercourse.digitclutter import load_digitclutter, make_digitclutter
    code, out, _ = call(capsys, "digitclutter", "--n", "6", "--num-digits", "2", "--seed", "3",
                        "--out", str(tmp_path / "d.npz"), "--preview", str(tmp_path / "p.png"))
    assert code == 0 and (tmp_path / "p.png").stat().st_size > 0
    images, labels, *_ = load_digitclutter(tmp_path / "d.npz")
    expected, _ = make_digitclutter(6, 2, seed=3)
    assert np.array_equal(np.asarray(images), expected.numpy())
    assert (np.asarray(labels).sum(1) == 2).all()


def test_run_then_report(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ex, "_lipschitz", lambda model, data: {})
    common = ["--train-size", "64", "--test-size", "32", "--widths", "4", "8", "--blocks", "2", "2",
              "--epochs", "1", "--batch-size", "32", "--no-fast", "--device", "cpu", "--experiment", "cli",
              "--branch-norm", "none", "--results-dir", str(tmp_path / "r"), "--checkpoint-dir", str(tmp_path / "c"),
              "--data-root", str(tmp_path / "d")]
    for extra in (["--coupling", "0"], ["--coupling", "1"], ["--coupling", "0", "--spectral-coeff", "0.9"],
                  ["--coupling", "1", "--spectral-coeff", "0.9"]):
        code, out, err = call(capsys, "run", *common, *extra)
        assert code == 0, err
        assert "test accuracy" in out and "recurrence=" in out
    results = ex.load_results("cli", tmp_path / "r")
    assert len(results) == 4
    assert all(r.config.train.identical_init == bool(r.config.train.coupling) for r in results)
    code, out, err = call(capsys, "report", "--experiment", "cli", "--results-dir", str(tmp_path / "r"),
                          "--out", str(tmp_path / "rep"))
    assert code == 0, err
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| none | 0 |" in report and "verdict" in report
    assert (tmp_path / "rep" / "indices.png").stat().st_size > 0


def test_depth_sets_the_blocks_of_a_cifar_resnet(monkeypatch, capsys, tmp_path):
    seen = []
    monkeypatch.setattr(cli, "run", lambda cfg, *a, **k: seen.append(cfg) or (_ for _ in ()).throw(ValueError("stop")))
    code, _, err = call(capsys, "run", "--depth", "20", "--widths", "16", "32", "64", "--results-dir", str(tmp_path))
    assert code == 2 and "stop" in err
    assert seen[0].model.blocks == (3, 2, 2) and seen[0].model.depth == 20


def test_run_defaults_are_the_arms_presets_base_config():
    """`run` with no flags computes the base config of cli.BOOK_PRESET, whole, in its own folder."""
    assert cli.BOOK_PRESET == "digitclutter_arms"
    base = sweeps.preset_base(cli.BOOK_PRESET)
    cfg = cli.run_config(cli.build_parser().parse_args(["run"]))
    assert cfg.experiment == "scratch"
    assert cfg.model == base.model and cfg.train == base.train
    assert dataclasses.replace(cfg, experiment=base.experiment) == base
    assert (cfg.train_size, cfg.test_size, cfg.index_size, cfg.train.epochs, cfg.train.batch_size) == \
        (5_000, 2_000, 500, 16, 64)                                      # chapter 7's arms recipe, not the old grid's


def test_run_help_names_the_preset_its_defaults_come_from(capsys):
    code, out, _ = call(capsys, "run", "--help")
    base = sweeps.preset_base("digitclutter_arms")
    assert code == 0 and "preset digitclutter_arms" in " ".join(out.split())
    assert f"(default: {base.train_size})" in out and f"(default: {base.train.batch_size})" in out


def test_run_defaults_are_a_point_of_the_book_grid(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(cli, "run", lambda cfg, *a, **k: seen.append(cfg) or (_ for _ in ()).throw(ValueError("stop")))
    grid = {(arm_of(c), c.train.identical_init, c.train.coupling, c.seed): c.id
            for c in sweeps.load_grid("digitclutter_arms")}
    for argv, key in (([], ("conventional", False, 0.0, 0)),
                      (["--coupling", "1", "--seed", "1"], ("conventional", True, 1.0, 1)),
                      (["--branch-norm", "none", "--spectral-coeff", "0.9", "--coupling", "0.5", "--seed", "2"],
                       ("constrained", True, 0.5, 2)),
                      (["--branch-norm", "none", "--spectral-coeff", "0.9"], ("constrained", False, 0.0, 0))):
        call(capsys, "run", "--experiment", "digitclutter_arms", *argv)
        assert seen[-1].id == grid[key], argv


def test_lr_scaling_changes_the_learning_rate_training_gets(monkeypatch, capsys, tmp_path):
    """``run --lr-scaling linear``: train() receives lr * batch-size / 128; without the flag, --lr as given."""
    used = []

    def no_training(model, data, cfg, **kwargs):          # what experiments.run hands to training
        used.append(cfg)
        raise ValueError("stop")
    monkeypatch.setattr(ex, "train", no_training)
    tiny = ["run", "--train-size", "32", "--test-size", "16", "--widths", "4", "4", "--blocks", "1", "1",
            "--device", "cpu", "--results-dir", str(tmp_path / "r"), "--checkpoint-dir", str(tmp_path / "ck"),
            "--data-root", str(tmp_path / "data")]
    for argv, lr in ((["--lr", "0.05", "--batch-size", "512", "--lr-scaling", "linear"], 0.2),
                     (["--lr", "0.05", "--batch-size", "64", "--lr-scaling", "linear"], 0.025),
                     (["--lr", "0.05", "--batch-size", str(REFERENCE_BATCH), "--lr-scaling", "linear"], 0.05),
                     (["--lr", "0.05", "--batch-size", "512"], 0.05),
                     (["--lr", "0.05", "--batch-size", "512", "--lr-scaling", "none"], 0.05)):
        code, _, err = call(capsys, *tiny, *argv)
        assert code == 2 and "stop" in err, err
        assert used[-1].lr == pytest.approx(lr) and used[-1].batch_size == int(argv[3]), argv
    assert len(used) == 5


def test_report_without_results_is_a_clean_error(tmp_path, capsys):
    code, _, err = call(capsys, "report", "--results-dir", str(tmp_path))
    assert code == 2 and "no results" in err and "Traceback" not in err
