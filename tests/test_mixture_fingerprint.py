"""A run's data fingerprint covers every source of a weighted mixture: a resume on a mixture with one
source prepared again or edited in place is refused like a resume on one changed directory."""

from __future__ import annotations

import json
import shutil

import pytest
from test_growth_resume_data import GROW
from test_never_lose_work import one_line_error, snapshot

from pgt.cli import main as pgt_main
from pgt.data.loader import TokenData
from pgt.data.mixture import TokenMixture


def edit_in_place(shard) -> None:
    raw = bytearray(shard.read_bytes())
    raw[4:8] = raw[0:4]  # another valid id in place: same size, same manifest
    shard.write_bytes(bytes(raw))


@pytest.fixture
def sources(token_data_dir, sft_data_dir, tmp_path):
    """Copies of two token data directories (the tests edit them)."""
    wiki, sft = tmp_path / "wiki", tmp_path / "sft"
    shutil.copytree(token_data_dir, wiki)
    shutil.copytree(sft_data_dir, sft)
    return wiki, sft


def test_one_source_has_the_directory_s_own_fingerprint(sources):
    wiki, _ = sources
    own = TokenData(wiki).fingerprint()
    assert TokenMixture(str(wiki)).fingerprint() == own
    assert TokenMixture([f"wiki={wiki}:1"]).fingerprint() == own


def test_a_mixture_fingerprint_covers_every_source(sources):
    wiki, sft = sources
    specs = [f"wiki={wiki}:0.9", f"sft={sft}:0.1"]
    recorded = TokenMixture(specs).fingerprint()
    assert set(recorded.shards) == (
        {f"wiki/{file}" for file in TokenData(wiki).fingerprint().shards}
        | {f"sft/{file}" for file in TokenData(sft).fingerprint().shards}
    )
    assert TokenMixture(specs).changed_shards(recorded) == []
    # The same directories under other names, or another directory under a name, are other data.
    assert TokenMixture([f"a={wiki}:0.9", f"sft={sft}:0.1"]).fingerprint().sha256 != recorded.sha256
    assert TokenMixture([f"wiki={wiki}:0.9", f"sft={wiki}:0.1"]).fingerprint().sha256 != recorded.sha256
    edit_in_place(sft / "train-00000.bin")
    assert TokenMixture(specs).fingerprint().sha256 == recorded.sha256  # the manifest is unchanged
    assert TokenMixture(specs).changed_shards(recorded) == ["sft/train-00000.bin"]


def test_a_resume_on_an_edited_source_is_refused_or_recorded(sources, substrate_dir, tmp_path, capsys):
    wiki, sft = sources
    run = tmp_path / "run"

    def grow(stages: int, *extra: str) -> list[str]:
        return [
            "grow",
            "--substrate",
            str(substrate_dir),
            "--data",
            f"wiki={wiki}:0.5",
            "--data",
            f"sft={sft}:0.5",
            "--out",
            str(run),
            "--stages",
            str(stages),
            *GROW,
            *extra,
        ]

    assert pgt_main(grow(1)) == 0
    recorded = json.loads((run / "run.json").read_text())["data_fingerprint"]
    assert recorded["sha256"] == TokenMixture([f"wiki={wiki}:0.5", f"sft={sft}:0.5"]).fingerprint().sha256
    edit_in_place(sft / "train-00000.bin")
    before = snapshot(run)
    line = one_line_error(grow(2), capsys)
    assert "was trained on other data" in line and "sft/train-00000.bin no longer match" in line
    assert snapshot(run) == before
    assert pgt_main(grow(2, "--allow-data-change")) == 0
    (change,) = json.loads((run / "run.json").read_text())["config_changes"]
    assert "sft/train-00000.bin" in change["reason"] and (run / "stage-2").is_dir()
