"""The frozen visual Unicode substrate: bvv241 tokenizers and their glyph embeddings.

Names are imported on first use, so `import pgt.substrate` (and `pgt --help`) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgt.lazy import lazy_exports

if TYPE_CHECKING:
    from pgt.substrate.build import build_substrate
    from pgt.substrate.glyphs import (
        glyph_matrix,
        nearest_tokens,
        render_bitmap,
        render_canvas,
    )
    from pgt.substrate.layout import (
        FAMILIES,
        AugmentParams,
        Family,
        Layout,
        build_layout,
        get_family,
    )
    from pgt.substrate.ngrams import (
        collect_ngrams,
        mine_ngrams,
        read_extra_tokens,
        read_reference_lists,
    )
    from pgt.substrate.store import (
        BuildParams,
        Substrate,
        SubstrateMeta,
        fingerprint,
        save_substrate,
    )
    from pgt.substrate.tokenizer import build_tokenizer, load_tokenizer, token_texts

_EXPORTS = {
    "build_substrate": "build",
    "glyph_matrix": "glyphs",
    "nearest_tokens": "glyphs",
    "render_bitmap": "glyphs",
    "render_canvas": "glyphs",
    "AugmentParams": "layout",
    "FAMILIES": "layout",
    "Family": "layout",
    "Layout": "layout",
    "build_layout": "layout",
    "get_family": "layout",
    "collect_ngrams": "ngrams",
    "mine_ngrams": "ngrams",
    "read_extra_tokens": "ngrams",
    "read_reference_lists": "ngrams",
    "BuildParams": "store",
    "Substrate": "store",
    "SubstrateMeta": "store",
    "fingerprint": "store",
    "save_substrate": "store",
    "build_tokenizer": "tokenizer",
    "load_tokenizer": "tokenizer",
    "token_texts": "tokenizer",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
