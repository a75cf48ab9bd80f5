"""Weighted mixtures: `--data NAME=DIR:WEIGHT` draws by weight, resumes bit-exactly after SIGKILL,
records the mixture and scores every source; bad weights and foreign sources are one-line errors."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
from conftest import grow_until_stage_checkpoint
from safetensors.torch import load_file

from pgt.cli import main as pgt_main
from pgt.data.loader import TokenData
from pgt.data.mixture import TokenMixture, parse_mixture
from pgt.errors import PgtError
from pgt.growth.config import load_yaml, resolve_config
from pgt.growth.metrics import EvalPoint, StageEndEvent, read_metrics
from pgt.growth.records import RunRecord, StageRecord

pytestmark = pytest.mark.xdist_group("mixture")  # one worker runs the module's runs once

# Two stages of 8 steps, a checkpoint every 2 steps: small enough for 2 shared cores.
ARGS = [
    "--stages",
    "2",
    "--tokens-per-stage",
    str(4 * 32 * 8),
    "--batch-size",
    "4",
    "--seq-len",
    "32",
    "--heads",
    "4",
    "--context",
    "64",
    "--eval-every",
    "4",
    "--eval-tokens",
    "1024",
    "--checkpoint-every",
    "2",
    "--log-every",
    "4",
    "--lr",
    "3e-3",
    "--no-progress",
]
WEIGHTS = {"wiki": 0.9, "sft": 0.1}


def mixture_args(token_data_dir, sft_data_dir) -> list[str]:
    return ["--data", f"wiki={token_data_dir}:0.9", "--data", f"sft={sft_data_dir}:0.1"]


def command(substrate_dir, token_data_dir, sft_data_dir, out) -> list[str]:
    return [
        "grow",
        "--substrate",
        str(substrate_dir),
        *mixture_args(token_data_dir, sft_data_dir),
        "--out",
        str(out),
        *ARGS,
    ]


@pytest.fixture(scope="module")
def runs(substrate_dir, token_data_dir, sft_data_dir, tmp_path_factory):
    """The same mixture run twice: uninterrupted, and SIGKILLed in stage 2 after a checkpoint, then rerun."""
    root = tmp_path_factory.mktemp("mixture")
    killed = root / "killed"
    process = grow_until_stage_checkpoint(
        command(substrate_dir, token_data_dir, sft_data_dir, killed), killed, stage=2, seconds=480
    )
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "stage-2").exists()
    assert pgt_main(command(substrate_dir, token_data_dir, sft_data_dir, killed)) == 0
    uninterrupted = root / "uninterrupted"
    assert pgt_main(command(substrate_dir, token_data_dir, sft_data_dir, uninterrupted)) == 0
    return killed, uninterrupted


def test_a_killed_mixture_run_resumes_bit_exactly(runs):
    killed, uninterrupted = runs
    for stage in (1, 2):
        a = load_file(str(killed / f"stage-{stage}" / "model.safetensors"))
        b = load_file(str(uninterrupted / f"stage-{stage}" / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"stage {stage} differs"
        records = [StageRecord.load(run / f"stage-{stage}" / "stage.json") for run in runs]
        assert records[0].mixture == records[1].mixture  # tokens drawn, epochs and per-source scores too


def test_the_mixture_draws_within_one_percent_of_its_weights_and_counts_epochs(runs, token_data_dir, sft_data_dir):
    _, run_dir = runs
    run = RunRecord.load(run_dir / "run.json")
    assert run.config["data"] == [f"wiki={token_data_dir}:0.9", f"sft={sft_data_dir}:0.1"]
    drawn = {d.name: d.tokens for d in run.mixture}
    assert sum(drawn.values()) == 2 * 4 * 32 * 8
    for name, weight in WEIGHTS.items():
        assert abs(drawn[name] / sum(drawn.values()) - weight) <= 0.01
    train_tokens = {"wiki": TokenData(token_data_dir).train_tokens, "sft": TokenData(sft_data_dir).train_tokens}
    for draw in run.mixture:
        assert draw.weight == pytest.approx(WEIGHTS[draw.name]) and draw.train_tokens == train_tokens[draw.name]
        assert draw.epochs == pytest.approx(draw.tokens / train_tokens[draw.name])
    stages = [StageRecord.load(run_dir / f"stage-{k}" / "stage.json") for k in (1, 2)]
    for name in WEIGHTS:  # per stage and per run: the stage counts add up to the run's
        assert sum(next(d.tokens for d in s.mixture if d.name == name) for s in stages) == drawn[name]
    ends = [r for r in read_metrics(run_dir) if isinstance(r, StageEndEvent)]
    assert [set(e.sources) for e in ends] == [set(WEIGHTS)] * 2
    assert ends[-1].sources["sft"].epochs == pytest.approx(next(d.epochs for d in run.mixture if d.name == "sft"))


def test_every_source_is_scored_in_metrics_report_and_card(runs):
    _, run_dir = runs
    evals = [r for r in read_metrics(run_dir) if isinstance(r, EvalPoint)]
    assert evals and all(set(r.sources) == set(WEIGHTS) for r in evals)
    assert all(0 < part.val_bpb < 20 and part.val_loss > 0 for r in evals for part in r.sources.values())
    stage = StageRecord.load(run_dir / "stage-2" / "stage.json")
    last = {name: part.val_bpb for name, part in evals[-1].sources.items()}
    assert {d.name: d.val_bpb for d in stage.mixture} == last
    assert pgt_main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    section = report.split("## Data mixture", 1)[1].split("\n## ", 1)[0]
    for name in WEIGHTS:
        assert f"| `stage-2` | {name} | {WEIGHTS[name]:.1%} |" in section
    assert f"{last['sft']:.4f}" in section
    card = (run_dir / "stage-2" / "README.md").read_text(encoding="utf-8")
    assert "a weighted mixture of token data: wiki 90.0%, sft 10.0%" in card
    assert "| sft | 10.0% |" in card and "| validation: sft | bits/byte |" in card


def test_one_source_without_a_weight_draws_exactly_as_before(token_data_dir, sft_data_dir):
    bare, data = TokenMixture(str(token_data_dir)), TokenData(token_data_dir)
    assert bare.bare and bare.names == ["data"]
    for step in (0, 7):
        assert torch.equal(bare.train_batch(step, 4, 32, seed=3), data.train_batch(step, 4, 32, seed=3))
    config = resolve_config(overrides={"substrate": "s", "out": "o", "data": [str(token_data_dir)]})
    assert config.data == str(token_data_dir)  # run.json's config as before mixtures
    # A mixture is a pure function of (seed, step); ranks split one global batch.
    mixture = TokenMixture(mixture_args(token_data_dir, sft_data_dir)[1::2])
    whole = mixture.train_batch(5, 8, 32, seed=1)
    halves = [mixture.train_batch(5, 4, 32, seed=1, rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(whole, torch.cat(halves)) and torch.equal(whole, mixture.train_batch(5, 8, 32, seed=1))
    rows = np.sum([mixture.rows_per_source(step, 8, seed=1) for step in range(1250)], axis=0)
    assert abs(rows[1] / rows.sum() - 0.1) <= 0.001  # within 1 % of the weight over 10,000 rows


def test_the_yaml_config_takes_a_mixture(tmp_path, token_data_dir, sft_data_dir):
    path = tmp_path / "grow.yaml"
    path.write_text(f"data:\n  - wiki={token_data_dir}:9\n  - sft={sft_data_dir}:1\n", encoding="utf-8")
    assert load_yaml(path)["data"] == [f"wiki={token_data_dir}:9", f"sft={sft_data_dir}:1"]
    sources = parse_mixture(load_yaml(path)["data"])
    assert [(s.name, s.weight) for s in sources] == [("wiki", 0.9), ("sft", 0.1)]  # relative weights


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sft=SFT:-0.1", "the weight must be a positive number (got -0.1)"),
        ("sft=SFT:0", "the weight must be a positive number (got 0)"),
        ("sft=SFT:lots", "the weight 'lots' is not a number"),
        ("sft=SFT", "expected NAME=DIR:WEIGHT"),
        ("SFT", "several --data sources need NAME=DIR:WEIGHT each"),
    ],
)
def test_bad_weights_are_one_line_errors_that_leave_nothing(
    spec, message, substrate_dir, token_data_dir, sft_data_dir, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = [
        "grow",
        "--substrate",
        str(substrate_dir),
        "--data",
        f"wiki={token_data_dir}:0.9",
        "--data",
        spec.replace("SFT", str(sft_data_dir)),
        "--out",
        str(out),
        *ARGS,
    ]
    assert pgt_main(argv) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert message in line and not out.exists()


def test_a_source_on_another_substrate_is_refused(
    substrate_dir, token_data_dir, byte_level_tokenizer_dir, corpus_files, tmp_path, capsys
):
    from pgt.data.prepare import prepare_token_data

    foreign = tmp_path / "foreign"
    prepare_token_data([str(corpus_files[0])], byte_level_tokenizer_dir, foreign, progress=False)
    out = tmp_path / "run"
    argv = [
        "grow",
        "--substrate",
        str(substrate_dir),
        "--data",
        f"wiki={token_data_dir}:0.9",
        "--data",
        f"other={foreign}:0.1",
        "--out",
        str(out),
        *ARGS,
    ]
    assert pgt_main(argv) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert "--data other:" in line and "same substrate" in line and not out.exists()
    with pytest.raises(PgtError, match="--data other: token data .* was prepared with tokenizer"):
        TokenMixture([f"other={foreign}:1"]).check_tokenizer(TokenData(token_data_dir).tokenizer_fingerprint)
