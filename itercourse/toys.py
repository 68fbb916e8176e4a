"""Toy residual networks whose blocks are known maps: systems with known answers for the metrics.

The main toy is gradient descent on a quadratic written as a residual network:

    L(h) = ½ hᵀ A h,   ∇L(h) = A h,   F(h) = -η A h,   h_{i+1} = h_i + F(h_i) = (I - η A) h_i

Every block is one exact gradient-descent step on ``L``, so by construction
``cos(F(h_i), ∇L(h_i)) = -1`` and ``||F(h_i)|| / ||h_i|| = η ||A h_i|| / ||h_i||``.
The network's loss is ``L`` at its output, ``L(h_n)``. The gradient that
backpropagation delivers to ``h_i`` is the gradient of that final loss,

    ∂L(h_n)/∂h_i = (M^{n-i})ᵀ A M^{n-i} h_i = A M^{2(n-i)} h_i,   M = I - η A,

which is parallel to ``∇L(h_i) = A h_i`` when ``A`` has a single non-zero
eigenvalue (``A = a I``, or ``a`` times a projection) or ``h_i`` lies in one
eigenspace: then the measured cosine is exactly -1. With several eigenvalues
the later steps shrink the stiff directions, the backpropagated gradient
turns towards the flat ones and the cosine is negative but above -1;
:func:`expected_alignment` gives its closed form. Chapter 2 uses both cases.

The networks follow the course's model contract (``stem``, ``stages[s].blocks``,
``readout``, ``forward(x, schedules)``), so every metric of
:mod:`itercourse.refinement` (and of chapter 6's indices) runs on them.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import check_choice, check_positive, check_positive_int
from .walk import Stage, stage_states


def _check_matrix(A) -> torch.Tensor:
    if not isinstance(A, torch.Tensor) or A.dim() != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A must be a square, non-empty 2-d tensor (d, d); got "
                         f"{tuple(A.shape) if isinstance(A, torch.Tensor) else type(A).__name__}")
    if not A.is_floating_point():
        raise TypeError(f"A must be a floating-point tensor; got dtype {A.dtype}")
    if not torch.allclose(A, A.T, rtol=1e-6, atol=1e-9 * float(A.abs().max().clamp_min(1))):
        raise ValueError("A must be symmetric (A == A.T): L(h) = ½ hᵀAh only sees the symmetric part, "
                         "so pass (A + A.T) / 2")
    return A.detach().clone()


def quadratic_loss(h: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Per example ``L(h) = ½ hᵀ A h``.  # (B, d) -> (B,)"""
    return 0.5 * ((h @ A) * h).sum(1)


class QuadraticGradientBlock(nn.Module):
    """A residual block that is one gradient-descent step on ``L(h) = ½ hᵀAh``: ``h + F(h)``, ``F(h) = -η A h``."""


    def __init__(self, A: nn.Parameter, eta: float):
        super().__init__()
        self.A = A                     # (d, d) symmetric, shared with the network (not trained)
        self.eta = float(eta)          # step size η

    def branch(self, h: torch.Tensor) -> torch.Tensor:
        """``F(h) = -η A h``.  # (B, d) -> (B, d); hA = (Ah)ᵀ per row because A is symmetric"""
        return -self.eta * (h @ self.A)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.branch(h)

    def update(self, h: torch.Tensor) -> torch.Tensor:
        """The step ``block(h) - h = F(h)``."""
        return self(h) - h

    def extra_repr(self) -> str:
        return f"d={self.A.shape[0]}, eta={self.eta}"


