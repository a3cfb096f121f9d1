"""The corpus data model: a list of labelled utterances with speakers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from vocalis.errors import DataError
from vocalis.labels import sort_labels


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. ``path`` is absolute; ``extra`` holds corpus-specific fields."""

    path: Path
    label: str
    speaker: str
    gender: str | None = None
    corpus: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def speaker_key(self) -> str:
        """Speaker id unique across corpora (``corpus:speaker``)."""
        return f"{self.corpus}:{self.speaker}" if self.corpus else self.speaker


@dataclass
class Corpus:
    """A named collection of utterances rooted at a folder."""

    name: str
    root: Path
    items: list[Utterance]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[str]:
        return sort_labels({u.label for u in self.items})

    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.items})

    def label_counts(self) -> dict[str, int]:
        c = Counter(u.label for u in self.items)
        return {lab: c[lab] for lab in self.labels}

    def filter(self, keep: Callable[[Utterance], bool]) -> Corpus:
        return Corpus(self.name, self.root, [u for u in self.items if keep(u)])

    def map_labels(self, mapping: Mapping[str, str | None]) -> Corpus:
        """Rename/merge labels; a label mapped to ``None`` (or ``""``) drops its utterances."""
        out = []
        for u in self.items:
            new = mapping.get(u.label, u.label)
            if new:
                out.append(replace(u, label=new))
        return Corpus(self.name, self.root, out)

    def restrict(self, labels: Iterable[str]) -> Corpus:
        keep = set(labels)
        return self.filter(lambda u: u.label in keep)

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "n": len(self.items),
            "speakers": len(self.speakers),
            "labels": self.label_counts(),
        }

    @staticmethod
    def merge(corpora: Iterable[Corpus]) -> Corpus:
        cs = list(corpora)
        if not cs:
            raise DataError("no corpora given to merge")
        items = [u for c in cs for u in c.items]
        return Corpus("+".join(c.name for c in cs), cs[0].root, items)
