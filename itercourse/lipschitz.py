"""Lipschitz constants of residual branches, and spectral normalisation that bounds them.

A residual block computes ``h_{t+1} = h_t + F(h_t)``. Its branch ``F`` is
``L``-Lipschitz when ``||F(a) - F(b)|| <= L ||a - b||`` for all ``a, b``. For a
chain of layers, ``Lip(F) <= prod_l Lip(layer_l)``; a ReLU contributes 1, an
eval-mode batch norm ``max_c |gamma_c| / sqrt(running_var_c + eps)``, and a
convolution its *operator norm* ``||conv||_2``: the largest singular value of
the linear map it applies to a whole feature map (Gouk et al. 2021).

Two ways to bound the convolutions (the chapter compares them):

- ``"reshaped"``: ``torch.nn.utils.parametrizations.spectral_norm`` divides the
  weight by the largest singular value of the (C_out, C_in*k*k) matrix
  (Miyato et al. 2018), then we scale it to the target. That matrix norm is not
  the conv's operator norm: the operator norm can be up to ``sqrt(k*k)`` times
  larger (spatially constant kernels), ~1.5x at He initialisation on 32x32.
- ``"operator"``: ``W <- W / max(1, sigma / c)`` with ``sigma`` the true operator
  norm, tracked by power iteration with ``conv2d`` and its exact adjoint
  ``conv_transpose2d`` (Behrmann et al. 2019, invertible ResNets; Gouk et al. 2021).

Design decisions (documented in chapter 5):

- A branch with ``m`` convolutions gets ``c ** (1 / m)`` per convolution, so the
  product bound is exactly ``Lip(F) <= c``.
- The branch must contain no batch norm (build with ``branch_norm="none"``):
  in training mode BN divides by batch statistics, so ``F`` of one example
  depends on the others and has no per-example Lipschitz constant; in eval mode
  its scale ``|gamma| / sqrt(var + eps)`` is learned and unbounded and would
  silently undo the constraint.
- Only the same-shape blocks of each stage are constrained. Transitions change
  the shape, run once and are never iterated, so a bound there buys no
  convergence.

``Lip(F) <= c < 1`` makes ``x -> x + F(x)`` invertible, its inverse computed by
the contraction ``x <- y - F(x)`` (Banach; Behrmann et al. 2019). It does *not*
make ``h -> h + F(h)`` a contraction (take ``F(h) = c h``): the bound only caps
each relative step, ``||F(h)|| <= ||F(0)|| + c ||h||``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import check_choice, check_positive, check_positive_int
from .fixedpoint import FixedPointResult, fixed_point_iteration, relative_update_size, rms_over_examples
from .opnorm import conv_adjoint, conv_apply, conv_geometry, conv_operator_norm, unit_vectors
from .walk import eval_mode, iterate_last_block, stage_states

FLAVOURS = ("operator", "reshaped")
_UNIT_LIP = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Identity, nn.Dropout)  # 1-Lipschitz (LeakyReLU if |slope| <= 1)
_ATOMIC = (nn.Conv2d, nn.Linear, nn.BatchNorm2d) + _UNIT_LIP


# ---------------------------------------------------------------------------------------------
# Lipschitz constant of a residual branch: an upper bound and a lower estimate
# ---------------------------------------------------------------------------------------------

def _branch_fn(block: nn.Module) -> Callable:
    """The residual function of ``block``: ``block.branch`` if it has one, else the module itself."""
    return block.branch if callable(getattr(block, "branch", None)) else block


def trace_branch(block: nn.Module, input_shape) -> list[tuple[nn.Module, tuple]]:
    """The layers the branch applies, in order, each with its input shape (C, H, W).

    Runs the branch once on zeros in eval mode and checks that it is a chain
    (each layer consumes the previous layer's output); raises ``TypeError`` for
    a layer whose Lipschitz constant we do not know or a branch that is not a chain.
    """
    shape = tuple(input_shape)
    f, calls, handles = _branch_fn(block), [], []

    def visit(m: nn.Module):             # hook every layer; containers are looked through
        if isinstance(m, _ATOMIC) or len(list(m.children())) == 0:
            handles.append(m.register_forward_hook(lambda mod, args, out: calls.append((mod, args[0], out))))
        else:
            for child in m.children():
                visit(child)

    visit(block)
    try:
        p = next(block.parameters(), None)
        x = torch.zeros(1, *shape, dtype=p.dtype if p is not None else torch.float32,
                        device=p.device if p is not None else "cpu")
        with eval_mode(block), torch.no_grad():
            out = f(x)
    finally:
        for h in handles:
            h.remove()
    prev = x
    for mod, inp, o in calls:
        if not isinstance(mod, _ATOMIC):
            raise TypeError(f"branch layer {type(mod).__name__} is not supported; allowed layers: "
                            f"{[c.__name__ for c in _ATOMIC]} inside nn.Sequential or other containers")
        if inp is not prev:
            raise TypeError(f"the branch of {type(block).__name__} is not a chain of layers: {mod} does not take "
                            "the previous layer's output, so the product of layer constants is not a bound")
        prev = o
    if out is not prev:
        raise TypeError(f"the branch of {type(block).__name__} does something after its last layer "
                        "(not a chain of layers)")
    return [(mod, tuple(inp.shape[1:])) for mod, inp, _ in calls]


def layer_lipschitz(layer: nn.Module, input_shape) -> float:
    """Lipschitz constant of one layer in eval mode (conv: operator norm on ``input_shape``; BN: its largest scale)."""
    if isinstance(layer, nn.Conv2d):
        return conv_operator_norm(layer, input_shape)
    if isinstance(layer, nn.Linear):
        return float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))
    if isinstance(layer, nn.BatchNorm2d):      # y = gamma (x - mean) / sqrt(var + eps) + beta, per channel
        if layer.running_var is None:
            raise TypeError(f"{layer} keeps no running statistics, so it has no eval-mode Lipschitz constant")
        scale = torch.rsqrt(layer.running_var.detach().double() + layer.eps)
        if layer.weight is not None:
            scale = scale * layer.weight.detach().double().abs()
        return float(scale.max())
    if isinstance(layer, nn.LeakyReLU):
        return max(1.0, abs(layer.negative_slope))
    if isinstance(layer, _UNIT_LIP):
        return 1.0
    raise TypeError(f"layer={type(layer).__name__} is not supported; allowed: {[c.__name__ for c in _ATOMIC]}")


def branch_lipschitz_bound(block: nn.Module, input_shape) -> float:
    """Upper bound on ``Lip(F)`` in eval mode: ``prod_l Lip(layer_l)`` over the branch's chain of layers.

    ``||conv||_2`` by :func:`conv_operator_norm`, BN by ``max |gamma| / sqrt(running_var + eps)``,
    ReLU by 1. ``input_shape`` is the (C, H, W) of the block's input.
    """
    bound = 1.0
    for layer, shape in trace_branch(block, input_shape):
        bound *= layer_lipschitz(layer, shape)
    return bound


def branch_lipschitz_estimate(block: nn.Module, x: torch.Tensor, *, n_iter: int = 30, seed: int = 0,
                              per_example: bool = False):
    """Lower estimate of ``Lip(F)``: ``max_b ||J_F(x_b)||_2`` by power iteration on ``J^T J`` (eval mode).

    ``J^T u`` by ``torch.func.vjp`` and ``J v`` by the vjp of that linear map; one power
    iteration per example of the batch ``x`` (B, C, H, W). Any Jacobian norm is
    at most the Lipschitz constant, so this is a lower bound on it.
    """
    check_positive_int("n_iter", n_iter)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a (B, C, H, W) batch of block inputs; got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    f = _branch_fn(block)
    x = x.detach()
    gen = torch.Generator().manual_seed(seed)
    v = unit_vectors(torch.randn(x.shape, generator=gen).to(x))         # (B, C, H, W)
    with eval_mode(block):
        y, vjp_fn = torch.func.vjp(f, x)                           # u -> J^T u
        # J v as the adjoint of the linear map u -> J^T u (reverse mode twice, no forward-mode AD)
        _, jvp_fn = torch.func.vjp(lambda u: vjp_fn(u)[0], torch.zeros_like(y))
        for _ in range(n_iter):
            v = unit_vectors(vjp_fn(jvp_fn(v)[0])[0].detach())          # v <- J^T J v / ||J^T J v||
        jv = jvp_fn(v)[0]
    sigma = jv.detach().flatten(1).norm(dim=1)                    # (B,)
    return sigma if per_example else float(sigma.max())


@torch.no_grad()
def block_map_growth(block: nn.Module, h: torch.Tensor, *, n_iter: int = 20, seed: int = 0) -> dict:
    """Growth rate of the iterated block map ``h -> B(h) = h + F(h)`` near the states ``h``.

    Power iteration on the Jacobian ``J = I + J_F`` itself (not ``J^T J``):
    ``v <- J v / ||J v||`` per example, and the geometric mean of ``||J v||``
    over the second half of the ``n_iter`` steps, which tends to the spectral
    radius of ``J`` (the asymptotic growth per step of small differences when
    the block is iterated near ``h``). Above 1, nearby trajectories separate:
    the block map is not a contraction there, whatever ``Lip(F)`` is (for
    ``F(h) = c h``, ``J = (1 + c) I``). Returns ``median`` and ``max`` over the
    examples of the batch ``h`` (B, ...). ``J v`` by reverse mode twice, as in
    :func:`branch_lipschitz_estimate`. A block with a ``state_channels``
    attribute carries its input in the channels after the first
    ``state_channels`` (input injection): only the state part is perturbed and
    measured, the Jacobian of the step ``h -> h'`` at fixed input.
    """
    check_positive_int("n_iter", n_iter)
    if not isinstance(h, torch.Tensor) or h.dim() < 2 or not h.is_floating_point():
        raise ValueError(f"h must be a floating-point batch of states (B, ...); got "
                         f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}")
    h = h.detach()
    k = getattr(block, "state_channels", None)       # input-injected blocks: only h[:, :k] is iterated
    mask = torch.zeros_like(h)
    mask[:, :k] = 1.0                                # (k = None: every channel)
    gen = torch.Generator().manual_seed(seed)
    v = unit_vectors(torch.randn(h.shape, generator=gen).to(h) * mask)
    logs = []
    with eval_mode(block), torch.enable_grad():
        y, vjp_fn = torch.func.vjp(block, h)                            # u -> J^T u
        _, jvp_fn = torch.func.vjp(lambda u: vjp_fn(u)[0], torch.zeros_like(y))
        for _ in range(n_iter):
            w = jvp_fn(v)[0].detach() * mask                            # J v, on the iterated part
            logs.append(w.flatten(1).norm(dim=1).clamp_min(1e-30).log())
            v = unit_vectors(w)
    late = torch.stack(logs[n_iter // 2:]).mean(0).exp()                # (B,) geometric-mean growth
    return {"median": float(late.median()), "max": float(late.max())}


# ---------------------------------------------------------------------------------------------
# Spectral normalisation of residual branches
# ---------------------------------------------------------------------------------------------

class OperatorNormCap(nn.Module):
    """Parametrization ``W -> W / max(1, sigma(W) / coeff)``, ``sigma`` the conv's operator norm.

    ``sigma = u^T A(W) v`` from persistent power-iteration vectors ``v`` (input
    shaped) and ``u`` (output shaped), advanced ``n_power_iterations`` steps on
    every training-mode forward, as in Behrmann et al. 2019 (i-ResNet, Sec. 3)
    and Gouk et al. 2021; gradients flow through ``A(W)`` in ``sigma``. A
    lagging estimate is a *lower* bound, so during fast training the true norm
    can overshoot ``c`` a little; in eval mode the iteration is therefore run to
    convergence once for every new weight (the weight's version counter tells),
    which makes ``||conv||_2 <= c`` hold (to the iteration's tolerance) whenever
    the network is evaluated, iterated or measured.
    """

    def __init__(self, conv: nn.Conv2d, input_shape, coeff: float, *, n_power_iterations: int = 1,
                 n_init_iterations: int = 50, seed: int = 0):
        super().__init__()
        check_positive("coeff", coeff)
        check_positive_int("n_power_iterations", n_power_iterations)
        check_positive_int("n_init_iterations", n_init_iterations)
        self.geometry = conv_geometry(conv, input_shape)
        self.coeff, self.n_power_iterations = float(coeff), n_power_iterations
        w = conv.weight.detach()
        gen = torch.Generator().manual_seed(seed)
        v = unit_vectors(torch.randn(1, *self.geometry.in_shape, generator=gen).to(w))   # (1, C_in, H, W)
        with torch.no_grad():
            for _ in range(n_init_iterations):
                u = unit_vectors(conv_apply(w, v, self.geometry))                      # (1, C_out, H', W')
                v = unit_vectors(conv_adjoint(w, u, self.geometry))
        self.register_buffer("_u", u)
        self.register_buffer("_v", v)
        self._seen = None         # (storage, version) of the weight the buffers last converged for

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """The current estimate ``u^T A(W) v`` of ``||A(W)||_2`` (a lower bound that tightens with steps)."""
        u, v = self._u.clone(), self._v.clone()   # clones: the buffers change in place on the next forward
        return (u * conv_apply(weight, v, self.geometry)).sum()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):      # sigma in full precision under AMP
            if self.training:
                self._power_steps(weight, self.n_power_iterations)
                self._seen = None
            elif self._seen != (weight.data_ptr(), weight._version):  # eval: converge once per new weight
                self.refresh(weight)
            return weight / torch.clamp(self.sigma(weight) / self.coeff, min=1.0)   # W / max(1, sigma / c)

    @torch.no_grad()
    def _power_steps(self, weight: torch.Tensor, n: int) -> None:
        """``n`` power-iteration steps on the buffers: ``u <- A v / ||A v||``, ``v <- A^T u / ||A^T u||``."""
        for _ in range(n):
            self._u.copy_(unit_vectors(conv_apply(weight, self._v, self.geometry)))
            self._v.copy_(unit_vectors(conv_adjoint(weight, self._u, self.geometry)))

    @torch.no_grad()
    def refresh(self, weight: torch.Tensor, *, n_iter: int = 300, n_random: int = 3, tol: float = 1e-5,
                seed: int = 0) -> None:
        """Power iteration to convergence for ``weight`` (the unconstrained one) from the stored vector and
        ``n_random`` random ones, keeping the best: a stored vector can sit on a runner-up singular pair.
        Stops when no vector's estimate changes by more than ``tol`` (relative) in a step."""
        gen = torch.Generator().manual_seed(seed)
        v = torch.cat([self._v, torch.randn(n_random, *self._v.shape[1:], generator=gen).to(self._v)])
        v, sigma = unit_vectors(v), torch.zeros(1 + n_random, dtype=v.dtype, device=v.device)
        for _ in range(n_iter):                                          # v: (1 + n_random, C_in, H, W)
            u = conv_apply(weight, v, self.geometry)
            new = u.flatten(1).norm(dim=1)
            v = unit_vectors(conv_adjoint(weight, u, self.geometry))
            if bool(((new - sigma).abs() <= tol * new).all()):
                break
            sigma = new
        u = conv_apply(weight, v, self.geometry)
        best = int(u.flatten(1).norm(dim=1).argmax())
        self._v.copy_(v[best:best + 1])
        self._u.copy_(unit_vectors(u[best:best + 1]))
        self._seen = (weight.data_ptr(), weight._version)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff:.4g}, in_shape={self.geometry.in_shape}"


class Scale(nn.Module):
    """Parametrization ``W -> coeff * W`` (stacked on torch's spectral_norm to reach a target other than 1)."""

    def __init__(self, coeff: float):
        super().__init__()
        check_positive("coeff", coeff)
        self.coeff = float(coeff)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.coeff * weight

    def extra_repr(self) -> str:
        return f"coeff={self.coeff:.4g}"


def spectral_normalise_conv(conv: nn.Conv2d, input_shape, coeff: float, flavour: str = "operator") -> nn.Conv2d:
    """Constrain one conv in place: ``"operator"`` caps ``||conv||_2`` at ``coeff`` on ``input_shape``;
    ``"reshaped"`` sets the reshaped-matrix norm to ``coeff`` (torch's spectral_norm, then ``Scale``)."""
    check_positive("coeff", coeff)
    check_choice("flavour", flavour, FLAVOURS)
    if flavour == "operator":
        parametrize.register_parametrization(conv, "weight", OperatorNormCap(conv, input_shape, coeff))
    else:
        conv_geometry(conv, input_shape)          # same checks as the operator flavour
        torch.nn.utils.parametrizations.spectral_norm(conv)
        parametrize.register_parametrization(conv, "weight", Scale(coeff))
    return conv


def _block_input_shapes(model: nn.Module, input_shape) -> list[tuple]:
    """(C, H, W) of the blocks' input in every stage, from ``model.stage_input_shapes`` or a probe forward."""
    if input_shape is None:
        shapes = getattr(model, "stage_input_shapes", None)
        if shapes is None:
            raise ValueError("input_shape=None but the model has no stage_input_shapes; pass the image shape "
                             "input_shape=(C, H, W)")
        return [tuple(s) for s in shapes]
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3):
        raise ValueError(f"input_shape={input_shape!r} must be the (C, H, W) of the model's input images")
    seen: dict[int, tuple] = {}

    def record(s):
        def hook(mod, args):
            seen.setdefault(s, tuple(args[0].shape[1:]))      # returns None: the input is left alone
        return hook
    hooks = [stage.blocks[0].register_forward_pre_hook(record(s)) for s, stage in enumerate(model.stages)]
    p = next(model.parameters())
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, *input_shape, dtype=p.dtype, device=p.device))
    finally:
        for h in hooks:
            h.remove()
    return [seen[s] for s in range(len(model.stages))]


