"""A real 3-stage growth run (identity init, LoRA from stage 3) and both baselines, on fortune text."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from pgt.errors import PgtError
from pgt.growth import GrowthConfig, grow
from pgt.growth.metrics import EvalPoint, GrowEvent, TrainPoint, read_metrics

TINY = {
    "batch_size": 4,
    "seq_len": 32,
    "heads": 4,
    "context": 64,
    "tokens_per_stage": 4 * 32 * 10,
    "eval_every": 4,
    "eval_tokens": 2048,
    "checkpoint_every": 4,
    "log_every": 2,
    "lr": 3e-3,
    "progress": False,
}


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
    assert not torch.equal(
        s2["model.layers.1.mlp.down_proj.weight"], torch.zeros_like(s2["model.layers.1.mlp.down_proj.weight"])
    )
    substrate = Substrate.load(substrate_dir).embeddings
    for state in (s1, s2, s3):
        assert torch.equal(state["model.embed_tokens.weight"], substrate)


def test_identity_growth_step_keeps_the_validation_loss(grown):
    _, run_dir = grown
    evals = [r for r in read_metrics(run_dir) if isinstance(r, EvalPoint)]
    for stage in (2, 3):
        before = [r for r in evals if r.stage == stage - 1][-1]
        after = next(r for r in evals if r.stage == stage)
        assert after.step == 0 and abs(after.val_loss - before.val_loss) <= 1e-6
    assert evals[-1].val_loss < evals[0].val_loss - 1.0  # and it learns


def test_run_directory_artefacts(grown):
    _, run_dir = grown
    run = json.loads((run_dir / "run.json").read_text())
    assert run["kind"] == "growth" and run["finished"] and [r["stage"] for r in run["results"]] == [1, 2, 3]
    records = read_metrics(run_dir)
    train = [r.to_json() for r in records if isinstance(r, TrainPoint)]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "tokens", "step", "stage"} <= set(train[0])
    assert [r.stage for r in records if isinstance(r, GrowEvent)] == [1, 2, 3]
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

    config = tiny_config(
        substrate_dir, token_data_dir, tmp_path / baseline, stages=2, baseline=baseline, tokens_per_stage=4 * 32 * 4
    )
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
    config = tiny_config(
        substrate_dir,
        token_data_dir,
        tmp_path / "patience",
        stages=1,
        lr=1e-30,
        eval_every=2,
        patience=2,
        tokens_per_stage=4 * 32 * 20,
    )
    run_dir = grow(config)
    info = json.loads((run_dir / "stage-1" / "stage.json").read_text())
    assert info["stopped_early"] and info["steps"] == 4 and info["tokens_seen"] == 4 * 4 * 32
    # Convergence under a token cap, shown where it stopped in the card and the report.
    assert info["tokens_budget"] == 4 * 32 * 20
    card = (run_dir / "stage-1" / "README.md").read_text(encoding="utf-8")
    assert "stopped by --patience at 512 of 2,560 tokens" in card
    from pgt.cli import main

    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| `stage-1` | 2,560 | 512 | 20% | 4 | converged: --patience ended it at step 4 |" in report


def test_a_finished_run_grows_further_when_given_more_stages(substrate_dir, token_data_dir, tmp_path):
    config = tiny_config(
        substrate_dir, token_data_dir, tmp_path / "extend", stages=1, tokens_per_stage=4 * 32 * 3, eval_every=0
    )
    run_dir = grow(config)
    stage1 = (run_dir / "stage-1" / "model.safetensors").read_bytes()
    grow(GrowthConfig(**{**config.to_dict(), "stages": 2}))
    assert (run_dir / "stage-1" / "model.safetensors").read_bytes() == stage1
    run = json.loads((run_dir / "run.json").read_text())
    assert run["finished"] and run["config"]["stages"] == 2 and (run_dir / "stage-2" / "stage.json").exists()
    assert [r.stage for r in read_metrics(run_dir) if isinstance(r, GrowEvent)] == [1, 2]
    with pytest.raises(PgtError, match="different configuration"):  # fewer stages would contradict the run
        grow(GrowthConfig(**{**config.to_dict(), "stages": 1}))


# ---------------------------------------------------------------- one bits-per-byte


def test_trainer_and_pgt_eval_agree_on_bits_per_byte(grown, token_data_dir):
    """The stage record's figure and `pgt eval`'s computation on the same model and documents agree to 1e-6."""
    from pgt.data.loader import TokenData
    from pgt.eval.perplexity import score_texts
    from pgt.growth.records import StageRecord
    from pgt.growth.validation import decoder, validation_sample
    from pgt.model.loading import load_model

    config, run_dir = grown
    info = StageRecord.load(run_dir / "stage-2" / "stage.json")  # stage 2: no LoRA, saved as trained
    model, tokenizer = load_model(run_dir / "stage-2")
    sample = validation_sample(TokenData(token_data_dir), config.eval_tokens)
    texts = [decoder(tokenizer)(doc) for doc in sample.documents]
    score = score_texts(model.eval(), tokenizer, texts, batch_size=config.batch_size)
    assert abs(score.bits_per_byte - info.val_bpb) < 1e-6
    assert (score.n_bytes, score.n_documents) == (info.val_bytes, info.val_documents)
    assert score.n_bytes == sum(len(text.encode("utf-8")) for text in texts)  # the exact bytes of the tokens
    assert (score.bz2_bpb, score.xz_bpb) == (info.bz2_bpb, info.xz_bpb) and 0 < info.bz2_bpb < 8


def test_validation_sample_is_fixed_and_spread_over_the_split(token_data_dir):
    from pgt.data.loader import TokenData
    from pgt.growth.validation import validation_sample

    data = TokenData(token_data_dir)
    split = data.splits["validation"]
    tokens = split.read(0, split.tokens).tolist()
    documents, current = [], []
    for token in tokens:
        if token == data.eos_id:
            documents.append(current)
            current = []
        else:
            current.append(token)
    quarter = validation_sample(data, split.tokens // 4)
    assert quarter == validation_sample(data, split.tokens // 4)  # a function of the data and the size only
    picked = [documents.index(doc) for doc in quarter.documents]
    assert picked == sorted(picked) and len(picked) >= 4
    assert picked[0] < len(documents) / 4 and picked[-1] >= 3 * len(documents) / 4  # not the first few documents
    assert abs(quarter.tokens - split.tokens / 4) < split.tokens / 8
    whole = validation_sample(data, 10 * split.tokens)
    assert whole.documents == documents and whole.split_documents == len(documents)


def test_stage_and_run_records_check_their_fields(grown, tmp_path):
    from pgt.growth.records import RunRecord, StageRecord

    _, run_dir = grown
    run = RunRecord.load(run_dir / "run.json")
    assert run.finished and [r.stage for r in run.results] == [1, 2, 3] and run.results[2].lora.blocks == [0, 1]
    record = StageRecord.load(run_dir / "stage-1" / "stage.json")
    copy = tmp_path / "stage.json"
    record.save(copy)
    assert StageRecord.load(copy) == record
    data = json.loads(copy.read_text())
    copy.write_text(json.dumps({**data, "val_bpb": "low"}))
    with pytest.raises(PgtError, match=r"stage description .*stage.json: field 'val_bpb' is 'low', expected float"):
        StageRecord.load(copy)
    del data["tokens_seen"]
    copy.write_text(json.dumps(data))
    with pytest.raises(PgtError, match="lacks the field 'tokens_seen'"):
        StageRecord.load(copy)


# ---------------------------------------------------------------- presets, logging


def test_a_small_preset_trains_and_logs_lines_without_a_terminal(substrate_dir, token_data_dir, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "tiny"
    argv = [
        sys.executable,
        "-m",
        "pgt",
        "grow",
        "--preset",
        "tiny",
        "--substrate",
        substrate_dir,
        "--data",
        token_data_dir,
        "--out",
        out,
        "--tokens-per-stage",
        4 * 32 * 4,
        "--batch-size",
        4,
        "--seq-len",
        32,
        "--eval-every",
        0,
        "--eval-tokens",
        1024,
        "--log-every",
        2,
    ]
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # stderr is a pipe: log lines, no bar
    assert result.returncode == 0, result.stderr[-3000:]
    import re

    lines = [x for x in result.stdout.splitlines() if x.startswith("stage 2 step ") and "| loss" in x]
    assert re.fullmatch(
        r"stage 2 step 2/4 \| loss \d+\.\d{4} \| lr \d\.\d\de-\d\d \| [\d,]+ tok/s \| ETA \d+s", lines[0]
    ), lines
    assert "bits/byte (bzip2 -9 " in result.stdout and "validation sample: " in result.stdout
    config = json.loads((out / "stage-2" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["hidden_size"]) == (2, 4, 64)
    assert json.loads((out / "run.json").read_text())["config"]["preset"] == "tiny"


def test_a_preset_of_another_width_is_refused_before_anything_is_written(substrate_dir, token_data_dir, tmp_path):
    config = tiny_config(substrate_dir, token_data_dir, tmp_path / "small", preset="small")
    with pytest.raises(PgtError, match=r"--preset small is 256 wide .* substrate .* is 64 wide .* --dim 256"):
        grow(config)
    assert not (tmp_path / "small").exists()


@pytest.mark.parametrize(
    "name", ["abs-bvv-1", "abs-bvv-2", "abs-bvv-3", "abs-bvv-4", "abs-bvv-5", "abs-bvv-6", "best-bvv"]
)
def test_the_published_presets_build_with_their_optimizer_on_the_meta_device(name, substrate_dir):
    """The 4,096-wide presets (and best-bvv) through the trainer's own pre-flight check, allocating nothing."""
    from types import SimpleNamespace

    from pgt.growth.config import resolve_config
    from pgt.growth.schedule import StagePlan
    from pgt.growth.stage import check_buildable
    from pgt.model.presets import get_preset
    from pgt.substrate.store import Substrate

    preset = get_preset(name)
    config = resolve_config(overrides={"substrate": "S", "data": "D", "out": "O", "preset": name})
    assert (config.stages, config.heads, config.context) == (
        preset.num_hidden_layers,
        preset.num_attention_heads,
        preset.max_position_embeddings,
    )
    tokenizer = Substrate.load(substrate_dir).tokenizer
    wide = SimpleNamespace(
        embeddings=torch.empty(preset.vocab_size, preset.hidden_size, device="meta"),
        tokenizer=tokenizer,
        fingerprint="sha256:meta",
        dim=preset.hidden_size,
    )
    one = check_buildable(config, wide, StagePlan(stage=1, tokens=1, fresh=True), torch.device("cpu"))
    full = check_buildable(config, wide, StagePlan(stage=config.stages, tokens=1, fresh=True), torch.device("cpu"))
    embedding = preset.vocab_size * preset.hidden_size
    assert one[0] - one[1] == embedding == full[0] - full[1]  # only the substrate is frozen
    assert full[0] - one[0] == (config.stages - 1) * (one[0] - 2 * embedding - preset.hidden_size)
    assert abs(full[0] / 1e9 - preset.published) / preset.published < 0.07  # the published size, rounded


def test_dry_run_checks_everything_and_writes_nothing(substrate_dir, token_data_dir, tmp_path, capsys):
    from pgt.cli import main as pgt_main

    argv = [
        "grow",
        "--preset",
        "tiny",
        "--substrate",
        str(substrate_dir),
        "--data",
        str(token_data_dir),
        "--out",
        str(tmp_path / "run"),
        "--dry-run",
    ]
    assert pgt_main(argv) == 0
    printed = capsys.readouterr().out
    assert "settings OK: 2 stage(s) up to a 2-block, 64-wide model with 4 heads" in printed
    assert not (tmp_path / "run").exists()
    assert pgt_main([*argv, "--heads", "3"]) == 2
    assert "--heads 3 must divide the substrate's dimension 64" in capsys.readouterr().err
