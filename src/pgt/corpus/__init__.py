"""Reading text: the one corpus reader behind token data, n-gram mining and evaluation (docs/data.md).

resolve_sources(specs) -> [Source]    files, folders, globs, `hf:` datasets, or the default corpus
Source(path, kind).documents()       one input's documents (text, lines, fortunes, JSONL, parquet, hf:), language-tagged
default_corpus_files(languages)       the embedded default corpus (Debian's fortune files), fortunes.py
hub.py                                `hf:NAME[:CONFIG]` specs, read with a timeout

It sits at the bottom with errors.py and io.py: substrate/ and data/ import it, it imports neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgt.lazy import lazy_exports

if TYPE_CHECKING:
    from pgt.corpus.fortunes import default_corpus_files
    from pgt.corpus.sources import Source, resolve_sources

_EXPORTS = {
    "Source": "sources",
    "default_corpus_files": "fortunes",
    "resolve_sources": "sources",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
