"""Random-generator bookkeeping: the seed weights are initialised from, and restoring saved
generator states. (The package never seeds global generators for good: every random draw comes
from an explicit ``torch.Generator`` or ``random.Random``.)"""

from __future__ import annotations

import warnings

import torch


def init_seed(seed: int) -> int:
    """The seed of a run's initial weights: derived from (not equal to) the run seed, so the
    initial weights and the first draws of the training stream are not the same numbers."""
    return (seed * 6364136223846793005 + 1442695040888963407) % (2**63)


def restore_generator(generator: torch.Generator, state: torch.Tensor) -> None:
    """Restore a saved ``torch.Generator`` state. A state saved on another device type (CUDA's
    Philox state is not a CPU Mersenne-Twister state) cannot be restored; then only exact
    resumption of training is lost, so warn instead of failing to load the run."""
    try:
        generator.set_state(state.cpu())
    except RuntimeError:
        warnings.warn(
            "a saved RNG state comes from another device type and cannot be restored "
            f"on {generator.device}; sampling is unaffected, resumed training is not bit-identical",
            RuntimeWarning,
            stacklevel=3,
        )
