"""Character automata beside the grammar (``sample --automaton``): the ``smiles-rings`` plugin and
the intersection of a grammar's masks with automata.

Oracles: Lark (through the grammar's own recogniser) by brute force over every short string, a
ring-pairing check written here from the SMILES rules (not the plugin's state machine), RDKit
(every string it reads is in the intersection), and real MOSES molecules."""

import itertools
import re

import pytest

from gumbelseq.lang.automaton import AutomatonError, CharAutomaton, automata, get_automaton
from gumbelseq.lang.grammar import load_grammar
from gumbelseq.lang.intersection import IntersectedMasks
from gumbelseq.lang.masks import grammar_masks

RINGS = "smiles-rings"


def rings_pair(s: str) -> bool:
    """Independent oracle, a plain graph build: bracket atoms become one atom; atoms are
    numbered and bonded to the atom before them (the one a branch hangs from after a ')', none
    after a '.'); each ring label (a digit, or % and two digits) alternately opens on the
    current atom and closes on a later one, adding a bond, which must join two different atoms
    not bonded yet; nothing is left open."""
    s = re.sub(r"\[[^\]]*\]", "A", s)
    if "[" in s or "]" in s:
        return False
    opened: dict[str, int] = {}
    bonds: set[frozenset[int]] = set()
    atoms, current, linked, branches = 0, -1, False, []
    for m in re.finditer(r"%\d\d|\d|Cl|Br|[BCNOSPFIbcnosp*A]|.", s):
        tok = m.group()
        if tok[0] == "%" or tok.isdigit():
            if tok not in opened:
                opened[tok] = current
                continue
            bond = frozenset((opened.pop(tok), current))
            if len(bond) == 1 or bond in bonds:
                return False
            bonds.add(bond)
        elif tok[0].isalpha() or tok == "*":
            if linked:
                bonds.add(frozenset((current, atoms)))
            current, linked, atoms = atoms, True, atoms + 1
        elif tok == "(":
            branches.append(current)
        elif tok == ")":
            current, linked = branches.pop(), True
        elif tok == ".":
            linked = False
        elif tok == "%":
            return False
    return not opened


def language(masks) -> tuple[set[str], int]:
    """Every string the masks let one write, and how many reachable states are dead ends."""
    out, dead = set(), 0
    stack = [(masks.start, "")]
    while stack:
        state, prefix = stack.pop()
        allowed = masks.allowed(state)
        if masks.can_end(state):
            out.add(prefix)
        elif not allowed:
            dead += 1
        for c in allowed:
            stack.append((masks.next(state, c), prefix + c))
    return out, dead


def test_the_plugin_registers_through_the_entry_point():
    assert RINGS in automata()
    assert "gumbelseq_smiles" in automata()[RINGS][1]
    with pytest.raises(AutomatonError, match=r"^unknown automaton 'nope'; known automata: .*smiles-rings"):
        get_automaton("nope")


@pytest.mark.parametrize(
    "s,ok",
    [("C1CC1", True), ("C1CC", False), ("C11", False), ("C1.C1", True), ("C=1CC1", True), ("C1CC1C1CC1", True),
     ("C%10CC%10", True), ("C1CC%01", False), ("C12CCC1C2", True), ("[13CH3]1CC1", True), ("C(C1)C1", True),
     ("C2CC1CC1C2", True), ("C1C2CC12", True), ("C1CCC1(C)", True),
     # a ring bond between atoms already bonded: neighbours, across a branch, or by another ring bond
     ("[C]1[C]1", False), ("C1C1", False), ("C1(C)C1", False), ("C12CCC12", False), ("C12CC21", False),
     ("C1CC2C12", False), ("C%10C%10", False)],
)
def test_the_automaton_agrees_with_the_oracle_on_chosen_strings(s, ok):
    aut = get_automaton(RINGS)
    state = aut.start()
    for c in s:
        state = aut.step(state, c)
        if state is None:
            break
    got = state is not None and aut.accepts(state)
    assert got == ok == rings_pair(s)


