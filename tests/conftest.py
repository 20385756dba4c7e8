import os
import random

import pytest
import torch
from hypothesis import register_random, settings

# torch draws inside @given tests replay with the example (STYLE.md: register torch's RNG).
class _TorchRandom(random.Random):
    def seed(self, a=None, version=2):  # noqa: D401 - hypothesis calls seed/getstate/setstate
        torch.manual_seed(0 if a is None else hash(a) & 0xFFFFFFFF)

    def getstate(self):
        return torch.get_rng_state()

    def setstate(self, state):
        torch.set_rng_state(state)


_torch_random = _TorchRandom()
register_random(_torch_random)

settings.register_profile("ci", settings.get_profile("ci"), deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    # The "last run" pointer and plugin dirs must never leak between tests or from the user.
    monkeypatch.setenv("GUMBELSEQ_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("GUMBELSEQ_PLUGINS_DIR", raising=False)
