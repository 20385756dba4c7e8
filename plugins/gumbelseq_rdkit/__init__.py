"""The ``rdkit`` validator: a SMILES string is valid when RDKit reads it as a molecule.

Validity is MOSES's (``moses.metrics.utils.get_mol``): the string is not empty and
``Chem.MolFromSmiles`` (which sanitises) returns a molecule; the canonical form is
``Chem.MolToSmiles`` of that molecule. RDKit is imported only when the validator runs (it is
an optional dependency: ``pip install -e '.[chem]'``), and its per-molecule warnings are
silenced, since an invalid sample is a count in the report, not a message.

One departure: a string holding whitespace is invalid. ``MolFromSmiles`` reads ``"CCO junk"``
as ethanol named "junk" (a SMILES file's name column), which would count a sample with a
garbage tail as a valid molecule; MOSES's models never write spaces, so its figures are unaffected.

Lines longer than ``MAX_LENGTH`` characters are refused (one error naming the line): RDKit
recurses once per atom of a chain, so ``C`` written 20,000 times overflows an 8 MB stack and
kills the process, and its time grows faster than the length (10,000: 2 s; 20,000 with a larger
stack: 7 s). 10,000 is gumbelseq's own bound on ``--max-len``, so no model's sample is refused.
"""

from __future__ import annotations

from typing import Callable

from gumbelseq.validators import Validator, ValidatorError, hookimpl

INSTALL_HINT = "pip install -e '.[chem]' (or pip install rdkit)"
#: Checked safe at 10,000 characters under the default 8 MB stack: chains, rings, nested branches.
MAX_LENGTH = 10_000


def _chem():
    try:
        from rdkit import Chem, RDLogger
    except ImportError as e:
        raise ValidatorError(f"the rdkit validator needs RDKit, which is not installed ({e.name or 'rdkit'} missing): {INSTALL_HINT}") from None
    RDLogger.DisableLog("rdApp.*")
    return Chem


def check() -> None:
    _chem()


def canonical_smiles(batch: list[str]) -> list[str | None]:
    """RDKit-canonical SMILES of each string, ``None`` where RDKit finds no valid molecule.
    Module-level so that worker processes receive it by reference."""
    Chem = _chem()
    out: list[str | None] = []
    for s in batch:
        # MolFromSmiles sanitises (MOSES sanitises a second time, which cannot change the verdict).
        mol = Chem.MolFromSmiles(s) if s and not any(c.isspace() for c in s) else None
        try:
            out.append(None if mol is None else Chem.MolToSmiles(mol))
        except Exception:  # noqa: BLE001 - a molecule RDKit cannot write back is not valid
            out.append(None)
    return out


VALIDATOR = Validator(
    name="rdkit",
    description="SMILES that RDKit reads as a molecule (MOSES validity); canonical form: RDKit canonical SMILES",
    canonical=canonical_smiles,
    check=check,
    max_length=MAX_LENGTH,
)


@hookimpl
def register_validators(register: Callable[[Validator], None]) -> None:
    register(VALIDATOR)
