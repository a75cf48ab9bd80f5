"""`pgt substrate inspect`, the re-centred trim, the shuffled and random controls and visible blanks: each
matrix is what it claims to be, and the inspection finds the collisions the reference's recipe makes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pgt.cli import main
from pgt.substrate.glyphs import glyph_bits
from pgt.substrate.health import (
    geometry,
    identical_groups,
    inspect_substrate,
    random_unit_matrix,
)
from pgt.substrate.store import (
    SUBSTRATE_FILE,
    BuildParams,
    Substrate,
    SubstrateMeta,
    fingerprint,
)
from pgt.substrate.trim import load_trim_record, recentre_rows

BLANKS = [" ", "\n", "\t", "\u00a0", "\u200b", "\u2008", "\u3000", "\x00", "\x7f"]


def test_inspect_finds_space_newline_and_no_break_space_sharing_one_vector(
    substrate_dir, token_data_dir, capsys, tmp_path
):
    out = tmp_path / "health.json"
    assert main(["substrate", "inspect", str(substrate_dir), "--data", str(token_data_dir), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "identical vectors:" in printed and "random rows" in printed
    health = json.loads(out.read_text(encoding="utf-8"))
    space = next(g for g in health["groups"] if " " in g["texts"])
    assert "\n" in space["texts"]  # a blank glyph gets the same seeded noise whatever the character
    assert space["data_tokens"] > 0 and 0 < health["data_share_in_groups"] < 1
    # the rows a corpus keeps share the PCA's offset; random rows of the same shape do not
    assert health["glyph"]["mean_pairwise_cosine"] > 0.2 > abs(health["random"]["mean_pairwise_cosine"])
    assert health["glyph"]["participation_ratio"] < health["random"]["participation_ratio"] / 4


def test_geometry_figures_on_constructed_rows():
    same = np.tile(np.array([[1.0, 0.0, 0.0]], dtype=np.float32), (5, 1))
    figures = geometry(same)
    assert figures.mean_pairwise_cosine == pytest.approx(1.0)
    assert figures.participation_ratio == pytest.approx(1.0)
    assert figures.nearest_cosine["min"] == pytest.approx(1.0)
    basis = np.eye(4, dtype=np.float32)
    figures = geometry(basis)
    assert figures.mean_pairwise_cosine == pytest.approx(0.0)
    assert figures.participation_ratio == pytest.approx(4.0)
    assert figures.nearest_cosine["max"] == pytest.approx(0.0)
    random = geometry(random_unit_matrix((2000, 64)))
    assert abs(random.mean_pairwise_cosine) < 0.01 and 55 < random.participation_ratio <= 64


def test_identical_groups_are_exact_and_limited_to_the_ids_asked():
    matrix = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    groups = identical_groups(matrix, np.arange(5))
    assert sorted(map(list, groups)) == [[0, 2, 3], [1, 4]]
    assert [list(g) for g in identical_groups(matrix, np.array([0, 1, 2]))] == [[0, 2]]


def test_visible_blanks_give_every_invisible_character_its_own_bitmap():
    plain = glyph_bits(BLANKS, cell=32, augment=None, workers=1, progress=False)  # the families' smallest cell
    visible = glyph_bits(BLANKS, cell=32, augment=None, visible_blanks=True, workers=1, progress=False)
    blank = [row.tobytes() for text, row in zip(BLANKS, plain, strict=True) if text in " \n\u00a0\u2008\u3000"]
    assert len(set(blank)) == 1 and not plain[0].any()  # the reference's recipe: one blank bitmap for all of them
    assert len({row.tobytes() for row in visible}) == len(BLANKS)  # ours: all distinct, none blank
    assert visible.sum(axis=1).min() > 0
    ink = glyph_bits(["A", "ж"], cell=32, augment=None, workers=1, progress=False)
    assert np.array_equal(
        ink, glyph_bits(["A", "ж"], cell=32, augment=None, visible_blanks=True, workers=1, progress=False)
    )  # visible characters are drawn as before


def test_the_visible_twin_is_rendered_once_and_a_given_one_must_be_the_twin(byte_level_tokenizer_dir, tmp_path):
    """`pgt study`'s visible-blanks arm: the substrate rendered again with only that option on, reused when
    present; a twin given with --visible-substrate is checked to be exactly that."""
    from pgt.errors import PgtError
    from pgt.study.adapter import visible_twin
    from pgt.substrate.build import build_substrate

    full, other = tmp_path / "full", tmp_path / "other"
    for out, dim in ((full, 16), (other, 8)):
        build_substrate(out, family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=dim, progress=False)
    twin = visible_twin(full, tmp_path / "twin", progress=False)
    source, rendered = (SubstrateMeta.load(d / SUBSTRATE_FILE) for d in (full, twin))
    assert rendered.params.visible_blanks and not source.params.visible_blanks
    assert BuildParams.from_json({**rendered.params.to_json(), "visible_blanks": False}) == source.params
    assert rendered.fingerprint != source.fingerprint
    made = (twin / SUBSTRATE_FILE).stat().st_mtime_ns
    assert visible_twin(full, twin, progress=False) == twin and (twin / SUBSTRATE_FILE).stat().st_mtime_ns == made
    assert visible_twin(full, tmp_path / "unused", progress=False, given=twin) == twin
    assert not (tmp_path / "unused").exists()
    for wrong in (full, other):  # not rendered with visible blanks; another width
        with pytest.raises(PgtError, match="is not .* built again with visible_blanks=True"):
            visible_twin(full, tmp_path / "unused", progress=False, given=wrong)


def test_beyond_options_enter_the_fingerprint_only_when_on(substrate_dir):
    meta = SubstrateMeta.load(substrate_dir / SUBSTRATE_FILE)
    matrix = Substrate.load(substrate_dir).embeddings.numpy()
    assert "visible_blanks" not in meta.params.fingerprint_json()  # substrates built before the options keep theirs
    assert fingerprint(matrix, meta.params) == meta.fingerprint
    for option in ("visible_blanks", "recentred"):
        changed = BuildParams.from_json({**meta.params.to_json(), option: True})
        assert fingerprint(matrix, changed) != meta.fingerprint


def test_recentred_trim_is_the_kept_rows_minus_their_mean_renormalised(substrate_dir, token_data_dir, tmp_path):
    plain, centred = tmp_path / "plain", tmp_path / "centred"
    assert main(["substrate", "trim", str(substrate_dir), "--data", str(token_data_dir), "--out", str(plain)]) == 0
    assert (
        main(
            [
                "substrate",
                "trim",
                str(substrate_dir),
                "--data",
                str(token_data_dir),
                "--recentre",
                "--out",
                str(centred),
            ]
        )
        == 0
    )
    rows = Substrate.load(plain).embeddings.numpy().astype(np.float64)
    ours = Substrate.load(centred)
    assert load_trim_record(centred).recentred and not load_trim_record(plain).recentred
    assert ours.meta.params.recentred and ours.fingerprint != Substrate.load(plain).fingerprint
    centred_rows = rows - rows.mean(axis=0)
    assert np.abs(centred_rows.mean(axis=0)).max() < 1e-9  # zero mean over the kept ids before renormalising
    expected = centred_rows / np.linalg.norm(centred_rows, axis=1, keepdims=True)
    assert np.allclose(ours.embeddings.numpy(), expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(ours.embeddings.numpy(), axis=1), 1.0, atol=1e-5)
    assert inspect_substrate(centred).glyph.mean_pairwise_cosine < inspect_substrate(plain).glyph.mean_pairwise_cosine
    assert np.array_equal(recentre_rows(np.ones((3, 2), dtype=np.float32)), np.zeros((3, 2)))  # no division by 0


@pytest.mark.parametrize("control", ["shuffled", "random"])
def test_controls_keep_the_tokenizer_and_change_only_what_they_say(trimmed_substrate_dir, tmp_path, control):
    from pgt.study.adapter import control_substrate

    glyph = Substrate.load(trimmed_substrate_dir)
    out = control_substrate(trimmed_substrate_dir, tmp_path / control, control, seed=0)
    ours = Substrate.load(out)
    assert ours.tokenizer.get_vocab() == glyph.tokenizer.get_vocab()
    assert ours.meta.derived_from == glyph.fingerprint != ours.fingerprint
    rows, theirs = ours.embeddings.numpy(), glyph.embeddings.numpy()
    if control == "shuffled":  # the same multiset of rows, in another order
        assert np.array_equal(
            np.sort(rows.view(np.void(rows.dtype.itemsize * rows.shape[1])).ravel()),
            np.sort(theirs.view(np.void(theirs.dtype.itemsize * theirs.shape[1])).ravel()),
        )
        assert not np.array_equal(rows, theirs)
    else:
        assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
        assert abs(geometry(rows).mean_pairwise_cosine) < 0.05
    assert control_substrate(trimmed_substrate_dir, tmp_path / control, control, seed=0) == out  # reused


def test_inspect_refuses_data_of_another_tokenizer(trimmed_substrate_dir, token_data_dir, capsys):
    assert main(["substrate", "inspect", str(trimmed_substrate_dir), "--data", str(token_data_dir)]) == 2
    assert "prepared with tokenizer" in capsys.readouterr().err


def test_inspect_of_a_missing_directory_is_one_line(tmp_path: Path, capsys):
    assert main(["substrate", "inspect", str(tmp_path / "nope")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
