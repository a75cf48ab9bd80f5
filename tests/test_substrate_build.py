"""build_substrate: the whole pipeline on real text, determinism, any-tokenizer mode, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from pgt.errors import PgtError
from pgt.substrate import Substrate, build_substrate
from pgt.substrate.font import find_font


def test_fortune_substrate_is_complete_and_consistent(substrate_dir: Path):
    substrate = Substrate.load(substrate_dir)
    meta = substrate.meta
    assert (substrate.vocab_size, substrate.dim) == (65_536 + 256, 64)
    assert (meta["family"], meta["cell"], meta["reference_vocab_size"]) == ("bvv241-2-3", 32, 65_536)
    assert 0 < meta["ngrams"] <= 2 * 2 * 338 and meta["ngrams_dropped"] == 0
    params = meta["params"]
    assert params["augment"] == {"rotate_deg": 4.0, "shift_px": 2, "noise_fraction": 0.01, "blur_radius": 0.5}
    assert params["fonts"][0]["name"] == find_font().name and len(params["fonts"][0]["sha256"]) == 64
    assert {source["kind"] for source in params["sources"]} == {"corpus"}

    assert np.allclose(substrate.embeddings.norm(dim=1).numpy(), 1.0, atol=1e-5)
    tokenizer = AutoTokenizer.from_pretrained(str(substrate_dir))
    text = "Hello, Welt! Привет 😀"
    assert tokenizer.encode(text) == substrate.tokenizer.encode(text)
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert (tokenizer.convert_tokens_to_ids("A"), tokenizer.pad_token_id, tokenizer.eos_token_id) == (65, 57344, 57346)
    assert len(tokenizer.encode("the")) == 1  # "the" is mined from the English fortunes

    rows = substrate.embeddings.numpy()
    latin_a, greek_a, cyrillic_a = (tokenizer.convert_tokens_to_ids(c) for c in "AΑА")
    assert rows[latin_a] @ rows[greek_a] > 0.99 and rows[latin_a] @ rows[cyrillic_a] > 0.99


def test_any_tokenizer_mode_is_deterministic(byte_level_tokenizer_dir: Path, tmp_path: Path):
    first = build_substrate(tmp_path / "a", family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=16,
                            workers=1, progress=False)  # fmt: skip
    second = build_substrate(tmp_path / "b", family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=16,
                             workers=2, progress=False)  # fmt: skip
    weights = "glyph_embeddings.safetensors"
    assert (first / weights).read_bytes() == (second / weights).read_bytes()
    a, b = Substrate.load(first), Substrate.load(second)
    assert a.fingerprint == b.fingerprint
    assert (a.vocab_size, a.dim, a.meta["cell"]) == (400, 16, 32)
    assert a.tokenizer.encode("the nation") == AutoTokenizer.from_pretrained(str(byte_level_tokenizer_dir)).encode(
        "the nation"
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": "bvv241-2-3", "dim": 32 * 32 + 1}, "embedding dim 1025"),
        ({"family": "bvv241-abs"}, "needs n-grams"),
        ({"family": "bvv241-2-3", "font": "/nonexistent/unifont.otf"}, "font /nonexistent/unifont.otf"),
        ({"family": "bvv241-nemo"}, "--from-tokenizer"),
        ({"family": "bvv241-2-3", "from_tokenizer": "."}, "use --family bvv241-nemo"),
        ({"family": "bvv241-9"}, "unknown tokenizer family"),
    ],
)
def test_bad_requests_fail_early_and_write_nothing(tmp_path: Path, corpus_files: list[Path], kwargs, message):
    kwargs.setdefault("corpus", [] if kwargs["family"] == "bvv241-abs" else corpus_files[:1])
    with pytest.raises(PgtError, match=message):
        build_substrate(tmp_path / "out", progress=False, **kwargs)
    assert leftovers(tmp_path) == []


def test_bad_ngram_sources_write_nothing(tmp_path: Path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "empty.txt").write_text("", encoding="utf-8")
    (inputs / "corrupt.txt").write_text("[{'lang': 'en', 'top_ngrams': {2: [('th',", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(PgtError, match="no n-grams"):
        build_substrate(out, family="bvv241-2-3", corpus=[inputs / "empty.txt"], progress=False)
    for bad in ("empty.txt", "corrupt.txt"):
        with pytest.raises(PgtError, match=bad):
            build_substrate(out, family="bvv241-2-3", ngram_files=[inputs / bad], progress=False)
    assert leftovers(tmp_path) == ["inputs"]


def test_existing_output_is_kept(byte_level_tokenizer_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(PgtError, match="already exists"):
        build_substrate(out, family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=8, progress=False)
    assert leftovers(tmp_path) == ["out"] and leftovers(out) == ["keep.txt"]
    build_substrate(out, family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=8, overwrite=True,
                    progress=False)  # fmt: skip
    assert leftovers(tmp_path) == ["out"] and "keep.txt" not in leftovers(out)
    assert Substrate.load(out).dim == 8
