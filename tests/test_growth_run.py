"""A real 3-stage growth run (identity init, LoRA from stage 3) and both baselines, on fortune text."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from pgt.errors import PgtError
from pgt.growth import GrowthConfig, grow
from pgt.growth.metrics import read_metrics

TINY = {"batch_size": 4, "seq_len": 32, "heads": 4, "context": 64, "tokens_per_stage": 4 * 32 * 10, "eval_every": 4,
        "eval_tokens": 2048, "checkpoint_every": 4, "log_every": 2, "lr": 3e-3, "progress": False}


def tiny_config(substrate_dir, token_data_dir, out, **overrides) -> GrowthConfig:
    return GrowthConfig(substrate=str(substrate_dir), data=str(token_data_dir), out=str(out), **{**TINY, **overrides})


def weights(run_dir, stage):
    return load_file(str(run_dir / f"stage-{stage}" / "model.safetensors"))


@pytest.fixture(scope="module")
def grown(substrate_dir, token_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("growth") / "run"
    config = tiny_config(substrate_dir, token_data_dir, out, stages=3, init="identity", lora_from=3)
    assert grow(config) == out
    return config, out


def test_stages_are_standalone_models_that_generate(grown):
    from pgt.model.loading import load_model

    _, run_dir = grown
    for stage in (1, 2, 3):
        info = json.loads((run_dir / f"stage-{stage}" / "stage.json").read_text())
        assert info["stage"] == stage and info["tokens_seen"] == TINY["tokens_per_stage"]
        assert info["params_total"] > info["params_trainable"] > 0 and info["val_bpb"] > 0
        model, tokenizer = load_model(run_dir / f"stage-{stage}")
        assert model.config.num_hidden_layers == stage
        prompt = tokenizer("The ", return_tensors="pt")
        out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
        assert out.shape[1] == prompt["input_ids"].shape[1] + 4
    infos = [json.loads((run_dir / f"stage-{k}" / "stage.json").read_text()) for k in (1, 2, 3)]
    assert infos[2]["lora"]["blocks"] == [0, 1]
    # Stage 2 trains exactly what stage 1 did (one block, norm, head): the frozen block is not trainable.
    assert infos[1]["params_trainable"] == infos[0]["params_trainable"] < infos[2]["params_trainable"]


def test_frozen_blocks_and_embedding_never_change(grown, substrate_dir):
    from pgt.substrate.store import Substrate

    _, run_dir = grown
    s1, s2, s3 = (weights(run_dir, k) for k in (1, 2, 3))
    block0 = [k for k in s1 if k.startswith("model.layers.0.")]
    assert block0 and all(torch.equal(s1[k], s2[k]) for k in block0)  # frozen during stage 2
    assert not all(torch.equal(s2[k], s3[k]) for k in block0)  # LoRA (merged) adapted it in stage 3
    assert not torch.equal(s2["model.layers.1.mlp.down_proj.weight"], torch.zeros_like(s2["model.layers.1.mlp.down_proj.weight"]))
    substrate = Substrate.load(substrate_dir).embeddings
    for state in (s1, s2, s3):
        assert torch.equal(state["model.embed_tokens.weight"], substrate)


def test_identity_growth_step_keeps_the_validation_loss(grown):
    _, run_dir = grown
    evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
    for stage in (2, 3):
        before = [r for r in evals if r["stage"] == stage - 1][-1]
        after = next(r for r in evals if r["stage"] == stage)
        assert after["step"] == 0 and abs(after["val_loss"] - before["val_loss"]) <= 1e-6
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0  # and it learns


def test_run_directory_artefacts(grown):
    _, run_dir = grown
    run = json.loads((run_dir / "run.json").read_text())
    assert run["kind"] == "growth" and run["finished"] and [r["stage"] for r in run["results"]] == [1, 2, 3]
    records = read_metrics(run_dir)
    train = [r for r in records if r["kind"] == "train"]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "tokens", "step", "stage"} <= set(train[0])
    assert [r["stage"] for r in records if r.get("event") == "grow"] == [1, 2, 3]
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert "done" in json.loads((run_dir / "checkpoints" / "latest.json").read_text())["name"]


def test_rerun_of_a_finished_run_says_so_and_other_settings_are_refused(grown, capsys):
    config, run_dir = grown
    before = (run_dir / "stage-3" / "model.safetensors").stat().st_mtime_ns
    assert grow(config) == run_dir
    assert "already holds this finished run" in capsys.readouterr().out
    assert (run_dir / "stage-3" / "model.safetensors").stat().st_mtime_ns == before
    changed = GrowthConfig(**{**config.to_dict(), "lr": 1e-4})
    with pytest.raises(PgtError, match=r"different configuration \(lr: 0\.003 -> 0\.0001\)"):
        grow(changed)


@pytest.mark.parametrize("baseline", ["monolithic", "trainable-embeddings"])
def test_baselines_train_all_blocks_with_the_same_budget(baseline, substrate_dir, token_data_dir, tmp_path):
    from pgt.model.loading import load_model
    from pgt.substrate.store import Substrate

    config = tiny_config(substrate_dir, token_data_dir, tmp_path / baseline, stages=2, baseline=baseline,
                         tokens_per_stage=4 * 32 * 4)
    run_dir = grow(config)
    assert json.loads((run_dir / "run.json").read_text())["kind"] == baseline
    info = json.loads((run_dir / "stage-2" / "stage.json").read_text())
    assert info["tokens_seen"] == 2 * config.tokens_per_stage and info["frozen_blocks"] == 0
    assert not (run_dir / "stage-1").exists()
    model, _ = load_model(run_dir / "stage-2")
    substrate = Substrate.load(substrate_dir)
    saved = json.loads((run_dir / "stage-2" / "substrate.json").read_text())
    embedding = model.model.embed_tokens.weight
    if baseline == "monolithic":
        assert torch.equal(embedding, substrate.embeddings) and saved["fingerprint"] == substrate.fingerprint
    else:  # a trained matrix must not claim to be the substrate
        assert not torch.equal(embedding, substrate.embeddings)
        assert saved["embedding_trained"] and saved["derived_from"] == substrate.fingerprint
        assert model.config.substrate_fingerprint == saved["fingerprint"] != substrate.fingerprint


def test_stage_ends_when_validation_stops_improving(substrate_dir, token_data_dir, tmp_path):
    # At lr 1e-30 no weight changes in float32, so the validation loss never improves.
    config = tiny_config(substrate_dir, token_data_dir, tmp_path / "patience", stages=1, lr=1e-30, eval_every=2,
                         patience=2, tokens_per_stage=4 * 32 * 20)
    info = json.loads((grow(config) / "stage-1" / "stage.json").read_text())
    assert info["stopped_early"] and info["steps"] == 4 and info["tokens_seen"] == 4 * 4 * 32


def test_a_finished_run_grows_further_when_given_more_stages(substrate_dir, token_data_dir, tmp_path):
    config = tiny_config(substrate_dir, token_data_dir, tmp_path / "extend", stages=1, tokens_per_stage=4 * 32 * 3,
                         eval_every=0)
    run_dir = grow(config)
    stage1 = (run_dir / "stage-1" / "model.safetensors").read_bytes()
    grow(GrowthConfig(**{**config.to_dict(), "stages": 2}))
    assert (run_dir / "stage-1" / "model.safetensors").read_bytes() == stage1
    run = json.loads((run_dir / "run.json").read_text())
    assert run["finished"] and run["config"]["stages"] == 2 and (run_dir / "stage-2" / "stage.json").exists()
    assert [r["stage"] for r in read_metrics(run_dir) if r.get("event") == "grow"] == [1, 2]
    with pytest.raises(PgtError, match="different configuration"):  # fewer stages would contradict the run
        grow(GrowthConfig(**{**config.to_dict(), "stages": 1}))