def apply_spectral_norm(model: nn.Module, coeff: float, flavour: str = "operator", input_shape=None) -> nn.Module:
    """Bound every same-shape block's branch of ``model`` by ``Lip(F) <= coeff``, in place.

    Each of the ``m`` convs of a branch is normalised to ``coeff ** (1 / m)``,
    so ``Lip(F) <= prod ||conv_j||_2 <= coeff`` (``"operator"``; ``"reshaped"``
    bounds the reshaped matrices instead, which is not a bound on ``Lip(F)``).
    Walks ``model.stages[s].blocks[i]``; transitions are left free. Branches
    must have no batch norm (``ResNetConfig(branch_norm="none")``).
    ``input_shape``: the model's image shape (C, H, W); default ``model.stage_input_shapes``.
    """
    check_positive("coeff", coeff)
    check_choice("flavour", flavour, FLAVOURS)
    if not hasattr(model, "stages"):
        raise TypeError(f"model={type(model).__name__} has no .stages; pass a model from itercourse.build_resnet")
    shapes, done = _block_input_shapes(model, input_shape), set()
    for s, stage in enumerate(model.stages):
        for i, block in enumerate(stage.blocks):
            layers = trace_branch(block, shapes[s])
            norms = [m for m, _ in layers if isinstance(m, nn.BatchNorm2d)]
            if norms:
                raise ValueError(f"stage {s} block {i} has batch norm inside its residual branch, whose scale "
                                 "|gamma|/sqrt(var+eps) is unbounded; spectral_coeff needs branch_norm='none' "
                                 "(ResNetConfig(branch_norm='none', spectral_coeff=...))")
            convs = [(m, shape) for m, shape in layers if isinstance(m, nn.Conv2d)]
            if not convs:
                raise ValueError(f"stage {s} block {i} has no convolution in its branch to normalise")
            for conv, shape in convs:
                if id(conv) not in done:             # shared weights: one constraint per conv module
                    spectral_normalise_conv(conv, shape, coeff ** (1.0 / len(convs)), flavour)
                    done.add(id(conv))
    return model


