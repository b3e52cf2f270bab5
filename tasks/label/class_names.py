"""One spelling per class: merge case and whitespace variants of a class name, stop on likely typos.

A folder or manifest written by hand spells one class several ways (``Good``, ``good``, ``good ``). Taken
literally, binary mode picks one spelling as the negative class and trains every other spelling as defective: a
probe with 5 ``Good`` and 25 ``good`` rows trained the 25 as defects and still reported 0.93 accuracy. So names
that differ only in case or surrounding whitespace are merged (the most common spelling is shown), with a note, and
a name that is probably a typo of another stops the run with both spellings and their counts, because vigil cannot
know which class the typo meant. Names that differ only in digits (``Class1``, ``Class2``), in one short token
(``type_a``, ``type_b``) or by a negating prefix (``ok``/``nok``, ``normal``/``abnormal``) are distinct classes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

#: Prefixes that turn a class name into its opposite; ``nok`` is not a typo of ``ok``.
NEGATING_PREFIXES = ("a", "ab", "n", "no", "non", "not", "un", "in", "im", "dis")
#: A class with fewer than this share of the rows that is a near twin of a larger class is taken as a typo.
RARE_SHARE = 0.10
_SEPARATORS = re.compile(r"[\s_\-.]+")
_DIGITS = re.compile(r"\d+")


def fold(name: str) -> str:
    """The key two spellings of one class share: surrounding whitespace dropped, case folded."""
    return name.strip().casefold()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _negates(longer: str, shorter: str) -> bool:
    rest = longer.removesuffix(shorter)
    return rest != longer and _SEPARATORS.sub("", rest) in NEGATING_PREFIXES


def _one_short_token_apart(a: str, b: str) -> bool:
    """``type_a`` vs ``type_b``: same tokens but one, and that one at most two characters on both sides."""
    ta, tb = _SEPARATORS.split(a), _SEPARATORS.split(b)
    if len(ta) != len(tb) or len(ta) < 2:
        return False
    differ = [(x, y) for x, y in zip(ta, tb, strict=True) if x != y]
    return len(differ) == 1 and max(len(differ[0][0]), len(differ[0][1])) <= 2


def near_twin(a: str, b: str) -> int | None:
    """The edit distance between two class names when one is probably a misspelling of the other, else None.

    Compared case-folded. The allowed distance grows with the name: 1 for names of up to 5 characters
    (``goood``/``good``), 2 from 6 on (``defectve``/``defective``), so ``ok``/``ng`` stay apart.
    """
    ka, kb = fold(a), fold(b)
    if ka == kb or _DIGITS.sub("", ka) == _DIGITS.sub("", kb):
        return None
    if _negates(ka, kb) or _negates(kb, ka) or _one_short_token_apart(ka, kb):
        return None
    d = edit_distance(ka, kb)
    limit = min(2, max(1, min(len(ka), len(kb)) // 3))
    return d if d <= limit else None


@dataclass(frozen=True)
class ClassNames:
    """Raw label -> the class name used, and a note per merged group of spellings."""

    mapping: dict[str, str]
    counts: dict[str, int]  # class name -> rows
    notes: list[str]


def merge_spellings(raw_labels: list[str]) -> ClassNames:
    """Merge labels that differ only in case or surrounding whitespace; the most common spelling names the class.

    Ties go to the spelling that sorts first, so the name does not depend on row order.
    """
    by_key: dict[str, Counter[str]] = {}
    for label, n in Counter(raw_labels).items():
        by_key.setdefault(fold(label), Counter())[label] = n
    mapping: dict[str, str] = {}
    counts: dict[str, int] = {}
    notes: list[str] = []
    for spellings in by_key.values():
        ranked = sorted(spellings.items(), key=lambda kv: (-kv[1], kv[0]))
        name = ranked[0][0].strip()
        counts[name] = sum(spellings.values())
        mapping.update({label: name for label in spellings})
        if len(ranked) > 1:
            listed = ", ".join(f"{label!r} ({n} rows)" for label, n in ranked)
            notes.append(
                f"class names {listed} differ only in case or surrounding spaces: merged as {name!r} "
                f"({counts[name]} rows); use one spelling to silence this warning"
            )
    return ClassNames(mapping, dict(sorted(counts.items())), notes)


def typo_error(counts: dict[str, int], negative: str | None) -> str | None:
    """The sentence that stops the run when a class name looks like a typo of another, else None.

    Two cases: in binary mode (``negative`` given) a name near the negative class, which would silently be
    trained as a defect; and a rare class (< ``RARE_SHARE`` of the rows) near a larger class.
    """
    total = sum(counts.values())
    if negative is not None:
        for name in counts:
            if name != negative and (d := near_twin(name, negative)) is not None:
                return (
                    f"class {name!r} ({counts[name]} images) is {d} edit{'s' if d > 1 else ''} from the negative "
                    f"class {negative!r} ({counts[negative]} images) and would be trained as defective; correct the "
                    f"misspelt labels or folder name, or rename one class so the names differ more if both are real"
                )
    for name in sorted(counts, key=lambda c: (counts[c], c)):
        if counts[name] >= RARE_SHARE * total:
            continue
        for other in sorted(counts, key=lambda c: (-counts[c], c)):
            if counts[other] > counts[name] and (d := near_twin(name, other)) is not None:
                return (
                    f"class {name!r} ({counts[name]} of {total} images) is {d} edit{'s' if d > 1 else ''} from the "
                    f"larger class {other!r} ({counts[other]} images) and looks like a typo; give those images one "
                    f"spelling, or rename one class so the names differ more if both are real"
                )
    return None
