"""The study's corpus: documents per language, split once into training and held-out text.

Held-out documents are the `heldout` ones per language with the smallest salted sha256 of
their text (the same documents whatever the file order, and independent of the hash with
which `pgt data prepare` picks its own validation split); the next `validation` ones by the
same order are validation documents (they choose the best expert, never score a claim); the
rest, in reading order and capped at `max_train`, is training text. Nothing held out or
validation is ever trained on: the arms' token data is prepared from the training documents
only (written as JSONL per language under OUT/corpus/).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pgt.errors import PgtError
from pgt.io import atomic_file
from pgt.records import Record
from pgt.study import adapter

CORPUS_FILE = "corpus.json"
DEFAULT_SPEC = "default"


@dataclass
class LanguageSplit(Record):
    """One language of the study's corpus."""

    WHAT = "study corpus language"
    language: str
    sources: list[str]
    train_file: str  # JSONL of the training documents (token data)
    ngram_file: str  # the same documents as plain text, blank-line separated (n-gram mining)
    train_documents: int
    heldout: list[str]  # the held-out documents themselves
    heldout_sha256: str  # identifies the scoring data
    validation: list[str]  # documents that choose between models (never trained on, never scored)


@dataclass
class StudyCorpus(Record):
    """OUT/corpus/corpus.json."""

    WHAT = "study corpus"
    languages: list[LanguageSplit]

    def language(self, code: str) -> LanguageSplit:
        for split in self.languages:
            if split.language == code:
                return split
        raise PgtError(f"the study corpus has no language {code!r} (have {', '.join(self.codes)})")

    @property
    def codes(self) -> list[str]:
        return [split.language for split in self.languages]

    @property
    def scoring_id(self) -> str:
        """A short id of all held-out text together (names the score files; equal id = equal scoring data)."""
        digest = hashlib.sha256(
            "".join(s.language + s.heldout_sha256 + _texts_sha256(s.validation) for s in self.languages).encode()
        )
        return digest.hexdigest()[:12]


def parse_corpus_specs(specs: list[str] | None) -> dict[str, list[str]]:
    """`LANG=SOURCE` items (repeatable per language) -> {lang: [sources]}; none: the default fortunes."""
    if not specs:
        return {lang: adapter.default_corpus(lang) for lang in adapter.default_languages()}
    languages: dict[str, list[str]] = {}
    for spec in specs:
        lang, sep, source = spec.partition("=")
        if not sep or not lang or not source:
            raise PgtError(f"--corpus {spec!r}: expected LANG=SOURCE, e.g. en=book.txt or ru=default")
        if source == DEFAULT_SPEC:
            languages.setdefault(lang, []).extend(adapter.default_corpus(lang))
        else:
            languages.setdefault(lang, []).append(source)
    return languages


HELDOUT_SALT = b"pgt-study-heldout\x00"


def _texts_sha256(texts: list[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()


def _key(text: str) -> str:
    return hashlib.sha256(HELDOUT_SALT + text.encode("utf-8")).hexdigest()


def split_corpus(
    languages: dict[str, list[str]], out: Path, *, heldout: int, validation: int, max_train: int | None
) -> StudyCorpus:
    """Split every language (see the module docstring) into OUT/corpus/; reuse a finished split."""
    path = out / CORPUS_FILE
    if path.is_file():
        saved = StudyCorpus.load(path)
        if {s.language: s.sources for s in saved.languages} == languages and all(
            len(s.heldout) == heldout and len(s.validation) == validation for s in saved.languages
        ):
            return saved
        raise PgtError(f"{out} holds a study corpus made from other sources or sizes; choose another --out")
    if "en" not in languages or len(languages) < 3:
        raise PgtError(
            "the study needs English and two more languages (the two experts are en+X and en+Y): "
            f"got {', '.join(languages) or 'none'}"
        )
    out.mkdir(parents=True, exist_ok=True)
    splits = []
    for lang, sources in languages.items():
        documents = list(dict.fromkeys(adapter.documents(sources)))  # reading order, duplicates once
        if len(documents) < 2 * (heldout + validation):
            raise PgtError(
                f"language {lang}: {len(documents)} documents, too few to hold out {heldout} "
                f"and {validation} for validation and still train (give more text)"
            )
        ordered = sorted(documents, key=_key)
        held, chosen = ordered[:heldout], ordered[heldout : heldout + validation]
        kept = set(held) | set(chosen)
        train = [text for text in documents if text not in kept]
        if max_train is not None:
            train = train[:max_train]
        train_file = out / f"train-{lang}.jsonl"
        with atomic_file(train_file, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in train)
        ngram_file = out / f"train-{lang}.txt"
        with atomic_file(ngram_file, "w", encoding="utf-8") as handle:
            handle.write("\n\n".join(train) + "\n")
        splits.append(
            LanguageSplit(
                lang, sources, str(train_file), str(ngram_file), len(train), held, _texts_sha256(held), chosen
            )
        )
    corpus = StudyCorpus(splits)
    corpus.save(path)
    return corpus
