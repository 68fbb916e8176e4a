"""The presets of the arms grid (itercourse.presets) and what the grid's design relies on.

The grid itself (arms x couplings x init x seeds, one recipe per arm, the equal-parameter companion, the
smoke grid end to end), and the pieces it is built from: zero-initialised branches (the norm-free arm),
provenance of every result, and the convergent-by-design control of the convergence threshold.
"""
from types import SimpleNamespace

import pytest
import torch

from itercourse import experiments as ex
from itercourse.experiments import ExperimentConfig, run
from itercourse.io import read_json
from itercourse.indices import iterative_convergence_indices
from itercourse.models import ResNetConfig, build_resnet
from itercourse.provenance import UNKNOWN, code_label, code_line, code_versions, mixed_code_warning, source_sha256
from itercourse.indices import is_convergent
from itercourse.presets import ARM_FIELDS, NORM_FREE_LR_FACTOR
from itercourse.sweeps import load_grid
from itercourse.toys import convergent_control
from itercourse.training import TrainConfig
from itercourse.verdicts import arm_of, cell_of

torch.set_num_threads(1)


# ---------------------------------------------------------------- branch_init

@pytest.mark.parametrize("unit", ["preact", "original", "relu_only_preact"])
@pytest.mark.parametrize("branch_norm", ["none", "bn"])
def test_zero_branch_init_makes_every_block_the_identity(unit, branch_norm):
    cfg = ResNetConfig(in_channels=1, widths=(4, 8), blocks=(3, 2), unit=unit, branch_norm=branch_norm,
                       branch_init="zero", input_size=16)
    model = build_resnet(cfg, seed=0).eval()
    torch.manual_seed(1)
    for stage, (c, size) in zip(model.stages, [(4, 16), (8, 8)]):
        for block in stage.blocks:
            h = torch.randn(2, c, size, size).abs() if unit == "original" else torch.randn(2, c, size, size)
            assert torch.equal(block(h), h)                 # the oracle: block(h) == h exactly
    # the transitions and the stem keep their He init
    convs = [m for m in model.stages[1].transition.residual.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.abs().sum() > 0 for c in convs)


def test_default_branch_init_keeps_todays_weights_and_hash():
    cfg = ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 2))
    assert ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 2), branch_init="default") == cfg
    a, b = build_resnet(cfg, seed=3), build_resnet(cfg, seed=3)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    zero = build_resnet(ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 2), branch_init="zero"), seed=3)
    differ = [n for n, p in a.state_dict().items() if not torch.equal(p, zero.state_dict()[n])]
    assert differ and all(".blocks." in n for n in differ)   # only the blocks' last layers changed
    with pytest.raises(ValueError, match="branch_init"):
        ResNetConfig(branch_init="fixup")


def test_zero_init_with_spectral_constraint_builds_and_runs():
    cfg = ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 2), branch_norm="none", branch_init="zero",
                       spectral_coeff=0.9, input_size=16)
    model = build_resnet(cfg, seed=0).eval()
    assert torch.isfinite(model(torch.randn(2, 1, 16, 16))).all()


# ---------------------------------------------------------------- the arms grid

def _cells(configs):
    return {(arm_of(c), c.train.identical_init, float(c.train.coupling or 0.0), c.seed) for c in configs}


@pytest.mark.parametrize("name, couplings, seeds", [("digitclutter_arms_smoke", (0.0, 0.5, 1.0), (0,)),
                                                    ("digitclutter_arms", (0.0, 0.5, 1.0), (0, 1, 2)),
                                                    ("digitclutter_arms_gpu", (0.0, 0.25, 0.5, 0.75, 1.0),
                                                     (0, 1, 2))])
