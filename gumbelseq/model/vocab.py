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
        # One join and one set: a set per string took 30 s on MOSES's 1.6 million lines.
        chars = sorted(set("".join(strings)))
        # The paper pads with a space; a corpus that uses spaces itself gets a visible pad, and
        # one that uses that too the first of a few more (then a private-use character).
        taken = set(chars)
        candidates = (" ", "\u2423", "\u00b7", "_", *map(chr, range(0xE000, 0xF900)))
        pad = next((c for c in candidates if c not in taken), None)
        if pad is None:
            raise InputFileError("data: every candidate pad character occurs in the data (its own alphabet is too large)")
        return cls(tuple(chars), pad)

    @property
    def size(self) -> int:
        return len(self.chars) + 1

    def encode(self, strings: Sequence[str], max_len: int, *, source: str = "data") -> torch.Tensor:
        """``[N, max_len]`` ids, right-padded with 0; the first row (in order) that is too long
        or has a character outside the vocabulary is an ``InputFileError`` naming it."""
        fast = self._encode_bytes(strings, max_len)
        if fast is not None:
            return fast
        out = torch.zeros((len(strings), max_len), dtype=torch.long)
        for row, s in enumerate(strings):
            ids = self._row_ids(row, s, max_len, source)
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def _row_ids(self, row: int, s: str, max_len: int, source: str) -> list[int]:
        """One string's ids, or the row's one-line error (length first, then characters)."""
        if len(s) > max_len:
            raise InputFileError(f"{source}:{row + 1}: string of length {len(s)} exceeds max length {max_len}")
        index = {c: i + 1 for i, c in enumerate(self.chars)}
        try:
            return [index[c] for c in s]
        except KeyError as e:
            raise InputFileError(f"{source}:{row + 1}: character {e.args[0]!r} is not in the vocabulary") from None

    def _encode_bytes(self, strings: Sequence[str], max_len: int) -> torch.Tensor | None:
        """The vectorised ``encode`` for vocabularies of characters below U+0100 (every built-in
        and MOSES): a Python loop per string took a minute on MOSES's training set, this takes
        seconds. ``None`` when it does not apply, or when some row is bad: the loop then finds
        the first bad row and words the error."""
        if not strings or any(ord(c) > 255 for c in self.chars):
            return None
        try:
            flat = np.frombuffer("".join(strings).encode("latin-1"), dtype=np.uint8)
        except UnicodeEncodeError:  # a character no vocabulary of this kind holds
            return None
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
        if int(lengths.max()) > max_len:
            return None
        lut = np.full(256, 255, dtype=np.uint8)  # 255: not in the vocabulary
        for i, c in enumerate(self.chars):
            lut[ord(c)] = i + 1
        codes = lut[flat]
        if codes.size and bool((codes == 255).any()):
            return None
        out = np.zeros((len(strings), max_len), dtype=np.int64)
        # A row's characters fill its leading positions; row-major order is the joined text's.
        out[np.arange(max_len) < lengths[:, None]] = codes
        return torch.from_numpy(out)

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
