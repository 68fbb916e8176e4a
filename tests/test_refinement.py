"""Refinement metrics against independent computations, and the gradient-step toy against its closed form."""
import itertools
import math

import pytest
import torch
from torch import nn

from itercourse.blocks import SHORTCUTS, UNITS
from itercourse.models import ResNetConfig, build_resnet
from itercourse.refinement import (PerBlock, borderline_examples, drop_block_accuracy, gradient_alignment,
                                   norm_ratios, unroll_accuracy)
from itercourse.toys import QuadraticGradientBlocks, expected_alignment, expected_norm_ratios, quadratic_loss
from itercourse.objectives import correct_mask, flip_margin, task_loss
from itercourse.training import evaluate
from itercourse.walk import eval_mode, iterate_last_block, stage_states

torch.set_num_threads(1)
TINY = dict(in_channels=1, widths=(4, 8), blocks=(2, 3), input_size=12)


def _trained_ish(cfg_kw, seed=0):
    """A tiny model with non-trivial BN statistics (one forward pass in train mode), in train mode."""
    model = build_resnet(ResNetConfig(**cfg_kw), seed=seed)
    with torch.no_grad():
        model.train()(torch.randn(16, 1, 12, 12, generator=torch.Generator().manual_seed(seed)))
    return model


def _batch(n=6, multilabel=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 12, 12, generator=g)
    if multilabel:                                   # Digitclutter-style multi-hot labels, 3 digits each
        y = torch.zeros(n, 10)
        for b in range(n):
            y[b, torch.randperm(10, generator=g)[:3]] = 1.0
    else:
        y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def _oracle_alignment(model, x, y):
    """Independent: for each block, detach h_i, re-run the rest of the network, take dL/dh_i alone."""
    model.eval()
    with torch.no_grad():
        states = model.stage_states(x)
    out = []
    for s, st in enumerate(states):
        for i in range(len(st) - 1):
            h = st[i].detach().clone().requires_grad_(True)
            z = h
            for block in model.stages[s].blocks[i:]:
                z = block(z)
            for stage in model.stages[s + 1:]:
                z = stage(z)
            loss = task_loss(model.readout(z), y, reduction="sum")
            (g,) = torch.autograd.grad(loss, h)
            d = (st[i + 1] - st[i]).flatten(1)
            cos = torch.nn.functional.cosine_similarity(d.double(), g.flatten(1).double(), dim=1)
            out.append(cos.mean().item())
    return out


VARIANTS = ([dict(unit=u) for u in UNITS]
            + [dict(unit="original", shortcut=s) for s in SHORTCUTS if s != "identity"]
            + [dict(share=True), dict(share=True, share_norm=True), dict(bottleneck=True),
               dict(branch_norm="none", spectral_coeff=0.9)])


@pytest.mark.parametrize("variant,multilabel", list(itertools.product(VARIANTS, (False, True))),
                         ids=lambda v: str(v))
def test_alignment_matches_per_block_autograd(variant, multilabel):
    model = _trained_ish({**TINY, **variant})
    x, y = _batch(multilabel=multilabel)
    got = gradient_alignment(model, x, y)
    assert model.training, "the model's mode must be restored"
    expected = _oracle_alignment(model, x, y)
    assert len(got) == len(expected) == sum(TINY["blocks"])
    assert got.stage == (0, 0, 1, 1, 1) and got.block == (0, 1, 0, 1, 2)
    for a, b in zip(got.values, expected):
        assert abs(a - b) < 1e-5, (got.values, expected)
    assert all(-1 - 1e-9 <= v <= 1 + 1e-9 for v in got.values)


def test_alignment_leaves_parameter_gradients_alone():
    model = _trained_ish(TINY)
    x, y = _batch()
    gradient_alignment(model, x, y)
    assert all(p.grad is None for p in model.parameters())


