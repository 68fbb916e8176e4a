"""Tests for itercourse.lipschitz, each against an independent oracle.

Oracles: the dense matrix of a small convolution (its Jacobian) and its SVD;
the FFT formula of Sedghi et al. 2019 for circular convolutions; the dense
Jacobian of a branch at one point; Banach's theorem on maps with a known
contraction factor.
"""
import pytest
import torch
from torch import nn

from itercourse.fixedpoint import FixedPointResult, fixed_point_iteration, relative_update_size, rms_over_examples
from itercourse.lipschitz import (apply_spectral_norm, branch_lipschitz_bound, branch_lipschitz_estimate,
                                  branch_lipschitz_report, invert_residual)
from itercourse.opnorm import (conv_adjoint, conv_apply, conv_geometry, conv_operator_norm, conv_operator_norm_fft,
                               reshaped_norm)
from itercourse.models import ResNetConfig, build_resnet
from itercourse.objectives import task_loss

torch.set_num_threads(1)

CONVS = [  # (Conv2d keyword arguments, input shape (C, H, W)); C_in = 2 throughout
    (dict(padding=1), (2, 6, 6)),
    (dict(padding=1, padding_mode="circular"), (2, 6, 6)),
    (dict(padding=1, stride=2), (2, 6, 6)),
    (dict(padding=1, stride=2), (2, 7, 7)),                      # needs output_padding in the adjoint
    (dict(padding=0, stride=2, padding_mode="circular"), (2, 7, 6)),
    (dict(padding=2, dilation=2, groups=2, padding_mode="reflect"), (2, 7, 5)),
    (dict(padding=1, stride=2, padding_mode="replicate"), (2, 6, 7)),
    (dict(padding="same"), (2, 5, 5)),
]


def dense_norm(conv: nn.Conv2d, shape) -> float:
    """Largest singular value of the conv's dense matrix, built from its Jacobian."""
    f = lambda x: conv._conv_forward(x, conv.weight, None)  # noqa: E731  (the linear part, no bias)
    jac = torch.autograd.functional.jacobian(f, torch.zeros(1, *shape, dtype=torch.float64))
    n_in = shape[0] * shape[1] * shape[2]
    return float(torch.linalg.matrix_norm(jac.reshape(-1, n_in), ord=2))


def make_conv(seed, c_out=4, k=3, **kw):
    torch.manual_seed(seed)
    return nn.Conv2d(2, c_out, k, **kw).double()


@pytest.mark.parametrize("kw,shape", CONVS)
def test_operator_norm_matches_dense_svd(kw, shape):
    conv = make_conv(0, **kw)
    assert conv_operator_norm(conv, shape) == pytest.approx(dense_norm(conv, shape), rel=1e-3)


@pytest.mark.parametrize("kw,shape", CONVS)
def test_adjoint_is_exact(kw, shape):
    conv = make_conv(1, **kw)
    g = conv_geometry(conv, shape)
    w = conv.weight.detach()
    x, y = torch.randn(3, *shape, dtype=torch.float64), torch.randn(3, *g.out_shape, dtype=torch.float64)
    lhs = (conv_apply(w, x, g) * y).sum()            # <A x, y>
    rhs = (x * conv_adjoint(w, y, g)).sum()          # <x, A^T y>
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-10)


@pytest.mark.parametrize("kw", [dict(), dict(groups=2), dict(dilation=2, padding=2)])
def test_fft_norm_matches_dense_and_power_iteration_for_circular_padding(kw):
    kw = {"padding": 1, **kw}
    conv = make_conv(2, padding_mode="circular", **kw)
    shape = (2, 8, 7)
    exact = conv_operator_norm_fft(conv, (8, 7))
    assert exact == pytest.approx(dense_norm(conv, shape), rel=1e-9)
    assert conv_operator_norm(conv, shape) == pytest.approx(exact, rel=1e-3)
    if not kw.get("groups") and not kw.get("dilation"):
        assert conv_operator_norm_fft(conv.weight, (8, 7)) == pytest.approx(exact, rel=1e-12)


