"""A resume trains on the data the run trained on, and on a history it can read,
end to end through `pgt grow` and `pgt report`."""

from __future__ import annotations

import json
import shutil

import pytest
from test_never_lose_work import one_line_error, snapshot

from pgt.cli import main as pgt_main
from pgt.errors import PgtError
from pgt.growth.metrics import read_metrics

GROW = [
    "--init",
    "random",
    "--batch-size",
    "2",
    "--seq-len",
    "16",
    "--heads",
    "2",
    "--context",
    "32",
    "--tokens-per-stage",
    str(2 * 16 * 6),
    "--eval-tokens",
    "512",
    "--checkpoint-every",
    "3",
    "--no-progress",
]


def grow(substrate_dir, data, out, stages: int, *extra: str) -> list[str]:
    return [
        "grow",
        "--substrate",
        str(substrate_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--stages",
        str(stages),
        *GROW,
        *extra,
    ]


@pytest.fixture(scope="module")
def one_stage(substrate_dir, token_data_dir, tmp_path_factory):
    """A finished one-stage run on a copy of the token data (a second stage resumes it)."""
    root = tmp_path_factory.mktemp("data-change")
    data = root / "data"
    shutil.copytree(token_data_dir, data)
    run = root / "run"
    assert pgt_main(grow(substrate_dir, data, run, 1)) == 0
    return data, run


@pytest.fixture(scope="module")
def other_data(substrate_dir, corpus_files, tmp_path_factory):
    """Token data prepared from another text with the same tokenizer."""
    from pgt.data.prepare import prepare_token_data

    text = tmp_path_factory.mktemp("other") / "other.txt"
    text.write_text(
        "\n\n".join(f"Entirely different text number {i}, about ships and the sea." * 4 for i in range(40)),
        encoding="utf-8",
    )
    out = text.parent / "data"
    prepare_token_data([str(text)], substrate_dir, out, min_val_bytes=2_000, progress=False, workers=1)
    return out


@pytest.fixture
def run_copy(one_stage, tmp_path):
    """A copy of the finished run (--out may move) on the run's own data path, restored afterwards."""
    data, run = one_stage
    pristine = tmp_path / "pristine-data"
    shutil.copytree(data, pristine)
    shutil.copytree(run, tmp_path / "run")
    yield data, tmp_path / "run"
    shutil.rmtree(data)
    shutil.copytree(pristine, data)


def test_resume_on_data_prepared_again_is_refused_or_recorded(run_copy, other_data, substrate_dir, tmp_path, capsys):
    data, run = run_copy
    recorded = json.loads((run / "run.json").read_text())["data_fingerprint"]["sha256"]
    shutil.rmtree(data)
    shutil.copytree(other_data, data)  # `pgt data prepare OTHER --out DATA --overwrite`, same path
    before = snapshot(run)
    line = one_line_error(grow(substrate_dir, data, run, 2), capsys)
    assert "was trained on other data" in line and "--allow-data-change" in line
    assert snapshot(run) == before and not (run / "stage-2").exists()
    assert pgt_main([*grow(substrate_dir, data, run, 2), "--allow-data-change"]) == 0
    saved = json.loads((run / "run.json").read_text())
    (change,) = saved["config_changes"]
    assert change["changes"]["data_fingerprint"] == [recorded, saved["data_fingerprint"]["sha256"]]
    assert change["stage"] == 1 and "prepared again" in change["reason"]
    assert pgt_main(["report", str(run), "--out", str(tmp_path / "r.md")]) == 0
    page = (tmp_path / "r.md").read_text()
    assert "## Changes on resume" in page and recorded in page


def test_a_shard_edited_in_place_is_refused(run_copy, substrate_dir, capsys):
    data, run = run_copy
    shard = data / "train-00000.bin"
    raw = bytearray(shard.read_bytes())
    raw[4:8] = raw[0:4]  # another valid id in place: same size, same manifest
    shard.write_bytes(bytes(raw))
    line = one_line_error(grow(substrate_dir, data, run, 2), capsys)
    assert f"{shard.name} no longer match their checksums" in line


def test_a_truncated_or_nul_padded_history_is_cut_back_and_said(run_copy, substrate_dir, capsys):
    data, run = run_copy
    metrics = run / "metrics.jsonl"
    raw = metrics.read_bytes()
    half = len(raw) // 2
    metrics.write_bytes(raw[:half] + b"\0" * (len(raw) - half))  # what a crash leaves on some file systems
    complete = raw[:half].rfind(b"\n") + 1
    capsys.readouterr()
    assert pgt_main(grow(substrate_dir, data, run, 2)) == 0
    assert f"cut back to its last complete record ({complete:,} bytes)" in capsys.readouterr().out
    text = metrics.read_bytes()
    assert b"\0" not in text and text.startswith(raw[:complete])
    records = read_metrics(run)
    assert records[-1].KIND == "event" and records[-1].stage == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"kind": "train", "stage": 1, "global_step": 1, "tokens": 8, "loss": 1.0}\ngarbage\n'
            '{"kind": "train", "stage": 1, "global_step": 2, "tokens": 16, "loss": 1.0}\n',
            "line 2 is not a complete",
        ),
        ('{"kind": "train", "stage": 1, "global_step": 1, "tokens": 8, "loss": Infinity}\n', "line 1"),
        ('{"kind": "train", "stage": 1, "global_step": 1, "tokens": 8, "loss": NaN}\n', "line 1"),
        ('{"kind": "train", "stage": 1, "global_step": 1, "loss": 1.0}\n', "line 1"),  # no tokens
        ('{"kind": "train", "stage": 1, "global_step": 1, "tokens": 8, "loss": 1.0}\n' + "\0" * 50, "line 2"),
    ],
)
def test_metrics_reader_refuses_bad_lines_but_a_torn_last_one(tmp_path, content, message):
    (tmp_path / "metrics.jsonl").write_text(content)
    with pytest.raises(PgtError, match=message):
        read_metrics(tmp_path)


def test_a_torn_last_line_is_skipped(tmp_path):
    good = '{"kind": "eval", "stage": 1, "global_step": 0, "tokens": 0, "val_loss": 4.0}\n'
    (tmp_path / "metrics.jsonl").write_text(good + '{"kind": "train", "sta')
    assert [r.to_json() for r in read_metrics(tmp_path)] == [json.loads(good)]


@pytest.mark.parametrize("file", ["../train-00000.bin", "/etc/passwd", "..", ""])
def test_a_manifest_shard_outside_the_data_directory_is_refused(token_data_dir, tmp_path, file):
    """The manifest's shard names are read through its record, which keeps them inside."""
    from pgt.data.loader import TokenData

    data = tmp_path / "data"
    shutil.copytree(token_data_dir, data)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["file"] = file
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PgtError, match="is not a file name inside the token data directory"):
        TokenData(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("step", "x", "field 'step' is 'x', expected int"),
        ("step", 1e30, "field 'step' is 1e\\+30, expected int"),
        ("tokens_total", -5, "tokens_total -5 is impossible"),
    ],
)
def test_a_damaged_checkpoint_state_is_refused(run_copy, substrate_dir, field, value, message, capsys):
    """`state.json` goes through its record (TrainState) before a resume trusts it."""
    data, run = run_copy
    (state_file,) = (run / "checkpoints").glob("*/state.json")
    state = json.loads(state_file.read_text())
    state[field] = value
    state_file.write_text(json.dumps(state))
    line = one_line_error(grow(substrate_dir, data, run, 2), capsys)
    assert "checkpoint state" in line and message.replace("\\", "") in line.replace("\\", "")