def test_alignment_works_with_frozen_weights():
    model = _trained_ish(TINY)
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = _batch()
    assert len(gradient_alignment(model, x, y)) == 5


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_norm_ratios_match_block_updates(variant):
    model = _trained_ish({**TINY, **variant}).eval()
    x, _ = _batch()
    got = norm_ratios(model, x)
    expected = []
    with torch.no_grad():
        for s, st in enumerate(model.stage_states(x)):
            for i, block in enumerate(model.stages[s].blocks):
                step = block.update(st[i]).flatten(1)
                expected.append((step.norm(dim=1) / st[i].flatten(1).norm(dim=1)).mean().item())
    assert got.values == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- the gradient-step toy

def _h0(d=5, n=32, seed=0):
    return torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("share", [False, True])
def test_toy_isotropic_quadratic_gives_cosine_minus_one(share):
    a, eta, d = 2.0, 0.1, 5
    net = QuadraticGradientBlocks(a * torch.eye(d, dtype=torch.float64), eta, 6, share=share)
    h0 = _h0(d)
    cos = gradient_alignment(net, h0, None, loss_fn=net.loss)
    assert cos.values == pytest.approx([-1.0] * 6, abs=1e-12)
    ratios = norm_ratios(net, h0)
    assert ratios.values == pytest.approx([eta * a] * 6, rel=1e-12)    # ||ηAh|| / ||h|| = η a


def test_toy_projection_quadratic_gives_cosine_minus_one():
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=g))
    P = q[:, :2] @ q[:, :2].T                                   # rank-2 orthogonal projection
    A, eta = 3.0 * P, 0.2
    net = QuadraticGradientBlocks(A, eta, 4)
    h0 = _h0(6)
    assert gradient_alignment(net, h0, None, loss_fn=net.loss).values == pytest.approx([-1.0] * 4, abs=1e-12)
    # norm ratio by hand, block 0: η ||A h|| / ||h||
    r0 = (eta * (h0 @ A).norm(dim=1) / h0.norm(dim=1)).mean().item()
    assert norm_ratios(net, h0).values[0] == pytest.approx(r0, rel=1e-12)


def test_toy_anisotropic_matches_closed_form():
    A = torch.diag(torch.tensor([1.0, 0.5, 0.2, 0.05], dtype=torch.float64))
    eta, n = 0.5, 5
    net = QuadraticGradientBlocks(A, eta, n)
    h0 = _h0(4)
    cos = gradient_alignment(net, h0, None, loss_fn=net.loss).values
    assert cos == pytest.approx(expected_alignment(A, eta, n, h0), abs=1e-12)
    assert all(-1 < c < 0 for c in cos)                          # downhill, but not exactly along -grad
    assert norm_ratios(net, h0).values == pytest.approx(expected_norm_ratios(A, eta, n, h0), rel=1e-12)


