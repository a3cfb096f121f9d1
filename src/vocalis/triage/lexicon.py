"""Gravity lexicon: grave words and phrases in a call transcript, negation-aware.

A :class:`GravityLexicon` holds weighted terms (``"not breathing"`` 1.0, ``"bleeding"`` 0.8, …) in
categories (medical, violence, fire, …). :meth:`GravityLexicon.find` matches them on the word
sequence of a transcript, longest phrase first, and marks a hit *negated* when a negator
(``no``, ``not``, ``isn't``, ``nobody`` …) stands within :attr:`GravityLexicon.negation_window`
words before it in the same clause ("there is **no** fire" is negated; "no, there's a fire" is
not, because the comma ends the clause; "he is not breathing" matches the phrase "not
breathing" itself). Negated hits are reported but carry no weight.

Users replace or extend the default list with a JSON file::

    {"terms": [{"phrase": "gas leak", "weight": 0.8, "category": "hazard"}],
     "negators": ["no", "not"], "extend": true}

(``"extend": true`` adds to the default list; otherwise the file's terms replace it.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vocalis.errors import ConfigError

_T = tuple[str, float, str]
DEFAULT_TERMS: tuple[_T, ...] = (
    # medical
    ("not breathing", 1.0, "medical"), ("stopped breathing", 1.0, "medical"), ("can't breathe", 1.0, "medical"),
    ("cannot breathe", 1.0, "medical"), ("no pulse", 1.0, "medical"), ("heart attack", 1.0, "medical"),
    ("cardiac arrest", 1.0, "medical"), ("unconscious", 0.9, "medical"), ("unresponsive", 0.9, "medical"),
    ("not responding", 0.9, "medical"), ("collapsed", 0.8, "medical"), ("choking", 0.9, "medical"),
    ("overdose", 0.9, "medical"), ("seizure", 0.8, "medical"), ("stroke", 0.8, "medical"),
    ("bleeding", 0.8, "medical"), ("blood", 0.6, "medical"), ("chest pain", 0.8, "medical"),
    ("drowning", 1.0, "medical"), ("dying", 0.9, "medical"), ("dead", 0.8, "medical"),
    ("injured", 0.6, "medical"), ("hurt", 0.5, "medical"), ("pain", 0.4, "medical"),
    ("ambulance", 0.7, "medical"), ("pregnant", 0.3, "medical"), ("labour", 0.4, "medical"),
    # violence
    ("shot", 0.9, "violence"), ("shooting", 1.0, "violence"), ("gun", 0.9, "violence"),
    ("knife", 0.9, "violence"), ("stabbed", 1.0, "violence"), ("attacked", 0.8, "violence"),
    ("attacking", 0.8, "violence"), ("beating", 0.6, "violence"), ("assault", 0.8, "violence"),
    ("rape", 1.0, "violence"), ("raped", 1.0, "violence"), ("kidnapped", 1.0, "violence"),
    ("hostage", 1.0, "violence"), ("kill", 0.8, "violence"), ("killed", 0.9, "violence"),
    ("murder", 0.9, "violence"), ("break in", 0.6, "violence"), ("broke in", 0.7, "violence"),
    ("intruder", 0.7, "violence"), ("bomb", 1.0, "violence"), ("police", 0.4, "violence"),
    ("suicide", 1.0, "self-harm"), ("kill myself", 1.0, "self-harm"), ("overdosed", 0.9, "self-harm"),
    # fire and hazards
    ("fire", 0.8, "fire"), ("smoke", 0.6, "fire"), ("burning", 0.7, "fire"), ("explosion", 0.9, "fire"),
    ("gas leak", 0.8, "hazard"), ("trapped", 0.9, "hazard"), ("crash", 0.7, "accident"),
    ("accident", 0.6, "accident"), ("hit by a car", 0.9, "accident"),
    # calls for help
    ("help", 0.4, "help"), ("emergency", 0.4, "help"), ("bachao", 0.6, "help"), ("bacho", 0.6, "help"),
)
DEFAULT_NEGATORS: tuple[str, ...] = (
    "no", "not", "never", "nobody", "none", "nothing", "without", "isn't", "aren't", "wasn't", "weren't",
    "don't", "doesn't", "didn't", "won't", "can't", "cannot", "hasn't", "haven't", "no one", "nowhere",
)
_WORD = re.compile(r"[a-z0-9']+")
_CLAUSE_END = re.compile(r"[,.;:!?]\s*$")
_SCOPE_BREAKERS = frozenset({"but", "and", "because", "although", "though", "yet"})


@dataclass(frozen=True)
class Term:
    phrase: str
    weight: float
    category: str = "other"


@dataclass(frozen=True)
class Token:
    """One word of the text being searched: normalised ``word``, its time, and whether a clause ends after it."""

    word: str
    start: float | None = None
    end: float | None = None
    clause_end: bool = False


@dataclass(frozen=True)
class GravityHit:
    phrase: str
    category: str
    weight: float
    negated: bool
    start: float | None
    end: float | None
    context: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenize(words: Iterable[tuple[str, float | None, float | None]]) -> list[Token]:
    """Word tokens (lower case, apostrophes kept) from ``(text, start, end)`` items, clause ends marked."""
    out: list[Token] = []
    for text, start, end in words:
        t = text.lower().replace("’", "'")
        parts = _WORD.findall(t)
        for j, p in enumerate(parts):
            last = j == len(parts) - 1
            out.append(Token(p, start, end, clause_end=last and bool(_CLAUSE_END.search(t))))
    return out


def _split_phrase(phrase: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(phrase.lower().replace("’", "'")))


@dataclass(frozen=True)
class GravityLexicon:
    """Weighted grave terms with negation scope (see the module docstring).

    >>> lex = GravityLexicon()
    >>> [(h.phrase, h.negated) for h in lex.find_text("He is not breathing, there is no fire.")]
    [('not breathing', False), ('fire', True)]
    """

    terms: tuple[Term, ...] = tuple(Term(*t) for t in DEFAULT_TERMS)
    negators: tuple[str, ...] = DEFAULT_NEGATORS
    negation_window: int = 3
    _index: dict[tuple[str, ...], Term] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.terms:
            raise ConfigError("lexicon terms=[] must hold at least one term")
        if self.negation_window < 0:
            raise ConfigError(f"negation_window={self.negation_window} must be >= 0")
        for t in self.terms:
            if not _split_phrase(t.phrase):
                raise ConfigError(f"lexicon phrase={t.phrase!r} must contain at least one word")
            if not 0.0 <= float(t.weight) <= 1.0:
                raise ConfigError(f"lexicon phrase={t.phrase!r}: weight={t.weight!r} must be in [0, 1]")
            self._index[_split_phrase(t.phrase)] = t

    @property
    def max_len(self) -> int:
        return max(len(k) for k in self._index)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "lexicon") -> GravityLexicon:
        if not isinstance(data, dict) or not isinstance(data.get("terms"), list):
            raise ConfigError(f"{source}: must be a JSON object with a 'terms' list")
        terms = []
        for i, t in enumerate(data["terms"]):
            if not isinstance(t, dict) or not isinstance(t.get("phrase"), str):
                raise ConfigError(f"{source}: terms[{i}]={t!r} must be an object with a 'phrase' string")
            w = t.get("weight", 0.5)
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise ConfigError(f"{source}: terms[{i}] weight={w!r} must be a number in [0, 1]")
            terms.append(Term(t["phrase"], float(w), str(t.get("category", "other"))))
        if data.get("extend"):
            own = {_split_phrase(t.phrase) for t in terms}
            terms = [t for t in cls().terms if _split_phrase(t.phrase) not in own] + terms
        negators = data.get("negators", DEFAULT_NEGATORS)
        if not isinstance(negators, list | tuple) or not all(isinstance(n, str) for n in negators):
            raise ConfigError(f"{source}: negators={negators!r} must be a list of strings")
        window = data.get("negation_window", 3)
        if isinstance(window, bool) or not isinstance(window, int):
            raise ConfigError(f"{source}: negation_window={window!r} must be an integer")
        return cls(tuple(terms), tuple(n.lower() for n in negators), window)

    @classmethod
    def from_file(cls, path: str | Path) -> GravityLexicon:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"lexicon={p} not found") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"lexicon={p} is not a readable JSON file: {e}") from e
        return cls.from_dict(data, source=f"lexicon={p}")

    def to_dict(self) -> dict[str, Any]:
        return {"terms": [asdict(t) for t in self.terms], "negators": list(self.negators),
                "negation_window": self.negation_window}

    def _negator(self, tokens: Sequence[Token], i: int, floor: int = 0) -> int | None:
        """Index of a negator within the window before token ``i`` in the same clause and not before
        ``floor`` (the end of the previous hit: the "not" of "not breathing" negates nothing after
        it, as an unpunctuated transcript "not breathing he collapsed" needs), else None."""
        neg1 = {n for n in self.negators if " " not in n}
        neg2 = {tuple(n.split()) for n in self.negators if " " in n}
        j = i - 1
        while j >= floor and i - j <= self.negation_window:
            tok = tokens[j]
            if tok.clause_end or tok.word in _SCOPE_BREAKERS:
                return None
            if tok.word in neg1:
                return j
            if j > floor and (tokens[j - 1].word, tok.word) in neg2:
                return j - 1
            j -= 1
        return None

    def find(self, tokens: Sequence[Token]) -> list[GravityHit]:
        """All hits in ``tokens``, in order, longest phrase first at each position."""
        hits: list[GravityHit] = []
        i, n, longest = 0, len(tokens), self.max_len
        floor = 0  # the end of the last hit
        while i < n:
            for k in range(min(longest, n - i), 0, -1):
                key = tuple(t.word for t in tokens[i:i + k])
                term = self._index.get(key)
                if term is None or any(t.clause_end for t in tokens[i:i + k - 1]):
                    continue
                neg = self._negator(tokens, i, floor)
                negated = neg is not None
                ctx = " ".join(t.word for t in tokens[neg if neg is not None else i:i + k])
                hits.append(GravityHit(term.phrase, term.category, 0.0 if negated else term.weight, negated,
                                       tokens[i].start, tokens[i + k - 1].end, ctx))
                i = floor = i + k
                break
            else:
                i += 1
        return hits

    def find_text(self, text: str) -> list[GravityHit]:
        """:meth:`find` on plain text (no times)."""
        return self.find(tokenize((w, None, None) for w in text.split()))


def gravity_score(hits: Sequence[GravityHit]) -> float:
    """Noisy-OR of the distinct non-negated terms' weights: 1 - prod(1 - w).

    >>> round(gravity_score([GravityHit("fire", "fire", 0.8, False, None, None, ""),
    ...                      GravityHit("fire", "fire", 0.8, False, None, None, ""),
    ...                      GravityHit("smoke", "fire", 0.5, False, None, None, "")]), 3)
    0.9
    """
    best: dict[str, float] = {}
    for h in hits:
        if not h.negated:
            best[h.phrase] = max(best.get(h.phrase, 0.0), h.weight)
    p = 1.0
    for w in best.values():
        p *= 1.0 - w
    return 1.0 - p
