"""What training optimises and counts: the task loss, correctness, and the flip margin.

Single-label tasks (MNIST, CIFAR) use softmax cross-entropy; Digitclutter's
multi-hot labels use one binary cross-entropy per class, and a prediction is
its k highest-scoring classes when k digits are present.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def is_multilabel(logits: torch.Tensor, y: torch.Tensor) -> bool:
    """Multi-hot float targets with one column per class mean a multi-label task."""
    return y.is_floating_point() and y.shape == logits.shape


def check_labels(y, num_classes: int, batch: int | None = None, name: str = "y") -> None:
    """Raise ``TypeError``/``ValueError`` unless ``y`` are labels for ``num_classes`` outputs.

    Allowed: integer class indices of shape (B,) in 0..C-1, or multi-hot floats of shape (B, C).
    Reads two numbers back to the host (a check for evaluation, never for the training step).
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of labels; got {type(y).__name__}")
    if batch is not None and len(y) != batch:
        raise ValueError(f"{name} has {len(y)} labels but the batch has {batch} examples; pass the labels of "
                         "the same batch (one per example)")
    allowed = f"class indices (B,) in 0..{num_classes - 1} (an integer dtype), or multi-hot floats " \
              f"(B, {num_classes})"
    if y.is_floating_point():
        if y.dim() != 2 or y.shape[1] != num_classes:
            raise ValueError(f"{name} (dtype {y.dtype}, shape {tuple(y.shape)}) is not allowed; allowed: {allowed} "
                             "(float class indices: y.long())")
        if y.numel() and not bool(torch.isfinite(y).all()):
            raise ValueError(f"{name} holds NaN or inf; allowed: {allowed}")
        return
    if y.dtype == torch.bool or y.is_complex() or y.dim() != 1:
        raise ValueError(f"{name} (dtype {y.dtype}, shape {tuple(y.shape)}) is not allowed; allowed: {allowed}")
    if y.numel():
        lo, hi = (int(v) for v in torch.aminmax(y))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} (dtype {y.dtype}, shape {tuple(y.shape)}, values {lo}..{hi}) is not allowed; "
                             f"allowed: {allowed}")


def task_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0,
              reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy for class labels, per-class binary cross-entropy for multi-hot labels."""
    if len(y) != len(logits):
        raise ValueError(f"logits has {len(logits)} rows but y has {len(y)} labels; pass the labels of the "
                         "same batch (one per example)")
    if reduction == "mean" and len(y) == 0:     # the mean of nothing is NaN: refuse instead
        raise ValueError("logits and y are an empty batch (B = 0); the mean loss needs at least one example")
    if is_multilabel(logits, y):
        loss = F.binary_cross_entropy_with_logits(logits.float(), y.float(), reduction="none").sum(1)
        return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss
    return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing, reduction=reduction)


def correct_mask(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example: is the prediction right? Multi-label: top-k classes == the k true ones."""
    if is_multilabel(logits, y):
        k = y.sum(1, keepdim=True).long()                            # (B, 1) digits present
        ranks = logits.argsort(1, descending=True).argsort(1)        # (B, C) rank of each class
        return ((ranks < k) & (y > 0.5)).sum(1) == k.squeeze(1)
    return logits.argmax(1) == y


def flip_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example, how far the prediction is from flipping, in probability.

        single label (softmax):  p_(1) - p_(2)             (top-1 minus top-2 probability)
        multi-label (sigmoids):  s_(k) - s_(k+1),  k = number of true labels

    where ``p_(j)`` / ``s_(j)`` is the j-th largest probability. A multi-label
    prediction is its k highest-scoring classes, so it changes when the k-th
    and (k+1)-th swap. With k = all classes there is no (k+1)-th: ``s_(k+1)=0``;
    with k = 0 the prediction cannot change: margin ``inf``. Our reading of
    Jastrzębski et al.'s (2018) "within 10% probability of flipping".
    """
    if is_multilabel(logits, y):
        p = torch.sigmoid(logits.float()).sort(1, descending=True).values     # (B, C)
        p = torch.cat([p, torch.zeros_like(p[:, :1])], 1)                      # (B, C+1): s_(C+1) = 0
        k = y.sum(1).round().long().clamp(0, logits.shape[1])                  # (B,)
        idx = (k - 1).clamp_min(0)[:, None]
        margin = (p.gather(1, idx) - p.gather(1, idx + 1)).squeeze(1)
        return torch.where(k > 0, margin, torch.full_like(margin, float("inf")))
    p = torch.softmax(logits.float(), 1).topk(min(2, logits.shape[1]), dim=1).values
    return p[:, 0] - (p[:, 1] if p.shape[1] > 1 else 0.0)


def count_correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Number of correctly classified examples in a batch (a host read: not for the step loop)."""
    return int(correct_mask(logits, y).sum())
