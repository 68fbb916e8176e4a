"""The operator norm of a convolution: the largest singular value of the linear map it applies.

A ``Conv2d`` (bias aside) is a linear map ``A`` from a whole ``(C_in, H, W)``
feature map to a ``(C_out, H', W')`` one. Its operator norm

    ||conv||_2 = max_x ||A x|| / ||x||

is what bounds the Lipschitz constant of a residual branch (chapter 5). It
depends on the input size and padding, and is not the norm of the weight
reshaped to a (C_out, C_in*k*k) matrix (Miyato et al. 2018), which can be up to
``k`` times smaller. Computed by power iteration with ``conv2d`` and its exact
adjoint ``conv_transpose2d`` (Gouk et al. 2021, Sec. 3; Behrmann et al. 2019),
or exactly by the FFT for circular convolutions (Sedghi, Gupta, Long 2019).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as Fn
from torch import nn

from .errors import check_positive, check_positive_int



@dataclass(frozen=True, eq=False)
class ConvGeometry:
    """Everything but the weight that defines the linear map a Conv2d applies (bias excluded)."""

    in_shape: tuple      # (C_in, H, W) of one input feature map
    out_shape: tuple     # (C_out, H_out, W_out) it produces
    stride: tuple        # (s_h, s_w)
    dilation: tuple      # (d_h, d_w)
    groups: int          # channel groups
    pad: tuple           # (left, right, top, bottom), as F.pad takes it
    mode: str            # F.pad mode: "constant" (zeros), "circular", "reflect" or "replicate"
    out_pad: tuple       # output_padding that makes conv_transpose2d return exactly in_shape
    source: torch.Tensor | None = None  # non-zero padding: padded pixel j copies input pixel source[j]


def conv_geometry(conv: nn.Conv2d, input_shape) -> ConvGeometry:
    """The geometry of ``conv`` on inputs of shape ``input_shape = (C, H, W)``, with checks."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv={type(conv).__name__} is not supported; pass a torch.nn.Conv2d")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if shape is None or len(shape) != 3 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"input_shape={input_shape!r} must be (C, H, W): three positive integers")
    if shape[0] != conv.in_channels:
        raise ValueError(f"input_shape={shape!r} has {shape[0]} channels but the layer expects "
                         f"in_channels={conv.in_channels}; use input_shape=({conv.in_channels}, H, W)")
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    pad = tuple(int(p) for p in conv._reversed_padding_repeated_twice)
    probe = torch.zeros(1, *shape, dtype=conv.weight.dtype, device=conv.weight.device)
    try:
        padded = Fn.pad(probe, pad, mode) if any(pad) else probe
        out = Fn.conv2d(padded, conv.weight.detach(), None, conv.stride, 0, conv.dilation, conv.groups)
    except RuntimeError as err:
        raise ValueError(f"input_shape={shape!r} does not fit {conv}: {err}") from None
    out_pad = tuple(padded.shape[2 + i] - ((out.shape[2 + i] - 1) * conv.stride[i]
                                          + conv.dilation[i] * (conv.kernel_size[i] - 1) + 1) for i in range(2))
    source = None
    if mode != "constant":   # pad the pixel indices themselves to learn where each padded pixel comes from
        idx = torch.arange(shape[1] * shape[2], dtype=torch.float64).view(1, 1, shape[1], shape[2])
        source = Fn.pad(idx, pad, mode).flatten().long()                       # (H_pad * W_pad,)
    return ConvGeometry(shape, tuple(out.shape[1:]), tuple(conv.stride), tuple(conv.dilation), conv.groups,
                        pad, mode, out_pad, source)


def _symmetric_zero_pad(g: ConvGeometry):
    """(p_h, p_w) when the padding is zeros and the same on both sides, else None."""
    left, right, top, bottom = g.pad
    return (top, left) if g.mode == "constant" and left == right and top == bottom else None


def conv_apply(weight: torch.Tensor, x: torch.Tensor, g: ConvGeometry) -> torch.Tensor:
    """``A x``: the conv's linear map (no bias).  # (B, C_in, H, W) -> (B, C_out, H', W')"""
    sym = _symmetric_zero_pad(g)
    if sym is not None:
        return Fn.conv2d(x, weight, None, g.stride, sym, g.dilation, g.groups)
    return Fn.conv2d(Fn.pad(x, g.pad, g.mode), weight, None, g.stride, 0, g.dilation, g.groups)