def test_constant_kernel_gap_is_sqrt_of_kernel_area():
    # A spatially constant kernel: reshaped norm sqrt(Co*Ci*k*k), operator norm k*k*sqrt(Co*Ci) at frequency 0.
    w = torch.ones(3, 2, 3, 3)
    assert reshaped_norm(w) == pytest.approx(6 ** 0.5 * 3)
    assert conv_operator_norm_fft(w, (32, 32)) / reshaped_norm(w) == pytest.approx(3.0)


def test_he_init_gap_is_about_one_and_a_half_on_32x32():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    ratio = conv_operator_norm(conv, (16, 32, 32)) / reshaped_norm(conv.weight)
    assert 1.3 < ratio < 1.8


def test_errors_name_argument_value_and_allowed():
    conv = nn.Conv2d(2, 4, 3, padding=1)
    with pytest.raises(TypeError, match="conv=Linear.*Conv2d"):
        conv_operator_norm(nn.Linear(3, 3), (2, 8, 8))
    with pytest.raises(ValueError, match=r"input_shape=\(3, 8, 8\).*in_channels=2"):
        conv_operator_norm(conv, (3, 8, 8))
    with pytest.raises(ValueError, match="input_shape=.*does not fit"):
        conv_operator_norm(nn.Conv2d(2, 4, 5), (2, 3, 3))
    with pytest.raises(ValueError, match="input_shape=.*three positive integers"):
        conv_operator_norm(conv, (8, 8))
    with pytest.raises(ValueError, match="input_hw=.*smaller than the"):
        conv_operator_norm_fft(torch.ones(1, 1, 5, 5), (4, 4))
    with pytest.raises(ValueError, match="padding_mode='circular'"):
        conv_operator_norm_fft(conv, (8, 8))
    model = build_resnet(ResNetConfig(in_channels=1, widths=(4,), blocks=(1,), branch_norm="none", input_size=8))
    for bad in (0, -0.5):
        with pytest.raises(ValueError, match=f"coeff={bad}"):
            apply_spectral_norm(model, bad)
    with pytest.raises(ValueError, match="flavour='matrix'.*'operator', 'reshaped'"):
        apply_spectral_norm(model, 0.9, flavour="matrix")
    with pytest.raises(ValueError, match="spectral_coeff"):
        ResNetConfig(spectral_coeff=0.0)
    with pytest.raises(ValueError, match="branch_norm='none'"):
        build_resnet(ResNetConfig(in_channels=1, widths=(4,), blocks=(1,), spectral_coeff=0.9, input_size=8))
    with pytest.raises(TypeError, match="GELU is not supported"):
        branch_lipschitz_bound(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.GELU()), (2, 6, 6))


def bn_branch(seed):
    """BN-ReLU-conv-BN-ReLU-conv with non-trivial eval-mode statistics."""
    torch.manual_seed(seed)
    branch = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1),
                           nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1, bias=False)).double()
    for bn in (branch[0], branch[3]):
        bn.running_var.uniform_(0.2, 2.0)
        bn.running_mean.normal_()
        bn.weight.data.uniform_(-1.5, 1.5)
    return branch


def test_bound_is_the_product_of_layer_constants_and_tops_the_jacobian_estimate():
    branch, shape = bn_branch(0), (3, 6, 6)
    scale = lambda bn: float((bn.weight.detach().abs() / (bn.running_var + bn.eps).sqrt()).max())  # noqa: E731
    product = (scale(branch[0]) * conv_operator_norm(branch[2], shape) * scale(branch[3])
               * conv_operator_norm(branch[5], shape))
    bound = branch_lipschitz_bound(branch, shape)
    assert bound == pytest.approx(product, rel=1e-6)
    x = torch.randn(16, *shape, dtype=torch.float64)
    assert branch_lipschitz_estimate(branch, x) <= bound
    assert branch.training                                   # the mode is restored