@pytest.mark.parametrize("alphabet,max_len", [("C12()=.", 6), ("C1[]N(", 6), ("CN1O2", 7)])
def test_brute_force_the_intersection_is_the_grammar_and_the_rings(alphabet, max_len):
    """Every string of at most max_len characters: the masks write exactly those the grammar
    (Lark's language) accepts whose ring labels pair up, and no prefix is a dead end."""
    g = load_grammar("smiles")
    masks = IntersectedMasks(grammar_masks(g, max_len, alphabet), [get_automaton(RINGS)])
    written, dead = language(masks)
    expected = {
        s
        for n in range(1, max_len + 1)
        for s in map("".join, itertools.product(alphabet, repeat=n))
        if g.is_valid(s) and rings_pair(s)
    }
    assert dead == 0
    assert written == expected
    assert any(re.search(r"\d", s) for s in written)  # rings were in play


@pytest.mark.parametrize("alphabet,max_len", [("C12()=.", 6), ("C1[]N(", 6), ("CN1O2", 7), ("C1=#-/\\", 6), ("C12()%0", 7), ("C1[]", 8)])
def test_the_intersection_writes_exactly_what_rdkit_reads(alphabet, max_len):
    """RDKit as the oracle: of the grammar's strings of at most max_len characters, the masks
    write exactly those RDKit reads unsanitised (its own ring bookkeeping, before any
    chemistry), but for a branch that opens with a '.' ("C(.C)"), which OpenSMILES allows,
    the grammar follows, and RDKit refuses."""
    Chem = pytest.importorskip("rdkit.Chem")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    g = load_grammar("smiles")
    written, dead = language(IntersectedMasks(grammar_masks(g, max_len, alphabet), [get_automaton(RINGS)]))
    grammatical = [s for n in range(1, max_len + 1) for s in map("".join, itertools.product(alphabet, repeat=n)) if g.is_valid(s)]
    rdkit_reads = {s for s in grammatical if Chem.MolFromSmiles(s, sanitize=False) is not None}
    assert dead == 0
    assert {s for s in written if "(." not in s} == rdkit_reads
    assert len(rdkit_reads) < len(grammatical)  # the grammar alone writes strings RDKit refuses


@pytest.mark.parametrize("name", [RINGS, "smiles-valence"])
def test_real_molecules_are_all_writable_and_end_where_they_end(name):
    """MOSES-like molecules (ring labels reused, branches, brackets, aromatic atoms): each is a
    path through the intersection at length 57, ending exactly at its end."""
    molecules = ["CCCS(=O)c1ccc2[nH]c(=NC(=O)OC)[nH]c2c1", "CC(C)(C)C(=O)C(Oc1ccc(Cl)cc1)n1ccnc1",
                 "Cc1c(Cl)cccc1Nc1ncccc1C(=O)OCC(O)CO", "Cn1cnc2c1c(=O)n(CC(O)CO)c(=O)n2C",
                 "CC1Oc2ccc(Cl)cc2N(CC(O)CO)C1=O", "O=C(NC1CC1)c1ccc2c(c1)OCO2", "C1CC2CCC1C2",
                 "c1ccc2c(c1)ccc1ccccc12", "CC12CCC(CC1)C2", "[O-][n+]1ccccc1"]
    chars = sorted(set("".join(molecules)))
    masks = IntersectedMasks(grammar_masks(load_grammar("smiles"), 57, chars), [get_automaton(name)])
    for mol in molecules:
        state = masks.start
        for i, c in enumerate(mol):
            assert c in masks.allowed(state), (mol, i)
            state = masks.next(state, c)
            if i < len(mol) - 1 and re.fullmatch(r"[^\[]*", mol[: i + 1]) and not rings_pair(mol[: i + 1]):
                assert not masks.can_end(state), (mol, i)  # an open ring: not a place to stop
        assert masks.can_end(state), mol
    assert masks.gave_up == 0