def test_arms_grid_expands_to_arms_x_couplings_x_init_x_seeds(name, couplings, seeds):
    configs = load_grid(name)
    arms = ("conventional", "norm-free", "constrained")
    want = {(a, True, lam, s) for a in arms for lam in couplings for s in seeds}      # identical init, every lambda
    want |= {(a, False, 0.0, s) for a in arms for s in seeds}                        # the ordinary ResNet per arm
    assert _cells(configs) == want
    assert len(configs) == len(want) == len({c.id for c in configs})
    assert all(isinstance(c.train.identical_init, bool) for c in configs)             # set per cell, no magic string
    assert [c.seed for c in configs] == sorted(c.seed for c in configs)               # whole replicates first
    by_arm = {arm_of(c): c.model for c in configs}
    assert by_arm["conventional"].branch_norm == "bn" and by_arm["conventional"].spectral_coeff is None
    assert by_arm["norm-free"].branch_init == "zero" and by_arm["norm-free"].branch_norm == "none"
    assert by_arm["constrained"].spectral_coeff == 0.9 and by_arm["constrained"].spectral_flavour == "operator"
    assert set(ARM_FIELDS) == set(arms)
    # one recipe per arm: the norm-free arm at NORM_FREE_LR_FACTOR of the others' peak learning rate
    lrs = {a: {c.train.lr for c in configs if arm_of(c) == a} for a in arms}
    assert all(len(v) == 1 for v in lrs.values()), lrs
    assert lrs["conventional"] == lrs["constrained"]
    assert lrs["norm-free"] == {lrs["constrained"].pop() * NORM_FREE_LR_FACTOR}
    if name == "digitclutter_arms_gpu":
        assert configs[0].train_size >= 50_000 and len(seeds) >= 3


def test_equal_parameter_companion_is_the_arms_recipe_narrowed():
    """One ordinary (independent init, lambda 0) narrow net per arm and seed; everything else is the arms
    grid's recipe, and its size is close to the recurrent (identical blocks) grid network's distinct weights."""
    from dataclasses import replace

    from itercourse.coupling import effective_parameters, make_blocks_identical
    from itercourse.models import build_resnet, count_parameters
    grid, narrow = load_grid("digitclutter_arms"), load_grid("digitclutter_arms_equal_params")
    assert {(a, i, lam) for a, i, lam, _ in _cells(narrow)} == {(a, False, 0.0) for a in ARM_FIELDS}
    assert sorted({c.seed for c in narrow}) == sorted({c.seed for c in grid})
    for c in narrow:
        twin = next(g for g in grid if arm_of(g) == arm_of(c) and g.seed == c.seed
                    and not g.train.identical_init)
        assert c.model == replace(twin.model, widths=(5, 10, 20))
        assert (c.train, c.train_size, c.test_size, c.index_size) == (twin.train, twin.train_size,
                                                                      twin.test_size, twin.index_size)
        recurrent = make_blocks_identical(build_resnet(twin.model, seed=0))
        ratio = count_parameters(build_resnet(c.model, seed=0)) / effective_parameters(recurrent)
        assert abs(ratio - 1) < 0.15, (arm_of(c), ratio)


def test_old_grid_is_kept_and_labelled():
    from itercourse.sweeps import PRESETS
    assert "undertrained" in PRESETS["digitclutter"]()["description"]


# ---------------------------------------------------------------- provenance and timings

def test_a_fresh_result_records_its_code_and_its_timings(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "_lipschitz", lambda model, data: {})
    cfg = ExperimentConfig(experiment="tiny", train_size=64, test_size=32, index_size=32,
                           model=ResNetConfig(in_channels=1, widths=(4, 8), blocks=(2, 2), branch_norm="none",
                                              branch_init="zero"),
                           train=TrainConfig(epochs=1, batch_size=32, fast=False, augment=False))
    res = run(cfg, tmp_path / "results", tmp_path / "ckpt", data_root=tmp_path / "data", progress=False,
              log=lambda *a: None)
    stored = read_json(next((tmp_path / "results" / "tiny").glob("*.json")))
    code = stored["meta"]["code"]
    assert set(code) == {"commit", "dirty", "source_sha256", "version"}
    assert code["source_sha256"] == source_sha256() and len(code["source_sha256"]) == 64
    assert code["dirty"] in (True, False, None)
    assert stored["meta"]["train_seconds"] > 0 and stored["meta"]["analysis_seconds"] > 0
    assert code_label(res.meta) != UNKNOWN


