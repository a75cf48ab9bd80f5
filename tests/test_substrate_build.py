"""build_substrate: the whole pipeline on real text, determinism, any-tokenizer mode, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from pgt.errors import PgtError
from pgt.model.loading import init_model_dir, load_model
from pgt.substrate import Substrate, build_substrate
from pgt.substrate.font import find_font
from pgt.substrate.store import SUBSTRATE_FILE, SubstrateMeta


def test_fortune_substrate_is_complete_and_consistent(substrate_dir: Path):
    substrate = Substrate.load(substrate_dir)
    meta = substrate.meta
    assert (substrate.vocab_size, substrate.dim) == (65_536 + 256, 64)
    assert (meta.family, meta.cell, meta.reference_vocab_size, meta.layout_engine) == (
        "bvv241-2-3",
        32,
        65_536,
        "basic",
    )
    assert 0 < meta.ngrams <= 2 * 2 * 338 and meta.ngrams_dropped == 0
    params = meta.params
    assert params.augment.to_json() == {"rotate_deg": 4.0, "shift_px": 2, "noise_fraction": 0.01, "blur_radius": 0.5}
    assert params.font.name == find_font().name and len(params.font.sha256) == 64
    assert params.pca_fit_rows == 65_536  # the byte-fallback rows are projected, not fitted
    assert {source["kind"] for source in params.sources} == {"corpus"}

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
    first = build_substrate(
        tmp_path / "a", family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=16, workers=1, progress=False
    )
    second = build_substrate(
        tmp_path / "b", family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=16, workers=2, progress=False
    )
    weights = "glyph_embeddings.safetensors"
    assert (first / weights).read_bytes() == (second / weights).read_bytes()
    a, b = Substrate.load(first), Substrate.load(second)
    assert a.fingerprint == b.fingerprint
    assert (a.vocab_size, a.dim, a.meta.cell) == (400, 16, 32)
    assert a.tokenizer.encode("the nation") == AutoTokenizer.from_pretrained(str(byte_level_tokenizer_dir)).encode(
        "the nation"
    )


def leftovers(folder: Path) -> list[str]:
    """What a build left in `folder`, apart from the lock file of its output (kept: removing it would race)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


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
    for overwrite in (False, True):  # not pgt's: kept, and --overwrite is not offered as a way out
        with pytest.raises(PgtError, match="was not written by pgt.*choose another --out$"):
            build_substrate(
                out,
                family="bvv241-nemo",
                from_tokenizer=byte_level_tokenizer_dir,
                dim=8,
                overwrite=overwrite,
                progress=False,
            )
        assert leftovers(tmp_path) == ["out"] and leftovers(out) == ["keep.txt"]
    (out / "keep.txt").unlink()
    out.rmdir()
    build_substrate(out, family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=8, progress=False)
    with pytest.raises(PgtError, match="already exists"):  # pgt's own: kept without --overwrite
        build_substrate(out, family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=16, progress=False)
    assert Substrate.load(out).dim == 8
    build_substrate(
        out, family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=16, overwrite=True, progress=False
    )
    assert leftovers(tmp_path) == ["out"] and Substrate.load(out).dim == 16


def nemo(out: Path, tokenizer_dir: Path, **kwargs) -> Path:
    return build_substrate(out, family="bvv241-nemo", from_tokenizer=tokenizer_dir, dim=8, progress=False, **kwargs)


def test_builds_are_byte_identical_and_the_layout_engine_is_fingerprinted(byte_level_tokenizer_dir, tmp_path):
    first, second = nemo(tmp_path / "a", byte_level_tokenizer_dir), nemo(tmp_path / "b", byte_level_tokenizer_dir)
    for name in sorted(p.name for p in first.iterdir()):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    raqm = nemo(tmp_path / "raqm", byte_level_tokenizer_dir, layout_engine="raqm")
    assert Substrate.load(raqm).meta.layout_engine == "raqm"
    assert Substrate.load(raqm).fingerprint != Substrate.load(first).fingerprint
    with pytest.raises(PgtError, match="unknown text layout engine 'pango'"):
        nemo(tmp_path / "c", byte_level_tokenizer_dir, layout_engine="pango")


def test_outputs_get_the_umask_modes(byte_level_tokenizer_dir, tmp_path):
    previous = os.umask(0o022)
    try:
        out = nemo(tmp_path / "shared", byte_level_tokenizer_dir)
    finally:
        os.umask(previous)
    assert oct(out.stat().st_mode & 0o777) == "0o755"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {
        p.name: "0o644" for p in out.iterdir()
    } and (out / "glyph_embeddings.safetensors").exists()


def test_a_substrate_or_model_of_the_old_format_is_refused_clearly(substrate_dir, tmp_path):
    model = init_model_dir(substrate_dir, tmp_path / "model", layers=1, heads=2)
    old = tmp_path / "old"
    shutil.copytree(substrate_dir, old)
    for directory in (old, model):
        meta = json.loads((directory / SUBSTRATE_FILE).read_text(encoding="utf-8"))
        meta["format_version"] = 1
        del meta["params"]["layout_engine"]
        (directory / SUBSTRATE_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(PgtError, match="older pgt .* rebuild it with `pgt substrate build`") as caught:
        Substrate.load(old)
    assert "\n" not in str(caught.value)
    with pytest.raises(PgtError, match="has format 1, expected 2"):
        load_model(model)


def test_substrate_meta_round_trips_and_rejects_bad_fields(substrate_dir, tmp_path):
    meta = SubstrateMeta.load(substrate_dir / SUBSTRATE_FILE)
    assert SubstrateMeta.from_json(json.loads(json.dumps(meta.to_json()))) == meta
    data = meta.to_json()
    data["params"]["cell"] = "32"
    with pytest.raises(PgtError, match="'cell'"):
        SubstrateMeta.from_json(data, "x.json")


@pytest.mark.parametrize("where", ["equal", "inside", "containing"])
def test_an_output_overlapping_an_input_is_refused(tmp_path, where):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "en.txt").write_text("the nation and the station\n" * 50, encoding="utf-8")
    out = {"equal": corpus / "en.txt", "inside": corpus / "sub", "containing": tmp_path}[where]
    with pytest.raises(PgtError, match="overlaps the input"):
        build_substrate(out, family="bvv241-2-3", corpus=[f"en={corpus}"], overwrite=True, progress=False)
    assert (corpus / "en.txt").is_file() and leftovers(corpus) == ["en.txt"]


def test_unwritable_output_fails_before_rendering(tmp_path, corpus_files, monkeypatch):
    import pgt.substrate.glyphs

    monkeypatch.setattr(pgt.substrate.glyphs, "glyph_matrix", lambda *a, **k: pytest.fail("rendered anyway"))
    (tmp_path / "file").write_text("not a directory", encoding="utf-8")
    with pytest.raises(PgtError, match="cannot write to"):
        build_substrate(tmp_path / "file" / "out", family="bvv241-2-3", corpus=corpus_files[:1], progress=False)


def test_stale_temporaries_of_the_same_output_are_removed(byte_level_tokenizer_dir, tmp_path):
    stale, other = tmp_path / ".out.tmp-killed", tmp_path / ".other.tmp-live"
    for directory in (stale, other):
        directory.mkdir()
        (directory / "weights").write_bytes(b"\0" * 1000)
    nemo(tmp_path / "out", byte_level_tokenizer_dir)
    assert not stale.exists() and other.exists()
