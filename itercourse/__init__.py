"""itercourse: residual networks as iterative, convergent computation.

The package behind the itercourse book. Each module holds one idea a chapter
teaches; the names below are the public API the chapters, tests and
assignments rely on (see the README's API section).
"""
__version__ = "0.1.0"

from .blocks import SHORTCUTS, UNITS, ResidualUnit
from .coupling import GradientCoupling, effective_parameters, make_blocks_identical
from .data import DATASETS, ImageData, load_dataset
from .digitclutter import make_digitclutter
from .experiments import ExperimentConfig, Result, load_results, run, sweep
from .indices import convergence_index, divergence_index, iterative_convergence_indices, recurrence_index
from .lipschitz import (apply_spectral_norm, branch_lipschitz_bound, branch_lipschitz_estimate,
                        conv_operator_norm)
from .models import ResNetConfig, build_resnet, count_parameters
from .refinement import (borderline_examples, drop_block_accuracy, gradient_alignment, norm_ratios,
                         unroll_accuracy)
from .smoke import is_smoke, pick
from .train import History, TrainConfig, evaluate, train

__all__ = [
    "SHORTCUTS", "UNITS", "ResidualUnit", "GradientCoupling", "effective_parameters",
    "make_blocks_identical", "DATASETS", "ImageData", "load_dataset", "make_digitclutter",
    "ExperimentConfig", "Result", "load_results", "run", "sweep", "convergence_index",
    "divergence_index", "iterative_convergence_indices", "recurrence_index", "apply_spectral_norm",
    "branch_lipschitz_bound", "branch_lipschitz_estimate", "conv_operator_norm", "ResNetConfig",
    "build_resnet", "count_parameters", "borderline_examples", "drop_block_accuracy",
    "gradient_alignment", "norm_ratios", "unroll_accuracy", "is_smoke", "pick", "History",
    "TrainConfig", "evaluate", "train",
]
