"""`pgt tune`: the loss of a tiny merged model falls from the merge's own starting loss; the result reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pgt.cli import main
from pgt.compose.merge import merge_experts
from pgt.compose.tune import TUNE_FILE, TuneConfig, TuneRecord, tune_merged
from pgt.errors import PgtError
from pgt.model.loading import init_model_dir, load_model


@pytest.fixture(scope="module")
def merges(substrate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("tune")
    experts = [
        init_model_dir(substrate_dir, work / f"expert-{i}", layers=1, heads=2, seed=i, max_position_embeddings=64)
        for i in range(2)
    ]
    return {mode: merge_experts(experts, work / f"merge-{mode}", mode=mode) for mode in ("adapter", "mean")}


def _logits(model_dir: Path) -> torch.Tensor:
    model, tokenizer = load_model(model_dir)
    with torch.no_grad():
        return model(tokenizer("Hello there, general", return_tensors="pt")["input_ids"]).logits


def test_tuning_the_adapter_lowers_the_loss_and_the_model_reloads(merges, token_data_dir, tmp_path) -> None:
    out = tmp_path / "tuned"
    config = TuneConfig(
        tokens=24 * 4 * 32, batch_size=4, seq_len=32, lr=1e-2, eval_every=6, eval_tokens=2048, device="cpu"
    )
    record = tune_merged(merges["adapter"], token_data_dir, out, config)
    assert record.trains == "adapter" and record.steps == 24
    assert record.curve[0].step == 0 and record.curve[0].val_loss == record.start_val_loss  # the merge's own start
    assert record.end_val_loss < record.start_val_loss - 0.05
    assert TuneRecord.load(out / TUNE_FILE) == record
    before, after = _logits(merges["adapter"]), _logits(out)  # reloads through load_model's checks
    assert not torch.allclose(before, after)
    # only the adapter trained: the experts inside the tuned model are the merge's
    tuned, _ = load_model(out)
    untuned, _ = load_model(merges["adapter"])
    for (name, a), (_, b) in zip(tuned.named_parameters(), untuned.named_parameters(), strict=True):
        assert torch.equal(a, b) != name.startswith("adapter."), name


def test_full_tuning_trains_a_mean_merge_and_refuses_without_full(merges, token_data_dir, tmp_path) -> None:
    with pytest.raises(PgtError, match="no adapter to train"):
        tune_merged(merges["mean"], token_data_dir, tmp_path / "x", TuneConfig(tokens=8 * 32, seq_len=32, device="cpu"))
    record = tune_merged(
        merges["mean"],
        token_data_dir,
        tmp_path / "full",
        TuneConfig(tokens=8 * 2 * 32, batch_size=2, seq_len=32, lr=3e-3, device="cpu", full=True),
    )
    assert record.trains == "full" and record.end_val_loss < record.start_val_loss
    tuned, _ = load_model(tmp_path / "full")  # load_model checks the embedding is still the substrate's
    untuned, _ = load_model(merges["mean"])
    assert not torch.equal(tuned.experts[0].lm_head.weight, untuned.experts[0].lm_head.weight)


def test_pgt_tune_command_and_refusals(merges, token_data_dir, tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    assert (
        main(
            [
                "tune",
                str(merges["adapter"]),
                "--data",
                str(token_data_dir),
                "--tokens",
                "128",
                "--batch-size",
                "2",
                "--seq-len",
                "32",
                "--device",
                "cpu",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "validation loss" in capsys.readouterr().out and (out / TUNE_FILE).is_file()
    assert (
        main(["tune", str(merges["adapter"]), "--data", str(token_data_dir), "--tokens", "128", "--out", str(out)]) == 2
    )  # exists, no --overwrite
    assert (
        main(
            [
                "tune",
                str(merges["adapter"]),
                "--data",
                str(token_data_dir),
                "--tokens",
                "128",
                "--out",
                str(merges["adapter"] / "inside"),
                "--overwrite",
            ]
        )
        == 2
    )  # inside its input
    assert "overlaps the input" in capsys.readouterr().err


def test_pgt_merge_refuses_an_output_overlapping_an_expert(merges, substrate_dir, tmp_path, capsys) -> None:
    expert = tmp_path / "e"
    init_model_dir(substrate_dir, expert, layers=1, heads=2, seed=3)
    other = tmp_path / "f"
    init_model_dir(substrate_dir, other, layers=1, heads=2, seed=4)
    for out in (expert, tmp_path, expert / "sub"):
        assert main(["merge", str(expert), str(other), "--out", str(out), "--overwrite"]) == 2
        assert "overlaps the input" in capsys.readouterr().err
    assert (expert / "config.json").is_file()  # the expert is intact


def test_a_non_finite_loss_stops_tuning_with_a_one_line_error_and_writes_nothing(
    merges, token_data_dir, tmp_path, monkeypatch
) -> None:
    import pgt.growth.stage

    real = pgt.growth.stage.causal_lm_loss
    monkeypatch.setattr(pgt.growth.stage, "causal_lm_loss", lambda model, batch: real(model, batch) * float("nan"))
    config = TuneConfig(tokens=2 * 2 * 32, batch_size=2, seq_len=32, eval_tokens=1024, device="cpu")
    with pytest.raises(PgtError, match=r"^step 1: the loss became non-finite \(loss nan, .*\); lower --lr and rerun$"):
        tune_merged(merges["adapter"], token_data_dir, tmp_path / "nan", config)
    assert not (tmp_path / "nan").exists()
