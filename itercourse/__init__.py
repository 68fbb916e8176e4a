"""itercourse: residual networks as iterative, convergent computation.

The package behind the itercourse book. Each module holds one idea a chapter
teaches (the README's module map lists them); the names below are the public
API the chapters, tests and assignments rely on (see the README's API section).
``itercourse.train`` is the training function; its module is ``itercourse.training``.
"""
from .adapters import from_torchvision
from .blocks import SHORTCUTS, UNITS, ResidualUnit
from .coupling import GradientCoupling, effective_parameters, make_blocks_identical
from .data import DATASETS, ImageData, load_dataset
from .digitclutter import make_digitclutter
from .experiments import ExperimentConfig, Result, load_results, load_weights, reanalyse, run
from .indices import (convergence_index, divergence_index, is_convergent, iterative_convergence_indices,
                      recurrence_index)
from .lipschitz import apply_spectral_norm, block_map_growth, branch_lipschitz_bound, branch_lipschitz_estimate
from .models import ResNetConfig, build_resnet, count_parameters
from .opnorm import conv_operator_norm
from .refinement import (borderline_examples, drop_block_accuracy, gradient_alignment, norm_ratios,
                         unroll_accuracy)
from .smoke import is_smoke, pick
from .sweeps import PRESETS, load_grid, sweep
from .training import History, TrainConfig, evaluate, train
from .version import __version__
from .walk import eval_mode, stage_states, unrolled, without

__all__ = [
    "__version__",
    "from_torchvision", "SHORTCUTS", "UNITS", "ResidualUnit", "GradientCoupling", "effective_parameters",
    "make_blocks_identical", "DATASETS", "ImageData", "load_dataset", "make_digitclutter",
    "ExperimentConfig", "Result", "load_results", "run", "convergence_index", "divergence_index",
    "iterative_convergence_indices", "recurrence_index", "apply_spectral_norm", "branch_lipschitz_bound",
    "branch_lipschitz_estimate", "ResNetConfig", "build_resnet", "count_parameters", "conv_operator_norm",
    "borderline_examples", "drop_block_accuracy", "gradient_alignment", "norm_ratios", "unroll_accuracy",
    "is_smoke", "pick", "PRESETS", "load_grid", "sweep", "History", "TrainConfig", "evaluate", "train",
    "eval_mode", "stage_states", "unrolled", "without", "load_weights", "reanalyse", "is_convergent",
    "block_map_growth",
]
