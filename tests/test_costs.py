"""The cost model of chapter 8 (itercourse.costs): counts of the real training step, and the estimate's arithmetic."""
import pytest

from itercourse.costs import forward_flops, run_seconds, step_counts, step_seconds, synthetic_cifar
from itercourse.models import ResNetConfig

SMALL = ResNetConfig(in_channels=3, num_classes=10, widths=(4, 8), blocks=(2, 2), branch_norm="none")


def test_a_step_costs_about_three_forward_passes_per_image_and_its_op_count_does_not_grow_with_the_batch():
    f8, ops8 = step_counts(SMALL, batch=8)
    f16, ops16 = step_counts(SMALL, batch=16)
    assert f16 == pytest.approx(2 * f8, rel=0.01)                   # FLOPs grow with the batch
    assert ops16 == ops8                                             # kernel launches do not
    per_image = f16 / 16 / forward_flops(SMALL)
    assert 2.5 < per_image < 3.5                                     # forward + backward (about 2x forward)
    f_plain, ops_plain = step_counts(SMALL, batch=8, coupling=0.0)   # no coupling: no coupling work
    assert ops_plain < ops8 and f_plain <= f8


def test_the_estimate_is_the_slower_of_arithmetic_and_launches():
    assert step_seconds(1e12, 100, rate=1e12, launch=1e-6) == 1.0           # arithmetic-bound
    assert step_seconds(1e6, 10**6, rate=1e12, launch=1e-5) == pytest.approx(10.0)   # launch-bound
    from types import SimpleNamespace as NS
    cfg = NS(train=NS(batch_size=100, epochs=2))
    # 2 epochs x (1000/100 steps + 300/100/3 test-step equivalents) x 1 s
    assert run_seconds(cfg, [(1e12, 1)], 1000, 300, rate=1e12, launch=1e-6) == pytest.approx(22.0)


def test_synthetic_cifar_has_the_shape_of_cifar():
    data = synthetic_cifar(32)
    assert tuple(data.train_images.shape) == (32, 3, 32, 32) and data.num_classes == 10
    assert data.test_images.shape[0] == 128
