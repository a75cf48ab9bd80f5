"""`pgt grow --from MODEL_DIR`: a stage-2 model of another run grows to stage 4 on other data;
its blocks stay bit-identical, the lineage is recorded in run.json, stage.json, the card and the report."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from pgt.cli import main as pgt_main
from pgt.growth.records import RunRecord, StageRecord
from pgt.io import file_sha256

pytestmark = pytest.mark.xdist_group("grow-from")  # one worker grows the module's runs once

TINY = [
    "--batch-size",
    "4",
    "--seq-len",
    "32",
    "--heads",
    "4",
    "--context",
    "64",
    "--tokens-per-stage",
    str(4 * 32 * 4),
    "--eval-every",
    "0",
    "--eval-tokens",
    "1024",
    "--checkpoint-every",
    "2",
    "--log-every",
    "2",
    "--no-progress",
]


def grow(*argv) -> int:
    return pgt_main(["grow", *TINY, *map(str, argv)])  # argv last: it may override TINY


@pytest.fixture(scope="module")
def grown(substrate_dir, token_data_dir, sft_data_dir, tmp_path_factory):
    """Run A grows 2 stages on fortunes; run B starts from A's stage 2 and grows stages 3-4 on instructions."""
    root = tmp_path_factory.mktemp("from")
    assert grow("--substrate", substrate_dir, "--data", token_data_dir, "--stages", 2, "--out", root / "a") == 0
    assert (
        grow(
            "--substrate",
            substrate_dir,
            "--data",
            sft_data_dir,
            "--from",
            root / "a" / "stage-2",
            "--stages",
            4,
            "--out",
            root / "b",
        )
        == 0
    )
    return root / "a", root / "b"


def test_blocks_of_the_source_stay_bit_identical(grown):
    a, b = grown
    source = load_file(str(a / "stage-2" / "model.safetensors"))
    kept = [k for k in source if k.startswith(("model.layers.0.", "model.layers.1.", "model.embed_tokens."))]
    assert len(kept) > 2
    for stage in (3, 4):
        grown_weights = load_file(str(b / f"stage-{stage}" / "model.safetensors"))
        assert all(torch.equal(source[k], grown_weights[k]) for k in kept), f"stage {stage} changed a source block"
        assert f"model.layers.{stage - 1}.mlp.up_proj.weight" in grown_weights
    assert sorted(p.name for p in b.glob("stage-*")) == ["stage-3", "stage-4"]


def test_the_lineage_is_recorded_in_run_stage_card_and_report(grown):
    a, b = grown
    sha = file_sha256(a / "stage-2" / "model.safetensors")
    run = RunRecord.load(b / "run.json")
    assert run.started_from.weights_sha256 == sha and run.started_from.blocks == 2
    assert run.started_from.path == str((a / "stage-2").resolve())
    assert run.started_from.tokens_total == StageRecord.load(a / "stage-2" / "stage.json").tokens_total
    stage = StageRecord.load(b / "stage-4" / "stage.json")
    assert stage.started_from == run.started_from and stage.tokens_total == 2 * 4 * 32 * 4
    card = (b / "stage-4" / "README.md").read_text(encoding="utf-8")
    assert f"- Started from: `{(a / 'stage-2').resolve()}` (2 blocks" in card and sha[:12] in card
    assert "stage 4 of 4: block 4 added (random) on 3 frozen block(s)" in card
    assert pgt_main(["report", str(b)]) == 0
    assert f"model.safetensors sha256 {sha[:12]}" in (b / "report.md").read_text(encoding="utf-8")


def test_a_resumed_run_refuses_a_changed_source(grown, substrate_dir, sft_data_dir, tmp_path, capsys):
    a, b = grown
    source = tmp_path / "source"
    shutil.copytree(a / "stage-2", source)
    out = tmp_path / "run"
    argv = ["--substrate", substrate_dir, "--data", sft_data_dir, "--from", source, "--stages", 3, "--out", out]
    assert grow(*argv) == 0
    weights = load_file(str(source / "model.safetensors"))
    from safetensors.torch import save_file

    weights["lm_head.weight"] = weights["lm_head.weight"] + 1
    save_file(weights, str(source / "model.safetensors"), metadata={"format": "pt"})
    assert grow(*argv[:-4], "--stages", 4, "--out", out) == 2
    assert "the model changed since this run started from it" in capsys.readouterr().err
    assert not (out / "stage-4").exists()


def edited_copy(model_dir, target, **config):
    shutil.copytree(model_dir, target)
    data = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**data, **config}))
    return target


@pytest.mark.parametrize(
    ("edit", "extra", "message"),
    [
        ({"substrate_fingerprint": "sha256:" + "0" * 64}, [], "stands on substrate"),
        ({}, ["--heads", "2"], "has heads 4, but the run sets 2; pass --heads 4"),
        ({}, ["--stages", "2"], "already has 2 blocks; --stages 2 must be more"),
        ({}, ["--baseline", "monolithic"], "a monolithic baseline trains from scratch"),
    ],
)
def test_a_source_that_cannot_be_grown_on_is_a_one_line_error(
    grown, substrate_dir, sft_data_dir, tmp_path, capsys, edit, extra, message
):
    a, _ = grown
    source = edited_copy(a / "stage-2", tmp_path / "source", **edit)
    out = tmp_path / "run"
    argv = ["--substrate", substrate_dir, "--data", sft_data_dir, "--from", source, "--stages", 4, "--out", out, *extra]
    assert grow(*argv) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert message in line and not out.exists()