def test_report_names_mixed_and_unknown_code():
    class R:
        def __init__(self, meta):
            self.meta = meta
    same = {"code": {"commit": "a" * 40, "dirty": False, "source_sha256": "b" * 64, "version": "0.1.0"}}
    other = {"code": {"commit": "a" * 40, "dirty": True, "source_sha256": "c" * 64, "version": "0.1.0"}}
    assert mixed_code_warning([R(same), R(same)]) is None
    assert code_label({}) == UNKNOWN                                     # committed results before provenance
    warning = mixed_code_warning([R(same), R(other), R({})])
    assert warning.startswith("warning:") and "3 code versions" in warning and UNKNOWN in warning
    # a later commit with the same package sources (results or docs added) is the same code
    later = {"code": {**same["code"], "commit": "d" * 40}}
    assert mixed_code_warning([R(same), R(later)]) is None
    assert code_versions([R(same), R(later)]) == {f"src {'b' * 10} (commit {'a' * 10}, {'d' * 10})": 2}
    # the report's code line: the one code version, or the warning
    assert code_line([R(same), R(later)]) == f"Code: src {'b' * 10} (commit {'a' * 10}, {'d' * 10})."
    assert code_line([R(same), R(other), R({})]) == warning
    assert code_line([R({})]) == f"Code: {UNKNOWN}."


# ---------------------------------------------------------------- convergence as a threshold

def test_convergent_by_design_control_passes_and_its_expanding_twin_fails():
    control, twin = convergent_control(contractive=True), convergent_control(contractive=False)
    good = iterative_convergence_indices(control, control.loader(1000, seed=5))
    bad = iterative_convergence_indices(twin, twin.loader(1000, seed=5))
    assert is_convergent(good), good
    assert good["recurrence"] > 0.99 and good["rate"] == pytest.approx(0.5, abs=1e-3) and good["divergence"] > 0.95
    assert not is_convergent(bad), bad
    assert bad["recurrence"] > 0.99                                     # just as recurrent, but not convergent
    v2 = {"indices_version": 2}
    assert not is_convergent({**v2, "rate": 0.5}) and not is_convergent({**v2, "rate": None, "divergence": 1})
    with pytest.raises(ValueError, match="version 1"):
        is_convergent({"convergence": 0.9, "divergence": 1.0})          # the old indices: not judged


def test_smoke_arms_grid_runs_and_reports(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    from itercourse.experiment_report import write_report
    from itercourse.sweeps import sweep
    monkeypatch.setattr(ex, "_lipschitz", lambda model, data: {})
    results = sweep(load_grid("digitclutter_arms_smoke"), results_dir=tmp_path / "results",
                    checkpoint_dir=tmp_path / "ckpt", data_root=tmp_path / "data", progress=False,
                    log=lambda *a: None)
    assert len(results) == 12 and {cell_of(r)[0] for r in results} == set(ARM_FIELDS)
    paths = write_report("digitclutter_arms_smoke", tmp_path / "results", tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "The paper's claims (itercourse.verdicts: Welch 95% CI, Holm)" in text and "any network convergent" in text and "Code:" in text
    assert {p.name for p in paths} >= {"report.md", "arms.png"}


def test_every_arm_bundle_reads_back_as_its_name():
    """The presets write an arm as model fields, the verdicts read it back (arm_of): one fact, checked both ways."""
    from itercourse.presets import TRUE_TWIN, TUNED_LR
    from itercourse.verdicts import ARMS, arm_of
    for name, fields in {**ARM_FIELDS, "constrained, zero init": TRUE_TWIN}.items():
        model = SimpleNamespace(**{k.split(".", 1)[1]: v for k, v in fields.items()})
        assert arm_of(SimpleNamespace(model=model)) == name and name in ARMS and name in TUNED_LR