def test_on_mutated_molecules_the_automaton_accepts_what_rdkit_reads():
    """RDKit as the oracle at real lengths: random edits (ring digits, %nn, branches, brackets,
    dots) of real molecules; of those the grammar accepts, smiles-rings accepts exactly those
    RDKit reads unsanitised, but for two grammar-level differences (OpenSMILES allows them,
    RDKit does not): a branch opened by a dot and an isotope written with a leading zero; and
    smiles-valence those of them with no atom past its valence by RDKit's reading."""
    import random

    Chem = pytest.importorskip("rdkit.Chem")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    molecules = ["CCCS(=O)c1ccc2[nH]c(=NC(=O)OC)[nH]c2c1", "CC(C)(C)C(=O)C(Oc1ccc(Cl)cc1)n1ccnc1",
                 "Cc1c(Cl)cccc1Nc1ncccc1C(=O)OCC(O)CO", "Cn1cnc2c1c(=O)n(CC(O)CO)c(=O)n2C",
                 "CC1Oc2ccc(Cl)cc2N(CC(O)CO)C1=O", "O=C(NC1CC1)c1ccc2c(c1)OCO2", "C1CC2CCC1C2",
                 "c1ccc2c(c1)ccc1ccccc12", "CC12CCC(CC1)C2", "[O-][n+]1ccccc1", "C%10CCC%10C1CC1"]
    g, aut, rng = load_grammar("smiles"), get_automaton(RINGS), random.Random(0)
    valence = get_automaton("smiles-valence")
    seen, over = {True: 0, False: 0}, 0
    for _ in range(6000):
        s = list(rng.choice(molecules))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(s) + 1)
            edit = rng.choice("ird") if i < len(s) else "i"
            if edit == "d":
                del s[i]
            else:
                s[i: i + (edit == "r")] = rng.choice("C()12345=cN%0[].")
        s = "".join(s)
        if not g.is_valid(s) or "(." in s or re.search(r"\[0\d", s):
            continue
        reads = Chem.MolFromSmiles(s, sanitize=False) is not None
        assert _accepted_by(aut, s) == reads, s
        assert _accepted_by(valence, s) == (reads and not over_valence(s)), s
        seen[reads] += 1
        over += reads and over_valence(s)
    assert min(seen.values()) > 500 and over > 25, (seen, over)


VALENCE = "smiles-valence"


def over_valence(s: str) -> bool:
    """Independent oracle, from RDKit's own reading (unsanitised) of the string: an uncharged,
    non-aromatic organic-subset atom whose bonds (an aromatic bond counted as 1) exceed the
    largest valence RDKit allows it."""
    from rdkit import Chem

    largest = {"B": 3, "C": 4, "N": 3, "O": 2, "S": 6, "P": 5, "F": 1, "I": 5, "Cl": 1, "Br": 1}
    pt = Chem.GetPeriodicTable()
    assert all(max(pt.GetValenceList(el)) == v for el, v in largest.items())
    mol = Chem.MolFromSmiles(s, sanitize=False)
    for atom in mol.GetAtoms():
        if atom.GetIsAromatic() or atom.GetFormalCharge() or atom.GetNoImplicit() or atom.GetSymbol() not in largest:
            continue
        total = sum(1 if b.GetBondType() == Chem.BondType.AROMATIC else b.GetBondTypeAsDouble() for b in atom.GetBonds())
        if total > largest[atom.GetSymbol()]:
            return True
    return False


@pytest.mark.parametrize("s,ok", [
    ("CC(=O)O", True), ("O=C=O", True), ("C#N", True), ("ClCBr", True), ("C1CC=1", True), ("c1ccccc1C(=O)N", True),
    ("[NH4+]C", True), ("CS(=O)(=O)C", True), ("C(=O)(=O)C", False), ("CN(C)(C)C", False), ("C=Cl", False),
    ("O=O=O", False), ("C1CC#1(C)C", False), ("C=1CC=1=C", False), ("FF", True), ("FC=F", False),
])
def test_the_valence_automaton_agrees_with_rdkit_on_chosen_strings(s, ok):
    pytest.importorskip("rdkit")
    from rdkit import Chem

    assert Chem.MolFromSmiles(s, sanitize=False) is not None and rings_pair(s)
    assert _accepted_by(get_automaton(VALENCE), s) == ok == (not over_valence(s))