def test_toy_branch_is_minus_eta_times_the_local_gradient():
    A = torch.tensor([[2.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    net = QuadraticGradientBlocks(A, 0.3, 3)
    h = _h0(2).requires_grad_(True)
    (grad,) = torch.autograd.grad(quadratic_loss(h, A).sum(), h)
    block = net.stages[0].blocks[0]
    assert torch.allclose(block.branch(h), -0.3 * grad)
    assert torch.allclose(block.update(h), -0.3 * grad)
    assert torch.allclose(net(h), h @ torch.linalg.matrix_power(torch.eye(2, dtype=A.dtype) - 0.3 * A, 3))


def test_toy_rejects_bad_inputs():
    with pytest.raises(ValueError, match="symmetric"):
        QuadraticGradientBlocks(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), 0.1, 2)
    with pytest.raises(ValueError, match="square"):
        QuadraticGradientBlocks(torch.ones(2, 3), 0.1, 2)
    with pytest.raises(ValueError, match="eta"):
        QuadraticGradientBlocks(torch.eye(2), -0.1, 2)
    with pytest.raises(ValueError, match="n_blocks"):
        QuadraticGradientBlocks(torch.eye(2), 0.1, 0)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        QuadraticGradientBlocks(torch.eye(2), 0.1, 2)(torch.ones(3, 4))


# ---------------------------------------------------------------- drop, unroll, borderline

def _loader(multilabel=False, n=20, batch=8):
    x, y = _batch(n, multilabel=multilabel, seed=5)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


@pytest.mark.parametrize("multilabel", [False, True])
def test_drop_block_matches_hand_written_schedules(multilabel):
    model = _trained_ish(TINY)
    loader = _loader(multilabel)
    res = drop_block_accuracy(model, loader)
    assert len(res.acc) == len(res.loss) == 5 and res.n == 20
    assert res.intact_acc == pytest.approx(evaluate(model, loader)["acc"])
    assert any("stage 1 transition" in p for p in res.not_droppable)
    assert not any("stage 0 transition" in p for p in res.not_droppable)   # stage 0 has none
    # drop block 1 of stage 1 by hand
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for x, y in loader:
            h = model.stages[0](model.stem(x))
            h = model.stages[1].transition(h)
            h = model.stages[1].blocks[2](model.stages[1].blocks[0](h))
            logits = model.readout(h)
            correct += int(correct_mask(logits, y).sum())
            loss += float(task_loss(logits, y, reduction="sum"))
    j = res.acc.labels().index("s1.b1")
    assert res.acc.values[j] == pytest.approx(correct / 20)
    assert res.loss.values[j] == pytest.approx(loss / 20, rel=1e-5)
    assert res.acc_cost.values[j] == pytest.approx(res.intact_acc - correct / 20)


@pytest.mark.parametrize("multilabel", [False, True])
def test_unroll_matches_repeated_schedule_and_hand_loop(multilabel):
    model = _trained_ish(TINY)
    loader = _loader(multilabel)
    plain = unroll_accuracy(model, loader, (3, 0, 1, 1), scale=1.0)
    assert plain.extra_steps == (0, 1, 3) and plain.stage == 1
    intact = evaluate(model, loader)
    assert plain.acc[0] == pytest.approx(intact["acc"]) and plain.loss[0] == pytest.approx(intact["loss"], rel=1e-5)
    rep = evaluate(model, loader, schedules={1: [0, 1, 2, 2, 2, 2]})     # last block 3 more times
    assert plain.acc[2] == pytest.approx(rep["acc"]) and plain.loss[2] == pytest.approx(rep["loss"], rel=1e-5)
    scaled = unroll_accuracy(model, loader, 2, scale=0.25)
    model.eval()
    norms, loss = [], 0.0
    with torch.no_grad():
        for x, y in loader:
            h = model.stages[1](model.stages[0](model.stem(x)))
            last = model.stages[1].blocks[-1]
            for _ in range(2):
                h = h + 0.25 * (last(h) - h)
            norms += h.flatten(1).norm(dim=1).tolist()
            loss += float(task_loss(model.readout(h), y, reduction="sum"))
    assert scaled.state_norm[0] == pytest.approx(sum(norms) / 20, rel=1e-5)
    assert scaled.loss[0] == pytest.approx(loss / 20, rel=1e-5)


def test_unroll_of_an_earlier_stage_runs_the_later_stages():
    model = _trained_ish(TINY)
    loader = _loader()
    res = unroll_accuracy(model, loader, (0, 2), stage=0)
    rep = evaluate(model, loader, schedules={0: [0, 1, 1, 1]})
    assert res.stage == 0 and res.acc[1] == pytest.approx(rep["acc"]) and res.loss[1] == pytest.approx(rep["loss"], rel=1e-5)


def test_flip_margin_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]))
    assert flip_margin(logits, torch.tensor([0, 1])).tolist() == pytest.approx([0.2, 0.85])
    # multi-label: sigmoids 0.9, 0.6, 0.55, 0.1; two true labels -> 2nd minus 3rd = 0.05
    p = torch.tensor([[0.9, 0.6, 0.55, 0.1], [0.9, 0.6, 0.55, 0.1], [0.9, 0.6, 0.55, 0.1]])
    y = torch.tensor([[1.0, 1.0, 0, 0], [1.0, 1, 1, 1], [0.0, 0, 0, 0]])
    m = flip_margin(torch.logit(p), y)
    assert m[0].item() == pytest.approx(0.05) and m[1].item() == pytest.approx(0.1) and math.isinf(m[2].item())