def conv_adjoint(weight: torch.Tensor, y: torch.Tensor, g: ConvGeometry) -> torch.Tensor:
    """``A^T y``: the exact adjoint, ``conv_transpose2d`` with matching output_padding.  # (B, C_out, H', W') -> (B, C_in, H, W)"""
    sym = _symmetric_zero_pad(g)
    if sym is not None:
        return Fn.conv_transpose2d(y, weight, None, g.stride, sym, g.out_pad, g.groups, g.dilation)
    z = Fn.conv_transpose2d(y, weight, None, g.stride, 0, g.out_pad, g.groups, g.dilation)  # padded input space
    if g.mode == "constant":           # the adjoint of zero padding is cropping
        left, right, top, bottom = g.pad
        return z[..., top:z.shape[-2] - bottom, left:z.shape[-1] - right]
    # the adjoint of a copying pad adds every padded pixel back onto the input pixel it copies
    x = z.new_zeros(*z.shape[:2], g.in_shape[1] * g.in_shape[2])
    x.index_add_(2, g.source.to(z.device), z.flatten(2))
    return x.view(*z.shape[:2], *g.in_shape[1:])


def unit_vectors(t: torch.Tensor) -> torch.Tensor:
    """``t`` divided by its norm over all but the batch dimension."""
    return t / t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (t.dim() - 1))


def conv_operator_norm(conv: nn.Conv2d, input_shape, *, n_iter: int = 500, tol: float = 1e-7,
                       seed: int = 0) -> float:
    """The true spectral norm ``||conv||_2 = max_x ||A x|| / ||x||`` on inputs of ``input_shape``.

    Power iteration on ``A^T A`` (``v <- A^T A v / ||A^T A v||``, ``sigma = ||A v||``)
    with ``conv2d`` and ``conv_transpose2d``; honours stride, padding (any mode),
    dilation and groups; the bias is not part of the linear map. Stops when
    sigma changes by less than ``tol`` (relative). Gouk et al. 2021, Sec. 3.
    """
    check_positive_int("n_iter", n_iter)
    check_positive("tol", tol)
    g = conv_geometry(conv, input_shape)
    weight = conv.weight.detach()
    gen = torch.Generator().manual_seed(seed)
    v = unit_vectors(torch.randn(1, *g.in_shape, generator=gen).to(weight))   # (1, C_in, H, W)
    sigma = 0.0
    with torch.no_grad():
        for _ in range(n_iter):
            u = conv_apply(weight, v, g)
            new = float(u.norm())
            v = unit_vectors(conv_adjoint(weight, u, g))
            if abs(new - sigma) <= tol * new:
                return new
            sigma = new
    return sigma


def conv_operator_norm_fft(weight, input_hw) -> float:
    """Exact ``||conv||_2`` of a stride-1 circular convolution on an ``H x W`` torus.

    The map is block circulant, so its singular values are those of the
    ``C_out x C_in`` matrices ``P(u, v) = sum_{a,b} K[:, :, a, b] e^{-2 pi i (ua/H + vb/W)}``
    over all frequencies (Sedghi, Gupta, Long 2019, Thm. 6). ``weight`` is a
    (C_out, C_in/groups, k, k) tensor, or an ``nn.Conv2d`` with circular padding,
    stride 1 and same-size output (its groups and dilation are used).
    """
    groups, dilation = 1, (1, 1)
    if isinstance(weight, nn.Conv2d):
        conv = weight
        if conv.padding_mode != "circular" or conv.stride != (1, 1):
            raise ValueError(f"weight={conv} must use padding_mode='circular' and stride=1 for the FFT "
                             "method; use conv_operator_norm for other layers")
        groups, dilation, weight = conv.groups, conv.dilation, conv.weight.detach()
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise TypeError(f"weight={type(weight).__name__} must be a 4-d tensor (C_out, C_in, k, k) or an nn.Conv2d")
    if not (isinstance(input_hw, (tuple, list)) and len(input_hw) == 2 and all(isinstance(n, int) for n in input_hw)):
        raise ValueError(f"input_hw={input_hw!r} must be (H, W): two integers")
    w = weight.detach().to(torch.float64)
    if dilation != (1, 1):                      # a dilated kernel is the kernel with zeros in between
        k_h, k_w = w.shape[-2:]
        wd = w.new_zeros(*w.shape[:2], dilation[0] * (k_h - 1) + 1, dilation[1] * (k_w - 1) + 1)
        wd[..., ::dilation[0], ::dilation[1]] = w
        w = wd
    if w.shape[-2] > input_hw[0] or w.shape[-1] > input_hw[1]:
        raise ValueError(f"input_hw={tuple(input_hw)!r} is smaller than the (dilated) kernel "
                         f"{tuple(w.shape[-2:])}; it must be at least the kernel size")
    c_out = w.shape[0]
    w = w.reshape(groups, c_out // groups, *w.shape[1:])                     # (G, C_out/G, C_in/G, k, k)
    p = torch.fft.fft2(w, s=tuple(input_hw))                               # (G, C_out/G, C_in/G, H, W)
    return float(torch.linalg.matrix_norm(p.permute(0, 3, 4, 1, 2), ord=2).max())


def reshaped_norm(weight: torch.Tensor) -> float:
    """The largest singular value of the weight reshaped to (C_out, C_in*k*k), what Miyato et al. normalise."""
    w = weight.detach() if isinstance(weight, torch.Tensor) else weight.weight.detach()
    return float(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1).to(torch.float64), ord=2))