@pytest.mark.parametrize("alphabet,max_len", [("C1=(O)", 7), ("O1=:-c", 6), ("BrO1=#", 7), ("ClC1=(", 7)])
def test_brute_force_the_valence_intersection_against_rdkit(alphabet, max_len):
    """Of the grammar's strings of at most max_len characters, the masks write exactly those
    RDKit reads unsanitised with no atom past its valence by RDKit's own bond orders (but for a
    branch opened by a dot), and no prefix is a dead end."""
    Chem = pytest.importorskip("rdkit.Chem")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    g = load_grammar("smiles")
    written, dead = language(IntersectedMasks(grammar_masks(g, max_len, alphabet), [get_automaton(VALENCE)]))
    expected = {
        s for n in range(1, max_len + 1) for s in map("".join, itertools.product(alphabet, repeat=n))
        if g.is_valid(s) and "(." not in s and Chem.MolFromSmiles(s, sanitize=False) is not None and not over_valence(s)
    }
    assert dead == 0 and written == expected
    rings_only, _ = language(IntersectedMasks(grammar_masks(g, max_len, alphabet), [get_automaton(RINGS)]))
    assert written < rings_only  # the valence check refused something


def test_a_length_too_short_for_any_ring_free_string_is_one_error():
    class NeedsTwo(CharAutomaton):
        name, description = "needs-two", "at least two characters"

        def start(self):
            return 0

        def step(self, state, char):
            return min(state + 1, 2)

        def accepts(self, state):
            return state == 2

    with pytest.raises(AutomatonError, match=r"no string of at most 1 characters is both in the grammar's language and accepted by needs-two"):
        IntersectedMasks(grammar_masks(load_grammar("smiles"), 1, "C"), [NeedsTwo()])


def test_cli_sample_with_an_automaton(tmp_path):
    """`sample --automaton smiles-rings` on a (briefly trained) SMILES model: every sample is
    grammar-valid with paired ring labels, the same seed gives the same samples, and an unknown
    automaton is one line before any sampling."""
    import json

    from click.testing import CliRunner

    from gumbelseq.cli import main

    data = tmp_path / "mols.txt"
    data.write_text("\n".join(["C1CC1", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "C1CCC2CCCCC2C1", "CCO", "N#CC1CC1"] * 20) + "\n")
    runner = CliRunner()
    r = runner.invoke(main, ["train", "-g", "smiles", "-b", "mle-lstm", "--iterations", "30", "--data", str(data),
                             "--out", str(tmp_path / "run"), "--device", "cpu", "-o", "hidden=16"])
    assert r.exit_code == 0, r.output
    args = ["sample", "--run", str(tmp_path / "run"), "-n", "40", "--seed", "3", "--automaton", RINGS]
    first = runner.invoke(main, [*args, "--json"])
    assert first.exit_code == 0, first.output
    obj = json.loads(first.stdout)
    assert obj["constrained"] is True and obj["automata"] == [RINGS]
    g = load_grammar("smiles")
    assert len(obj["samples"]) == 40 and all(g.is_valid(s) and rings_pair(s) for s in obj["samples"]), obj["samples"]
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and again.stdout.splitlines() == obj["samples"]
    r = runner.invoke(main, ["sample", "--run", str(tmp_path / "run"), "--automaton", "nope"])
    assert (r.exit_code, r.stdout) == (1, "") and r.stderr.startswith("Error: unknown automaton 'nope'; known automata: ")


class _EndsWith(CharAutomaton):
    """The last character is ``ch`` (an exact bound: 0 or 1)."""

    def __init__(self, ch):
        self.ch, self.name, self.description = ch, f"ends-with-{ch}", "ends with " + ch

    def start(self):
        return False

    def step(self, state, char):
        return char == self.ch

    def accepts(self, state):
        return state

    def min_chars(self, state):
        return 0 if state else 1


class _EvenCount(CharAutomaton):
    """An even number of ``ch`` (bound 0 or 1)."""

    def __init__(self, ch):
        self.ch, self.name, self.description = ch, f"even-{ch}", "an even number of " + ch

    def start(self):
        return 0

    def step(self, state, char):
        return state ^ (char == self.ch)

    def accepts(self, state):
        return state == 0

    def min_chars(self, state):
        return state


def _accepted_by(automaton, s):
    return automaton.accepts_string(s)