@pytest.mark.parametrize("compare,multilabel", list(itertools.product(("unroll", "last_block"), (False, True))))
def test_borderline_counts_match_hand_computation(compare, multilabel):
    model = _trained_ish(TINY)
    loader = _loader(multilabel)
    res = borderline_examples(model, loader, threshold=0.5, compare=compare, extra_steps=3, scale=0.5)
    model.eval()
    c0s, c1s, bs = [], [], []
    with torch.no_grad():
        for x, y in loader:
            if compare == "unroll":
                h = model.stages[1](model.stages[0](model.stem(x)))
                before = model.readout(h)
                for _ in range(3):
                    h = h + 0.5 * (model.stages[1].blocks[-1](h) - h)
                after = model.readout(h)
            else:
                before, after = model(x, schedules={1: [0, 1]}), model(x)
            c0s.append(correct_mask(before, y))
            c1s.append(correct_mask(after, y))
            bs.append(flip_margin(before, y) < 0.5)
    c0, c1, b = torch.cat(c0s), torch.cat(c1s), torch.cat(bs)
    assert res.n_total == 20 and res.n_borderline == int(b.sum()) > 0
    assert res.acc_before == pytest.approx(float((c0 & b).sum()) / int(b.sum()))
    assert res.acc_after == pytest.approx(float((c1 & b).sum()) / int(b.sum()))
    assert res.fixed == int((~c0 & c1 & b).sum()) and res.broken == int((c0 & ~c1 & b).sum())
    assert res.acc_all_before == pytest.approx(float(c0.float().mean()))


def test_borderline_with_none_gives_nan():
    model = _trained_ish(TINY)
    res = borderline_examples(model, _loader(), threshold=1e-12)
    assert res.n_borderline == 0 and math.isnan(res.acc_before) and math.isnan(res.acc_after)


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_every_metric_runs_on_every_variant(variant):
    model = _trained_ish({**TINY, **variant})
    loader = _loader(multilabel=True)
    x, y = loader[0]
    for res in (gradient_alignment(model, x, y), norm_ratios(model, x), drop_block_accuracy(model, loader).acc):
        assert isinstance(res, PerBlock) and len(res) == 5 and all(math.isfinite(v) for v in res.values)
    u = unroll_accuracy(model, loader, (0, 2), scale=0.5)
    assert len(u.acc) == 2 and all(0 <= a <= 1 for a in u.acc)
    assert borderline_examples(model, loader, threshold=0.3).n_total == 20


def test_per_block_helpers_round_trip():
    pb = PerBlock((0.1, 0.2, 0.3), (0, 0, 1), (0, 1, 0), "m")
    assert pb.per_stage() == [[0.1, 0.2], [0.3]] and pb.labels() == ["s0.b0", "s0.b1", "s1.b0"]
    assert PerBlock.from_dict(pb.as_dict()) == pb


# ---------------------------------------------------------------- errors