def branch_lipschitz_report(model: nn.Module, x: torch.Tensor | None = None, *, n_iter: int = 30) -> list[dict]:
    """Per block: the upper bound on ``Lip(F)`` and, given images ``x``, the Jacobian estimate at its inputs.

    The bound of a convolution depends on the size of its input, so with ``x`` it is computed for the
    states those images give (not for ``input_size``), and each row says the shape (``input_shape``).
    """
    shapes, rows = _block_input_shapes(model, None), []
    states = None
    if x is not None:
        with eval_mode(model), torch.no_grad():
            states = stage_states(model, x)
        shapes = [tuple(st[0].shape[1:]) for st in states]        # the (C, H, W) the blocks really saw
    for s, stage in enumerate(model.stages):
        for i, block in enumerate(stage.blocks):
            row = {"stage": s, "block": i, "bound": branch_lipschitz_bound(block, shapes[s])}
            if x is not None:
                row["input_shape"] = list(shapes[s])
            if states is not None:
                row["estimate"] = branch_lipschitz_estimate(block, states[s][i], n_iter=n_iter)
            rows.append(row)
    return rows


@torch.no_grad()
def unroll_curves(model, x, *, extra: int, stage: int = -1) -> dict:
    """Iterate a stage's last block ``extra`` times beyond its trained depth and record how the state moves.

        h_{t+1} = B_{n-1}(h_t),  t = 0 .. extra - 1,  h_0 = the stage's trained output

    Returns per step t: ``update`` = the relative update size
    ``||h_{t+1} - h_t||_rms / ||h_t||_rms``, root mean squares over the examples
    (:func:`itercourse.fixedpoint.relative_update_size`, the convergence index's
    ``update_sizes``), ``growth`` = mean ||h_{t+1}|| / ||h_t||, and ``turn`` = mean
    1 - cos(h_t, h_{t+1}) (how much the state's direction still changes); NaN once
    a state has collapsed to zero (1e-20 of the start) or overflowed.
    The iteration is :func:`itercourse.walk.iterate_last_block` (eval mode).
    """
    s = stage % len(model.stages)
    with eval_mode(model):
        h = stage_states(model, x, upto=s)[s][-1]                           # h_n, the trained output
        traj = [h, *iterate_last_block(model.stages[s], h, extra)]         # h_n .. h_{n+extra}
    flat = [t.flatten(1).double() for t in traj]                        # (B, D) each
    norms = [f.norm(dim=1) for f in flat]
    floor = 1e-20 * float(norms[0].max())    # below this the state is zero to float32 precision: stop the curves
    count = len(norms[0])
    update, growth, turn = [], [], []
    for a, b, na, nb in zip(flat, flat[1:], norms, norms[1:]):
        if float(na.min()) < floor:
            update.append(float("nan")), growth.append(float("nan")), turn.append(float("nan"))
            continue
        v = rms_over_examples(float((b - a).norm(dim=1).pow(2).sum()), count)     # ||h_{t+1} - h_t||_rms
        r = rms_over_examples(float(na.pow(2).sum()), count)                     # ||h_t||_rms
        update.append(relative_update_size(v, r) if math.isfinite(r) else float("nan"))
        growth.append(float((nb / na).mean()))
        turn.append(float((1 - (a * b).sum(1) / (na * nb)).mean()))
    return {"update": update, "growth": growth, "turn": turn}


# ---------------------------------------------------------------------------------------------
# Inverting a residual block by fixed-point iteration (Banach)
# ---------------------------------------------------------------------------------------------

def invert_residual(block: nn.Module, y: torch.Tensor, *, tol: float = 1e-6, max_iter: int = 500) -> FixedPointResult:
    """Solve ``x + F(x) = y`` by the contraction ``x <- y - F(x)``, ``x_0 = y`` (eval mode, no grad).

    Converges whenever ``Lip(F) < 1``, at rate ``Lip(F)`` (Behrmann et al. 2019, Alg. 1).
    """
    f = _branch_fn(block)
    with eval_mode(block), torch.no_grad():
        return fixed_point_iteration(lambda x: y - f(x), y, tol=tol, max_iter=max_iter)
