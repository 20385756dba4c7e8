import os

import pytest
import torch
from hypothesis import register_random, settings


class _TorchGlobalRandom:
    """torch's global RNG seen as a ``random.Random``-like object, for Hypothesis to manage,
    so torch draws inside ``@given`` tests replay with the example."""

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def getstate(self) -> torch.Tensor:
        return torch.get_rng_state()

    def setstate(self, state: torch.Tensor) -> None:
        torch.set_rng_state(state)


_TORCH_RANDOM = _TorchGlobalRandom()  # module-level: register_random keeps only a weakref
register_random(_TORCH_RANDOM)

settings.register_profile("ci", settings.get_profile("ci"), deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    # The "last run" pointer and plugin dirs must never leak between tests or from the user.
    monkeypatch.setenv("GUMBELSEQ_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("GUMBELSEQ_PLUGINS_DIR", raising=False)