def test_errors_name_the_argument():
    model = _trained_ish(TINY)
    x, y = _batch()
    loader = _loader()
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    for call in (lambda: gradient_alignment(plain, x, y), lambda: norm_ratios(plain, x),
                 lambda: drop_block_accuracy(plain, loader), lambda: unroll_accuracy(plain, loader, 1),
                 lambda: borderline_examples(plain, loader)):
        with pytest.raises(TypeError, match="model=Sequential"):
            call()
    with pytest.raises(ValueError, match="x has 6 examples but y has 4"):
        gradient_alignment(model, x, y[:4])
    with pytest.raises(ValueError, match="x has 8 examples but y has 3"):
        unroll_accuracy(model, [(loader[0][0], loader[0][1][:3])], 1)
    with pytest.raises(ValueError, match="empty batch"):
        norm_ratios(model, x[:0])
    with pytest.raises(ValueError, match="y=None"):
        gradient_alignment(model, x, None)
    for call in (lambda: drop_block_accuracy(model, []), lambda: unroll_accuracy(model, [], 1),
                 lambda: borderline_examples(model, [])):
        with pytest.raises(ValueError, match="no (batches|examples)"):
            call()
    with pytest.raises(TypeError, match="re-iterable"):
        drop_block_accuracy(model, iter(loader))
    with pytest.raises(ValueError, match="extra_steps"):
        unroll_accuracy(model, loader, -1)
    with pytest.raises(ValueError, match="extra_steps"):
        unroll_accuracy(model, loader, ())
    with pytest.raises(TypeError, match="extra_steps"):
        unroll_accuracy(model, loader, [1.5])
    with pytest.raises(ValueError, match="stage=2"):
        unroll_accuracy(model, loader, 1, stage=2)
    with pytest.raises(ValueError, match="scale"):
        unroll_accuracy(model, loader, 1, scale=0)
    with pytest.raises(ValueError, match="threshold"):
        borderline_examples(model, loader, threshold=1.5)
    with pytest.raises(ValueError, match="compare"):
        borderline_examples(model, loader, compare="sideways")
    with pytest.raises(ValueError, match="scalar"):
        gradient_alignment(model, x, y, loss_fn=lambda logits, t: task_loss(logits, t, reduction="none"))


# ---------------------------------------------------------------- the chapter's report, figures and explorer

def test_report_figures_and_explorer():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from itercourse.viz.plots import plot_refinement_summary
    from itercourse.refinement import refinement_report
    from itercourse.viz.explorers import refinement_explorer

    model = _trained_ish(TINY)
    loader = _loader(multilabel=True)
    rep = refinement_report(model, loader, extra_steps=(0, 2), scales=(1.0, 0.5))
    # the loader-wide averages equal the batch-size-weighted means of the per-batch metrics
    per_batch = [gradient_alignment(model, x, y).values for x, y in loader]
    weights = [len(x) for x, _ in loader]
    expected = [sum(w * v[j] for w, v in zip(weights, per_batch)) / sum(weights) for j in range(5)]
    assert rep["alignment"].values == pytest.approx(expected, rel=1e-9)
    assert [u.scale for u in rep["unroll"]] == [1.0, 0.5]
    assert [b.compare for b in rep["borderline"]] == ["unroll", "unroll", "last_block"]
    fig = plot_refinement_summary(rep, title="tiny")
    assert len(fig.axes) == 6
    plt.close(fig)
    box = refinement_explorer({"a": rep, "b": rep})
    assert box.children[0].options == ("a", "b")
    box.children[0].value = "b"                                  # redraws without error
    plt.close("all")
    with pytest.raises(ValueError, match="reports"):
        refinement_explorer({})


def test_unrolling_runs_the_walks_one_iteration_of_the_last_block():
    """unroll_accuracy's states are those of itercourse.walk.iterate_last_block, bit for bit (plain and scaled)."""
    model = _trained_ish(TINY)
    x, y = _batch(8, seed=5)
    for scale in (1.0, 0.3):
        res = unroll_accuracy(model, [(x, y)], (0, 2, 5), scale)
        with torch.no_grad(), eval_mode(model):
            h = stage_states(model, x)[-1][-1]
            states = [h] + list(iterate_last_block(model.stages[-1], h, 5, scale=scale))
        norms = [float(states[k].flatten(1).double().norm(dim=1).sum()) / 8 for k in (0, 2, 5)]
        assert list(res.state_norm) == norms
