"""Chemistry metrics of MOSES that need more than a validator's canonical form.

Internal diversity (Polykovskiy et al. 2020, ``moses.metrics.internal_diversity``, p = 1):
``IntDiv1 = 1 - mean Tanimoto similarity`` over all ordered pairs (i, j) of the molecules,
self-pairs included, of their Morgan fingerprints (radius 2, 1024 bits); a pair of empty
fingerprints has similarity 1, as in MOSES. MOSES takes every valid sample; here at most
``limit`` distinct molecules (a seeded uniform subset) are used, which keeps the N x N matrix
cheap (1000 molecules: a few hundred milliseconds) and the figure within about 0.001 of the
full one.

RDKit is imported only when a function runs (the ``[chem]`` extra); without it the error is
one line naming that extra. Nothing here imports torch.
"""

from __future__ import annotations

import random
from typing import Sequence

from .errors import GumbelseqError

#: At most this many distinct molecules enter IntDiv1 (see the module's docstring).
INTDIV_LIMIT = 1000


class ChemMetricsError(GumbelseqError):
    """RDKit is missing, or a molecule cannot be read."""


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdFingerprintGenerator
    except ImportError as e:
        raise ChemMetricsError(
            f"internal diversity needs RDKit, which is not installed ({e.name or 'rdkit'} missing):"
            " pip install -e '.[chem]' (or pip install rdkit)"
        ) from None
    RDLogger.DisableLog("rdApp.*")
    return Chem, rdFingerprintGenerator


def internal_diversity(smiles: Sequence[str], *, limit: int | None = INTDIV_LIMIT, seed: int = 0,
                       radius: int = 2, n_bits: int = 1024) -> tuple[float | None, int]:
    """MOSES's IntDiv1 of the distinct molecules among ``smiles`` (invalid ones are skipped),
    over at most ``limit`` of them drawn with ``seed``; returns (IntDiv1 or ``None`` when no
    molecule is valid, how many molecules it was computed over)."""
    import numpy as np

    Chem, rdFingerprintGenerator = _rdkit()
    # Sorted first: the subset depends on the seed only, not on the order samples came in.
    distinct = sorted(set(smiles))
    mols = [m for m in (Chem.MolFromSmiles(s) if s else None for s in distinct) if m is not None]
    if limit is not None and len(mols) > limit:
        mols = random.Random(seed).sample(mols, limit)
    if not mols:
        return None, 0
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    fps = np.stack([gen.GetFingerprintAsNumPy(m) for m in mols]).astype(np.float64)
    inter = fps @ fps.T
    bits = fps.sum(axis=1)
    union = bits[:, None] + bits[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(union > 0, inter / np.where(union > 0, union, 1), 1.0)
    return float(1.0 - sim.mean()), len(mols)
