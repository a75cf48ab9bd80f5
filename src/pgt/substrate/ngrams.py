"""N-gram sources for the bvv241 layout: corpus mining, the reference's lists, extra-token files.

All three give plain token strings; `collect_ngrams` unites them for one family.

A corpus is read by pgt's one corpus reader (`pgt.corpus.sources`): any SOURCE that
`pgt data prepare` takes (text and fortune files, JSONL, parquet, directories, saved or
`hf:` datasets, `default`), each tagged with a language (`LANG=SOURCE`; untagged sources
count as language "xx"). Mining follows the reference's counting rules
(docs/substrate.md, "N-gram mining"; docs/data.md, "N-gram mining reads the same documents"):
every line of every document is counted on its own; a line
containing CJK yields character n-grams over its non-space characters, any other line
yields n-grams inside the words that `WORD_PATTERN` matches. Words are counted first and
expanded into n-grams once per distinct word, which keeps mining fast on large corpora.
"""

from __future__ import annotations

import ast
import heapq
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pgt.corpus.sources import ReadStats, Source, resolve_sources
from pgt.errors import PgtError, one_line
from pgt.io import file_sha256
from pgt.substrate.layout import Family

MINED_TOP = 1000  # the reference keeps the top 1,000 per n when mining
WORD_PATTERN = re.compile(r"\b[a-zA-Z\u00C0-\u017F\u0400-\u04FF']+\b")
CJK_PATTERN = re.compile(r"[\u4E00-\u9FFF\u3040-\u30FF\uAC00-\uD7AF]")
QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
DIGITS = re.compile(r"\d")
CONTROL_SPACE = re.compile(r"[\t\n\x0b\x0c\r\x1c-\x1f\x85]")
SPACES = re.compile(r"\s+")

# Per language: n -> [(ngram, count), ...], most frequent first (the reference's format).
TopNgrams = dict[int, list[tuple[str, int]]]


@dataclass
class NgramSet:
    """The n-gram strings for one build and where they came from (kind, name, sha256, ...)."""

    strings: set[str] = field(default_factory=set)
    sources: list[dict[str, object]] = field(default_factory=list)


def normalise(text: str) -> str:
    """The reference's clean-up: quotes to ', digits deleted, control white space to spaces."""
    return CONTROL_SPACE.sub(" ", DIGITS.sub("", text.translate(QUOTES)))


def parse_corpus_arg(spec: str | os.PathLike, strict: bool = False) -> list[Source]:
    """`[LANG=]SOURCE` -> its sources (a directory: its text, JSONL and parquet files, sorted).

    `strict` makes invalid UTF-8 an error instead of a warned replacement.
    """
    return resolve_sources([spec], strict=strict)


class NgramCounter:
    """Counts one language's n-grams for the given orders with the reference's rules."""

    def __init__(self, orders: Iterable[int]) -> None:
        self.orders = tuple(sorted(set(orders)))
        self.words: Counter[str] = Counter()
        self.cjk: dict[int, Counter[str]] = {n: Counter() for n in self.orders}

    def add(self, document: str) -> None:
        document = normalise(document)
        if CJK_PATTERN.search(document):
            chars = SPACES.sub("", document)
            for n in self.orders:
                self.cjk[n].update(chars[i : i + n] for i in range(len(chars) - n + 1))
        else:
            self.words.update(WORD_PATTERN.findall(document))

    def top(self, k: int) -> TopNgrams:
        """The `k` most frequent n-grams per n (ties broken by the string, for determinism)."""
        result: TopNgrams = {}
        for n in self.orders:
            counts = Counter(self.cjk[n])
            for word, count in self.words.items():
                for i in range(len(word) - n + 1):
                    counts[word[i : i + n]] += count
            best = heapq.nsmallest(k, counts.items(), key=lambda item: (-item[1], item[0]))
            if best:
                result[n] = best
        return result