class QuadraticGradientBlocks(nn.Module):
    """A one-stage residual "network" of ``n`` gradient steps on ``½ hᵀAh``, with the course's model contract.

    ``stem`` and ``readout`` are identities, so ``model(h0)`` is the state
    after the blocks and ``model.loss(model(h0))`` is ``L(h_n)`` summed over
    the batch: pass ``loss_fn=model.loss`` to the refinement metrics.
    """

    def __init__(self, A: torch.Tensor, eta: float, n_blocks: int, share: bool = False):
        super().__init__()
        A = _check_matrix(A)
        check_positive("eta", eta)
        check_positive_int("n_blocks", n_blocks)
        # A parameter that is not trained, so the usual `next(model.parameters())` finds the device.
        self.A = nn.Parameter(A, requires_grad=False)
        self.eta, self.share = float(eta), share
        first = QuadraticGradientBlock(self.A, eta)
        blocks = [first] * n_blocks if share else [first] + [QuadraticGradientBlock(self.A, eta)
                                                              for _ in range(n_blocks - 1)]
        self.stem = nn.Identity()
        self.stages = nn.ModuleList([Stage(None, blocks)])

    def _check_input(self, h: torch.Tensor) -> None:
        d = self.A.shape[0]
        if not isinstance(h, torch.Tensor) or h.dim() != 2 or h.shape[1] != d:
            raise ValueError(f"h must be a batch of {d}-vectors, shape (B, {d}); got "
                             f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}")

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """The identity: the "logits" are the final state itself."""
        return h

    def forward(self, h: torch.Tensor, schedules: dict | None = None) -> torch.Tensor:
        self._check_input(h)
        return self.readout(self.stages[0](h, (schedules or {}).get(0)))

    def loss(self, out: torch.Tensor, y=None, reduction: str = "sum") -> torch.Tensor:
        """``L(h) = ½ hᵀAh`` summed (or averaged, or per example) over the batch; ``y`` is ignored."""
        per = quadratic_loss(out, self.A)
        return per.sum() if reduction == "sum" else per.mean() if reduction == "mean" else per

    def stage_states(self, h: torch.Tensor, schedules: dict | None = None) -> list[list[torch.Tensor]]:
        """``[[h_0, h_1, ..., h_n]]``: the one stage's block-boundary states."""
        self._check_input(h)
        return stage_states(self, h, schedules)

    def trajectory(self, h: torch.Tensor) -> list[torch.Tensor]:
        """``[h_0, ..., h_n]``."""
        return self.stage_states(h)[0]


def _powers(A: torch.Tensor, eta: float, n: int) -> list[torch.Tensor]:
    M = torch.eye(A.shape[0], dtype=A.dtype, device=A.device) - eta * A
    out = [torch.eye(A.shape[0], dtype=A.dtype, device=A.device)]
    for _ in range(2 * n):
        out.append(out[-1] @ M)
    return out                                                   # M^0 .. M^{2n}


@torch.no_grad()
def expected_alignment(A: torch.Tensor, eta: float, n_blocks: int, h0: torch.Tensor) -> list[float]:
    """Closed form of the measured cosine per block, averaged over the rows of ``h0``.

        h_i = M^i h_0,   g_i = ∂L(h_n)/∂h_i = A M^{2(n-i)} h_i,   cos_i = mean_b <-ηA h_i, g_i> / (||ηA h_i|| ||g_i||)
    """
    A = _check_matrix(A)
    P = _powers(A, eta, n_blocks)
    out = []
    for i in range(n_blocks):
        h = h0 @ P[i]                                            # (B, d), rows h_i (M symmetric)
        step = -eta * (h @ A)
        g = (h @ P[2 * (n_blocks - i)]) @ A
        cos = (step * g).sum(1) / (step.norm(dim=1) * g.norm(dim=1))
        out.append(cos.mean().item())
    return out


@torch.no_grad()
def expected_norm_ratios(A: torch.Tensor, eta: float, n_blocks: int, h0: torch.Tensor) -> list[float]:
    """Closed form of the norm ratio per block: ``mean_b η ||A h_i|| / ||h_i||`` with ``h_i = M^i h_0``."""
    A = _check_matrix(A)
    P = _powers(A, eta, n_blocks)
    out = []
    for i in range(n_blocks):
        h = h0 @ P[i]
        out.append((eta * (h @ A).norm(dim=1) / h.norm(dim=1)).mean().item())
    return out


# =============================================================================================
# Validation systems for the indices of iterative convergence (chapter 6, itercourse.indices):
# classifiers whose blocks are known maps, so that the recurrence, convergence and divergence
# indices can be checked against known answers.
# =============================================================================================

