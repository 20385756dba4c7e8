"""Character vocabulary with a pad: strings <-> fixed-length id tensors.

Id 0 is the pad; characters get ids 1.. in sorted order. Strings are right-padded to
``max_len`` as in the paper. Decoding maps ids back to characters, shows a pad that occurs
*inside* a string as the pad character (so "x x" stays visibly invalid, the strict reading of
the paper's samples) and drops trailing pads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import InputFileError

PAD_ID = 0


@dataclass(frozen=True)
class Vocabulary:
    chars: tuple[str, ...]
    pad: str = " "

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> "Vocabulary":
        chars = sorted(set().union(*map(set, strings)))
        # The paper pads with a space; a corpus that uses spaces itself gets a visible pad.
        pad = " " if " " not in chars else "\u2423"
        return cls(tuple(chars), pad)

    @property
    def size(self) -> int:
        return len(self.chars) + 1

    def encode(self, strings: Sequence[str], max_len: int, *, source: str = "data") -> torch.Tensor:
        index = {c: i + 1 for i, c in enumerate(self.chars)}
        out = torch.zeros((len(strings), max_len), dtype=torch.long)
        for row, s in enumerate(strings):
            if len(s) > max_len:
                raise InputFileError(f"{source}:{row + 1}: string of length {len(s)} exceeds max length {max_len}")
            try:
                ids = [index[c] for c in s]
            except KeyError as e:
                raise InputFileError(f"{source}:{row + 1}: character {e.args[0]!r} is not in the vocabulary") from None
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        arr = ids.detach().to("cpu").numpy()
        n, width = arr.shape
        table = [self.pad, *self.chars]
        if all(len(c.encode()) == 1 for c in table):
            # Fast path for single-byte alphabets: one table lookup and one decode for the batch.
            lut = np.frombuffer("".join(table).encode(), dtype=np.uint8)
            flat = lut[arr].tobytes().decode("ascii")
            return [flat[i : i + width].rstrip(self.pad) for i in range(0, n * width, width)]
        return ["".join(table[i] for i in row).rstrip(self.pad) for row in arr.tolist()]

    def to_dict(self) -> dict:
        return {"chars": list(self.chars), "pad": self.pad}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        return cls(tuple(d["chars"]), d["pad"])