def mine_ngrams(
    sources: Iterable[Source], orders: Iterable[int], top: int = MINED_TOP
) -> tuple[dict[str, TopNgrams], list[dict[str, object]]]:
    """Mine the top-`top` n-grams per language and n; also return each source's name and sha256.

    The sha256 is the file's, or for a dataset that of its documents' text.
    """
    counters: dict[str, NgramCounter] = {}
    provenance: list[dict[str, object]] = []
    for source in sources:
        counter = counters.setdefault(source.language, NgramCounter(orders))
        stats = ReadStats()
        for text, _ in source.pieces(stats):
            for line in text.split("\n"):  # pieces end at line ends or white space: lines stay whole
                counter.add(line)
        provenance.append(
            {
                "kind": "corpus",
                "language": source.language,
                "name": source.name,
                "sha256": source.file_sha256() or stats.hasher.hexdigest(),
            }
        )
    mined = {language: counter.top(top) for language, counter in sorted(counters.items())}
    return {language: lists for language, lists in mined.items() if lists}, provenance


def read_reference_lists(path: str | os.PathLike) -> dict[str, TopNgrams]:
    """Read a list file in the reference's format (a Python literal; see docs/substrate.md, "N-gram lists").

    The file is parsed with `ast.literal_eval`, never executed. Returns language -> n -> list.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PgtError(f"n-gram file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PgtError(f"n-gram file {path} cannot be read: {one_line(exc)}") from None
    try:
        data = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise PgtError(
            f"n-gram file {path} is not a Python literal in the reference's format: {one_line(exc)}"
        ) from None
    try:
        lists = {
            entry["lang"]: {int(n): [(str(g), int(c)) for g, c in pairs] for n, pairs in entry["top_ngrams"].items()}
            for entry in data
        }
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise PgtError(
            f"n-gram file {path} is not a list of {{'lang', 'top_ngrams': {{n: [(ngram, count), ...]}}}}: "
            f"{one_line(exc)}"
        ) from None
    if not any(pairs for per_n in lists.values() for pairs in per_n.values()):
        raise PgtError(f"n-gram file {path} holds no n-grams")
    return lists


def read_extra_tokens(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """Token strings from a file, one per line, stripped; multi-character ones only.

    With `limit`, keep the `limit` shortest (ties by the string), as the reference does
    with its intersection list.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            strings = {line.strip() for line in handle}
    except FileNotFoundError:
        raise PgtError(f"extra-token file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PgtError(f"extra-token file {path} cannot be read: {one_line(exc)}") from None
    tokens = sorted((s for s in strings if len(s) > 1), key=lambda s: (len(s), s))
    if not tokens:
        raise PgtError(f"extra-token file {path} holds no multi-character token")
    return tokens if limit is None else tokens[:limit]


def select_top(lists: dict[str, TopNgrams], orders: Iterable[int], k: int) -> set[str]:
    """The union over languages of the first `k` n-grams for each n in `orders`."""
    wanted = set(orders)
    return {ngram for per_n in lists.values() for n, pairs in per_n.items() if n in wanted for ngram, _ in pairs[:k]}


def collect_ngrams(
    family: Family,
    *,
    ngram_files: Iterable[str | os.PathLike] = (),
    extra_token_files: Iterable[str | os.PathLike] = (),
    corpus: Iterable[str | os.PathLike] = (),
    strict: bool = False,
) -> NgramSet:
    """Unite every n-gram source of a build, with the family's top-K and extra-token limit."""
    result = NgramSet()
    for path in map(Path, ngram_files):
        lists = read_reference_lists(path)
        result.strings |= select_top(lists, family.ngram_orders, family.top_k)
        result.sources.append({"kind": "ngrams", "name": path.name, "sha256": file_sha256(path)})
    for path in map(Path, extra_token_files):
        result.strings.update(read_extra_tokens(path, family.extra_token_limit))
        result.sources.append({"kind": "extra-tokens", "name": path.name, "sha256": file_sha256(path)})
    sources = [source for spec in corpus for source in parse_corpus_arg(spec, strict)]
    if sources:
        mined, provenance = mine_ngrams(sources, family.ngram_orders)
        if not mined:
            raise PgtError("the corpus yields no n-grams (is it empty, or without words of 2+ letters?)")
        result.strings |= select_top(mined, family.ngram_orders, family.top_k)
        result.sources.extend(provenance)
    if not result.sources:
        raise PgtError(f"family {family.name} needs n-grams: give --ngrams, --extra-tokens or --corpus")
    return result