def test_jacobian_estimate_matches_dense_jacobian_svd():
    branch, shape = bn_branch(1).eval(), (3, 5, 5)
    x = torch.randn(1, *shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(branch, x).reshape(3 * 25, 3 * 25)
    exact = float(torch.linalg.matrix_norm(jac, ord=2))
    assert branch_lipschitz_estimate(branch, x, n_iter=300) == pytest.approx(exact, rel=1e-3)


def small_config(**kw):
    base = dict(in_channels=1, num_classes=10, widths=(8, 16), blocks=(2, 2), branch_norm="none", input_size=16)
    return ResNetConfig(**{**base, **kw})


def train_steps(model, steps=15, lr=0.2, seed=0):
    """A few SGD steps on random images and multi-hot labels, large enough to move the weights."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 1, 16, 16, generator=gen)
    y = (torch.rand(16, 10, generator=gen) < 0.3).float()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(steps):
        loss = task_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return x


@pytest.mark.parametrize("share", [False, True])
def test_operator_flavour_keeps_every_branch_below_c_after_training(share):
    c = 0.8
    model = build_resnet(small_config(spectral_coeff=c, share=share), seed=0)
    x = train_steps(model)
    rows = branch_lipschitz_report(model, x)
    assert len(rows) == 4
    for row in rows:
        assert row["estimate"] <= c * 1.01, row
        assert row["bound"] <= c * 1.01, row                # the independent operator-norm product
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and hasattr(m, "parametrizations")]
    assert len(convs) == (8 if not share else 4)            # shared convs are constrained once


def test_unconstrained_branches_exceed_c():
    model = build_resnet(small_config(), seed=0)
    x = train_steps(model)
    assert max(r["estimate"] for r in branch_lipschitz_report(model, x)) > 1.0


def test_reshaped_flavour_bounds_the_matrix_not_the_operator():
    c = 0.81
    model = build_resnet(small_config(spectral_coeff=c, spectral_flavour="reshaped"), seed=0)
    train_steps(model, steps=3)
    conv = model.stages[0].blocks[0].residual[-1]
    assert reshaped_norm(conv.weight) == pytest.approx(c ** 0.5, rel=2e-2)   # each of the 2 convs gets sqrt(c)
    assert conv_operator_norm(conv, (8, 16, 16)) > 1.2 * c ** 0.5


def test_input_shape_probe_agrees_with_stage_input_shapes():
    a = build_resnet(small_config(), seed=0)
    b = build_resnet(small_config(), seed=0)
    apply_spectral_norm(a, 0.9)
    apply_spectral_norm(b, 0.9, input_shape=(1, 16, 16))
    caps = lambda m: [p.geometry.in_shape for mod in m.modules() if hasattr(mod, "parametrizations")  # noqa: E731
                      for p in mod.parametrizations.weight]
    assert caps(a) == caps(b) and caps(a)[-1] == (16, 8, 8)


def test_state_dict_round_trip_keeps_power_iteration_state():
    a = build_resnet(small_config(spectral_coeff=0.9), seed=0)
    x = train_steps(a, steps=2)
    b = build_resnet(small_config(spectral_coeff=0.9), seed=1)
    b.load_state_dict(a.state_dict())
    b.eval()
    torch.testing.assert_close(a(x), b(x))


def test_fixed_point_iteration_on_known_maps():
    contraction = fixed_point_iteration(lambda x: 0.5 * x + 1.0, torch.zeros(3))   # fixed point 2
    assert isinstance(contraction, FixedPointResult) and contraction.converged
    torch.testing.assert_close(contraction.x, torch.full((3,), 2.0))
    ratios = [b / a for a, b in zip(contraction.residuals, contraction.residuals[1:]) if a > 1e-5]
    assert all(r == pytest.approx(0.5, rel=1e-3) for r in ratios)
    expansion = fixed_point_iteration(lambda x: 2.0 * x + 1.0, torch.zeros(3), max_iter=50)
    assert not expansion.converged and expansion.residuals[-1] > 1e10


@pytest.mark.parametrize("q", [0.5, 0.75, 0.9])
def test_relative_update_size_of_a_linear_contraction_is_one_minus_q(q):
    """h -> q h moves every example by (1 - q) ||h||: u = 1 - q, exactly where q and 1 - q are powers of two."""
    h = torch.tensor([[1.0, 2.0, 2.0], [3.0, 0.0, 4.0], [0.0, 0.0, 8.0]], dtype=torch.float64)   # norms 3, 5, 8
    sq = lambda t: float(t.norm(dim=1).pow(2).sum())                                       # noqa: E731
    u = relative_update_size(rms_over_examples(sq(q * h - h), 3), rms_over_examples(sq(h), 3))
    assert u == 1 - q if q in (0.5, 0.75) else u == pytest.approx(1 - q, rel=1e-15)


def test_relative_update_size_is_a_ratio_of_rms_values_not_the_rms_of_ratios():
    """Two examples, one (norm 1) moved by 1, one (norm 3) not moved: sqrt(1 / 10), not sqrt(1 / 2)."""
    step = rms_over_examples(1.0 ** 2 + 0.0 ** 2, 2)
    state = rms_over_examples(1.0 ** 2 + 3.0 ** 2, 2)
    assert relative_update_size(step, state) == pytest.approx(0.1 ** 0.5, rel=1e-15)
    assert relative_update_size(0.0, 0.0) == 0.0 and relative_update_size(1.0, 0.0) == float("inf")
    assert rms_over_examples(float("inf"), 2) == float("inf")


def test_normalised_contractive_block_iterates_to_a_unique_fixed_point():
    # block(h) = s h + F(h) with Lip(F) <= c: Lip(block) <= s + c = 0.9 < 1, so Banach applies.
    model = build_resnet(small_config(spectral_coeff=0.8, shortcut="scaled", shortcut_scale=0.1), seed=0)
    train_steps(model, steps=5)
    block = model.stages[1].blocks[1]
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        runs = [fixed_point_iteration(block, 3 * torch.randn(4, 16, 8, 8, generator=gen), tol=1e-6, max_iter=300)
                for _ in range(2)]
    assert all(r.converged for r in runs)
    torch.testing.assert_close(runs[0].x, runs[1].x, atol=1e-4, rtol=1e-4)
    for r in runs:                                          # residuals shrink at least geometrically at 0.9
        big = [v for v in r.residuals if v > 1e-3 * r.residuals[0]]
        assert all(b <= 0.9 * a * 1.01 for a, b in zip(big, big[1:]))


def test_identity_shortcut_iteration_is_not_guaranteed_to_converge():
    # F(h) = c h has Lip(F) = c < 1, yet h + F(h) = (1 + c) h diverges: the bound alone is not Banach.
    conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = conv.weight[1, 1, 1, 1] = 0.5
    assert conv_operator_norm(conv, (2, 6, 6)) == pytest.approx(0.5, rel=1e-4)
    with torch.no_grad():
        run = fixed_point_iteration(lambda h: h + conv(h), torch.randn(1, 2, 6, 6), max_iter=40)
    assert not run.converged and run.residuals[-1] > 1e5 * run.residuals[0]


def test_inverse_of_a_normalised_residual_block_is_a_contraction():
    c = 0.9
    model = build_resnet(small_config(spectral_coeff=c), seed=0)
    train_steps(model, steps=5)
    block = model.stages[0].blocks[1]
    h = torch.randn(4, 8, 16, 16)
    with torch.no_grad():
        y = block(h)                                        # y = h + F(h)
    inv = invert_residual(block, y, tol=1e-7)
    assert inv.converged
    torch.testing.assert_close(inv.x, h, atol=1e-4, rtol=1e-4)
    big = [v for v in inv.residuals if v > 1e-4 * inv.residuals[0]]
    assert all(b <= c * a * 1.01 for a, b in zip(big, big[1:]))


def test_unroll_curves_stay_within_the_growth_bound():
    from itercourse.lipschitz import unroll_curves
    c = 0.5
    model = build_resnet(small_config(spectral_coeff=c), seed=0)
    x = train_steps(model, steps=3)
    curves = unroll_curves(model, x, extra=8)
    assert set(curves) == {"update", "growth", "turn"} and all(len(v) == 8 for v in curves.values())
    assert max(curves["growth"]) <= 1 + c + 1e-3                 # ||h + F(h)|| <= (1 + c) ||h|| as F(0) = 0
    assert max(curves["update"]) <= c + 1e-3                     # ||F(h)|| / ||h|| <= c