class TargetedGradientBlock(nn.Module):
    """One gradient step on ``L(h) = ½ (h - c)ᵀ A (h - c)``, the target ``c`` carried in the stream.

    The state is ``z = [h, c]`` (B, 2d); the block updates ``h`` and passes ``c`` on:

        h <- h - η A (h - c),   i.e.   h - c <- (I - η A)(h - c)

    ``0 < η λ < 2`` for every eigenvalue λ of A: a contraction to the minimiser
    ``c`` (rate ``max |1 - η λ|``); ``η < 0``: gradient *ascent*, an expanding
    map that pushes ``h`` away from ``c`` (rate ``1 + |η| λ_max``).
    """


    def __init__(self, A: torch.Tensor, eta: float):
        super().__init__()
        self.A = A                     # (d, d) symmetric, shared with the network (not trained)
        self.eta = float(eta)          # step size η (negative: ascent)

    def branch(self, z: torch.Tensor) -> torch.Tensor:
        """``F(z) = [-η A (h - c), 0]``.  # (B, 2d) -> (B, 2d)"""
        h, c = z.chunk(2, dim=1)
        return torch.cat([-self.eta * ((h - c) @ self.A), torch.zeros_like(c)], 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.branch(z)

    def update(self, z: torch.Tensor) -> torch.Tensor:
        return self(z) - z


class RandomLinearBlock(nn.Module):
    """An independent random residual step ``h <- h + W h``, ``W_kl ~ N(0, s² / d)``; ``c`` passes unchanged."""


    def __init__(self, W: torch.Tensor):
        super().__init__()
        self.W = nn.Parameter(W, requires_grad=False)   # (d, d), drawn once, never trained

    def branch(self, z: torch.Tensor) -> torch.Tensor:
        h, c = z.chunk(2, dim=1)
        return torch.cat([h @ self.W.T, torch.zeros_like(c)], 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.branch(z)

    def update(self, z: torch.Tensor) -> torch.Tensor:
        return self(z) - z


class ProjectionBlock(nn.Module):
    """An exact gradient step of size 1 on ``½ ||P (h - c)||²``, ``P`` an orthogonal projection: ``h <- h - P (h - c)``.

    It removes the error ``h - c`` inside the subspace of ``P`` and leaves the
    rest alone; applying it twice is the same as once (``P² = P``).
    """


    def __init__(self, P: torch.Tensor):
        super().__init__()
        self.P = nn.Parameter(P, requires_grad=False)   # (d, d) symmetric, P @ P = P

    def branch(self, z: torch.Tensor) -> torch.Tensor:
        h, c = z.chunk(2, dim=1)
        return torch.cat([-(h - c) @ self.P, torch.zeros_like(c)], 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.branch(z)

    def update(self, z: torch.Tensor) -> torch.Tensor:
        return self(z) - z


class PrototypeClassifier(nn.Module):
    """A one-stage residual classifier of Gaussian prototype data, with the course's model contract.

    Task: ``x = mu_y + noise * eps``, ``y`` uniform over the classes,
    ``eps ~ N(0, I_d)``. Stem: ``z_0 = [x + b, x]``, a start ``h_0`` that is
    off by a fixed offset ``b``, and the observation ``c = x`` carried along.
    Read-out: nearest class mean on ``h``,

        logits_k = (<h, m_k> - ½ ||m_k||²) / noise²,

    which for ``m_k = mu_k`` and ``h = x`` is the Bayes posterior. For the
    gradient-step blocks the fixed point is ``h* = x``, so the read-out is
    best at the fixed point and performance measures how close ``h`` is to it.
    """

    def __init__(self, prototypes: torch.Tensor, offset: torch.Tensor, noise: float, blocks: list[nn.Module],
                 means: torch.Tensor | None = None):
        super().__init__()
        check_positive("noise", noise)
        self.register_buffer("prototypes", prototypes)                                 # (K, d) mu_k
        self.register_buffer("offset", offset)                                         # (d,) b
        self.register_buffer("means", prototypes.clone() if means is None else means)  # (K, d) m_k
        self.noise = float(noise)
        self.dim, self.num_classes = prototypes.shape[1], prototypes.shape[0]
        self.stages = nn.ModuleList([Stage(None, blocks)])

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be a batch of {self.dim}-vectors, shape (B, {self.dim}); got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``z_0 = [x + b, x]``.  # (B, d) -> (B, 2d)"""
        return torch.cat([x + self.offset, x], 1)

    def readout(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-class-mean logits of the ``h`` half of the state.  # (B, 2d) -> (B, K)"""
        h = z[:, :self.dim]
        return (h @ self.means.T - 0.5 * self.means.pow(2).sum(1)) / self.noise ** 2

    def forward(self, x: torch.Tensor, schedules: dict | None = None) -> torch.Tensor:
        self._check_input(x)
        return self.readout(self.stages[0](self.stem(x), (schedules or {}).get(0)))

    def stage_states(self, x: torch.Tensor, schedules: dict | None = None) -> list[list[torch.Tensor]]:
        self._check_input(x)
        return stage_states(self, x, schedules)

    def trajectory(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.stage_states(x)[0]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` labelled examples ``(x (n, d), y (n,))`` of the prototype task."""
        check_positive_int("n", n)
        gen = torch.Generator().manual_seed(seed)
        y = torch.randint(self.num_classes, (n,), generator=gen)
        x = self.prototypes.cpu()[y] + self.noise * torch.randn(n, self.dim, generator=gen)
        return x.to(self.prototypes.device), y.to(self.prototypes.device)

    def loader(self, n: int, batch_size: int = 250, seed: int = 0) -> list:
        """The examples of :meth:`sample` as a list of ``(x, y)`` batches."""
        check_positive_int("batch_size", batch_size)
        x, y = self.sample(n, seed)
        return [(x[k:k + batch_size], y[k:k + batch_size]) for k in range(0, n, batch_size)]


VALIDATION_SYSTEMS = ("contract", "expand", "random", "specialists")


def make_validation_system(kind: str, n_blocks: int = 4, *, dim: int = 16, classes: int = 4, noise: float = 1.5,
                           offset: float = 1.0, eta: float | None = None, scale: float = 0.3,
                           share: bool = False, seed: int = 0) -> PrototypeClassifier:
    """A prototype classifier whose ``n_blocks`` blocks are known maps (chapter 6's systems with known answers).

    ``kind``:

    - ``"contract"``: identical gradient-descent steps on the strongly convex
      ``½ (h - x)ᵀ A (h - x)``, eigenvalues of A spread over [0.5, 1.5], η = 0.5
      (rates 0.25-0.75): recurrent and convergent, the minimiser ``h* = x`` is
      where the read-out is best;
    - ``"expand"``: the same quadratic with gradient *ascent*, η = -0.35
      (rates 1.175-1.525): recurrent, but ``h`` drifts away from ``x`` at every
      step; harmless at the trained depth, ruinous at 2-4 times that depth;
    - ``"random"``: independent random linear steps ``h <- h + W_i h``,
      ``W_i ~ N(0, scale² / d)``: not recurrent; the read-out's class means
      are fitted on the intact network's final states (a "trained" read-out);
    - ``"specialists"``: block i is an exact gradient step on
      ``½ ||P_i (h - x)||²`` with ``P_i`` the projection on the i-th of
      ``n_blocks`` orthogonal subspaces (a random basis split in groups): every
      block fixes its own part of the offset, so the blocks are not
      interchangeable, yet the intact network lands exactly on ``h* = x``.

    ``share=True`` makes the quadratic blocks one module applied ``n_blocks``
    times; the maps are the same either way. Everything is drawn from ``seed``.
    """
    check_choice("kind", kind, VALIDATION_SYSTEMS)
    check_positive_int("n_blocks", n_blocks)
    check_positive_int("dim", dim)
    check_positive_int("classes", classes)
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(classes, dim, generator=gen)                      # (K, d)
    direction = torch.randn(dim, generator=gen)
    b = offset * direction / direction.norm()                                  # (d,) the stem's offset
    if kind == "random":
        Ws = [scale / dim ** 0.5 * torch.randn(dim, dim, generator=gen) for _ in range(n_blocks)]
        model = PrototypeClassifier(prototypes, b, noise, [RandomLinearBlock(W) for W in Ws])
        x, y = model.sample(4000, seed=seed + 1)
        with torch.no_grad():
            h = model.stages[0](model.stem(x))[:, :dim]
        model.means.copy_(torch.stack([h[y == k].mean(0) for k in range(classes)]))
        return model
    if kind == "specialists":
        if n_blocks > dim:
            raise ValueError(f"n_blocks={n_blocks} > dim={dim}: the specialists need one subspace each; "
                             f"use n_blocks <= dim")
        Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
        Ps = [U @ U.T for U in torch.tensor_split(Q, n_blocks, dim=1)]        # orthogonal projections
        return PrototypeClassifier(prototypes, b, noise, [ProjectionBlock(P) for P in Ps])
    eta = (0.5 if kind == "contract" else -0.35) if eta is None else float(eta)
    if eta == 0:
        raise ValueError("eta=0 makes every block the identity; use eta > 0 (descent) or eta < 0 (ascent)")
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
    lam = torch.linspace(0.5, 1.5, dim)
    A = nn.Parameter((Q * lam) @ Q.T, requires_grad=False)                     # (d, d) = Q diag(lam) Q^T
    first = TargetedGradientBlock(A, eta)
    blocks = [first] * n_blocks if share else [first] + [TargetedGradientBlock(A, eta) for _ in range(n_blocks - 1)]
    model = PrototypeClassifier(prototypes, b, noise, blocks)
    model.A = A
    return model


class InjectedLinearBlock(nn.Module):
    """A step with input injection, ``h <- x + q R h`` (``R`` orthogonal, so ``Lip(g) = q``); ``c = x`` passes.

    For ``q < 1`` the map ``h -> x + q R h`` is a contraction (Banach): iterating
    it converges to the unique fixed point ``h* = (I - q R)^{-1} x`` at rate ``q``
    (chapter 5's exercise). For ``q > 1`` the iterates grow like ``q^t``.
    """

    def __init__(self, R: torch.Tensor, q: float):
        super().__init__()
        self.R = nn.Parameter(R, requires_grad=False)   # (d, d) orthogonal
        self.q = float(q)
        self.state_channels = R.shape[0]                 # z = [h, c]: h is iterated, c carried along

    def branch(self, z: torch.Tensor) -> torch.Tensor:
        h, c = z.chunk(2, dim=1)
        return torch.cat([c + self.q * h @ self.R.T - h, torch.zeros_like(c)], 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.branch(z)

    def update(self, z: torch.Tensor) -> torch.Tensor:
        return self(z) - z


def convergent_control(contractive: bool = True, n_blocks: int = 4, *, q: float | None = None, dim: int = 16,
                       classes: int = 4, noise: float = 0.5, seed: int = 0) -> PrototypeClassifier:
    """The convergent-by-design control: one shared step ``h <- x + q R h`` applied ``n_blocks`` times.

    ``contractive=True`` (default ``q = 0.5``): recurrent by construction and a
    contraction with input injection, so the stream settles on ``h*`` and the
    read-out (class means fitted on the intact network's final states) keeps its
    accuracy at any extra depth: it should pass the convergence criterion
    (:data:`itercourse.indices.CONVERGENT_C`, :data:`itercourse.indices.CONVERGENT_D`).
    ``contractive=False`` (default ``q = 1.3``): the same network with an
    expanding step, equally recurrent, whose updates grow instead of dying out:
    its non-contractive twin, which should fail.
    """
    q = (0.5 if contractive else 1.3) if q is None else float(q)
    check_positive("q", q)
    check_positive_int("n_blocks", n_blocks)
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(classes, dim, generator=gen)                      # (K, d)
    R, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))               # (d, d) orthogonal
    block = InjectedLinearBlock(R, q)
    model = PrototypeClassifier(prototypes, torch.zeros(dim), noise, [block] * n_blocks)
    x, y = model.sample(4000, seed=seed + 1)
    with torch.no_grad():
        h = model.stages[0](model.stem(x))[:, :dim]
    model.means.copy_(torch.stack([h[y == k].mean(0) for k in range(classes)]))
    return model
