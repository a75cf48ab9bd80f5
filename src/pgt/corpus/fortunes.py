"""The embedded default corpus: real multilingual prose from Debian's fortune packages.

`fortunes` (English), `fortunes-ru` and `fortunes-de` install plain-text files of
quotations separated by lines holding a single `%`. `make demo` and `make test`
install the packages; nothing here touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgt.errors import PgtError

FORTUNES_ROOT = Path(os.environ.get("PGT_FORTUNES_DIR", "/usr/share/games/fortunes"))
# Language -> sub-directory of the fortune root ("" is the English top level).
DEFAULT_LANGUAGES = {"en": "", "ru": "ru", "de": "de"}


def default_corpus_files(languages: tuple[str, ...] = ("en", "ru", "de")) -> list[Path]:
    """The fortune files of `languages`, sorted; a clear error if a package is missing."""
    files: list[Path] = []
    for lang in languages:
        if lang not in DEFAULT_LANGUAGES:
            raise PgtError(f"no default corpus for language {lang!r} (have: {', '.join(DEFAULT_LANGUAGES)})")
        folder = FORTUNES_ROOT / DEFAULT_LANGUAGES[lang]
        found = sorted(
            p for p in folder.glob("*") if p.is_file() and p.suffix not in {".dat", ".u8"} and not p.is_symlink()
        )
        if not found:
            package = "fortunes" if lang == "en" else f"fortunes-{lang}"
            raise PgtError(
                f"default corpus for {lang!r} not found in {folder}: install the Debian package {package} "
                "(make demo / make test do this) or set PGT_FORTUNES_DIR"
            )
        files.extend(found)
    return files