@pytest.mark.parametrize("spec,alphabet,max_len,extra", [
    ("smiles", "C1=", 7, [_EndsWith("1")]),
    ("smiles", "C12()", 6, [_EvenCount("1")]),
    ("dyck", "()[]", 8, [_EvenCount("("), _EndsWith(")")]),
    ("arith", "x+", 5, [_EndsWith("x"), _EndsWith("x")]),
])
def test_brute_force_with_several_automata(spec, alphabet, max_len, extra):
    """One character may serve several automata (a ring closure that is also the last
    character): their bounds were summed, and real strings were pruned ("C1=CCC1" could not be
    written; arith "x" at length 1 was "impossible"). Found by an independent brute-force probe."""
    g = load_grammar(spec)
    automata_ = ([get_automaton(RINGS)] if spec == "smiles" else []) + extra
    masks = IntersectedMasks(grammar_masks(g, max_len, alphabet), automata_)
    written, dead = language(masks)
    expected = {
        s
        for n in range(1, max_len + 1)
        for s in map("".join, itertools.product(alphabet, repeat=n))
        if g.is_valid(s) and all(_accepted_by(a, s) for a in automata_)
    }
    assert dead == 0 and masks.gave_up == 0
    assert written == expected and written


def test_a_search_that_gives_up_does_not_claim_impossibility(monkeypatch):
    """With the search budget spent, the error said no string exists; it may well exist."""
    from gumbelseq.lang import intersection

    class OnlyTarget(CharAutomaton):  # states never merge: the prefix itself
        name, description = "only-target", "exactly one string"

        def start(self):
            return ""

        def step(self, state, char):
            return state + char

        def accepts(self, state):
            return state == "x/x/x/x/x"

    monkeypatch.setattr(intersection, "SEARCH_BUDGET", 20)
    with pytest.raises(AutomatonError, match=r"^found no string of at most 9 characters .* within 20 search steps"):
        IntersectedMasks(grammar_masks(load_grammar("arith"), 9, "x+-*/"), [OnlyTarget()])
    monkeypatch.setattr(intersection, "SEARCH_BUDGET", 200_000)
    masks = IntersectedMasks(grammar_masks(load_grammar("arith"), 9, "x+-*/"), [OnlyTarget()])
    assert language(masks) == ({"x/x/x/x/x"}, 0)


@pytest.mark.parametrize("automata", [(), (RINGS,), (VALENCE,)], ids=["grammar", "rings", "valence"])
def test_long_sampling_drops_its_masks_between_chunks_and_draws_the_same(tmp_path, monkeypatch, automata):
    """Past ``mask_states_limit()`` engine states a run drops its masks (engines, table, automaton
    cache) before the next sampling chunk: memory stays bounded by about one chunk's states, and
    the samples are those of a run that keeps everything."""
    from gumbelseq.model import run as run_module
    from gumbelseq.model.run import load_run
    from gumbelseq.model.train import start_training

    strings = ["C1CC1", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "C1CCC2CCCCC2C1", "CCO", "N#CC1CC1"] * 20
    start_training(grammar="smiles", backend="mle-lstm", data=strings, out_dir=tmp_path / "run", device="cpu",
                   options={"hidden": 16, "kernel": "v2", "iterations": 20}, eval_every=0, final_samples=10)

    def draw(limit):
        monkeypatch.setattr(run_module, "mask_states_limit", lambda: limit)
        run = load_run(tmp_path / "run", device="cpu")
        run.trainer.sample_chunk = 40  # several chunks
        rows = []
        original = run._step_masks

        def watched(names):
            make = original(names)

            def counted(k):
                mask = make(k)
                rows.append(run.mask_states())  # what the chunk starts from
                return mask

            return counted

        run._step_masks = watched
        return run.sample(200, seed=2, constrained=True, automata=list(automata)), run, rows

    kept, kept_run, kept_rows = draw(10**9)
    dropped, dropped_run, dropped_rows = draw(100)
    assert dropped == kept and len(kept) == 200
    assert kept_run.mask_resets == 0 and kept_rows == sorted(kept_rows) and kept_rows[-1] > 100
    assert dropped_run.mask_resets >= 3
    assert max(dropped_rows) <= 100 < max(kept_rows)  # each chunk starts from at most the limit
    if automata:
        assert dropped_run.search_gave_up(automata) == 0
        # the automaton's cache went too: each build has its own instance, not the registered one
        used = dropped_run.constraint(automata).automata[0]
        assert used is not get_automaton(automata[0]) and type(used) is type(get_automaton(automata[0]))
