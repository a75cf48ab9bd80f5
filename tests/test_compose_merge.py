"""`merge_experts` and `pgt merge`: merged model directories that save, load, generate and refuse bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from remote_code import CARD, clean_env, clean_virtualenv
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from pgt.cli import main
from pgt.compose.merge import merge_experts
from pgt.errors import PgtError
from pgt.model.loading import init_model_dir, load_model, save_model, substrate_meta_of
from pgt.substrate.store import Substrate, save_substrate

PROMPT = "Hello, I am a language model "


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose")


@pytest.fixture(scope="module")
def expert_dirs(substrate_dir: Path, workdir: Path) -> list[Path]:
    """Two different untrained experts on one substrate (1 and 2 blocks, different seeds)."""
    return [
        init_model_dir(substrate_dir, workdir / "expert-a", layers=1, heads=4, seed=1),
        init_model_dir(substrate_dir, workdir / "expert-b", layers=2, heads=4, seed=2),
    ]


@pytest.fixture(scope="module")
def prompt_ids(expert_dirs: list[Path]) -> torch.Tensor:
    _, tokenizer = load_model(expert_dirs[0])
    return tokenizer(PROMPT, return_tensors="pt")["input_ids"]


def logits_of(model_dir: Path, ids: torch.Tensor) -> torch.Tensor:
    model, _ = load_model(model_dir)
    with torch.no_grad():
        return model(ids).logits


def test_merging_a_directory_with_itself_gives_its_own_logits(expert_dirs, prompt_ids, tmp_path):
    out = merge_experts([expert_dirs[0], expert_dirs[0]], tmp_path / "self")
    torch.testing.assert_close(logits_of(out, prompt_ids), logits_of(expert_dirs[0], prompt_ids), atol=1e-6, rtol=0)


def test_weighted_merge_saves_one_embedding_and_reloads_through_auto(expert_dirs, prompt_ids, tmp_path):
    out = merge_experts(expert_dirs, tmp_path / "weighted", weights=[1.0, 3.0])
    first, second = (logits_of(path, prompt_ids) for path in expert_dirs)
    expected = 0.25 * first + 0.75 * second

    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        assert [key for key in weights.keys() if "embed_tokens" in key] == ["experts.0.model.embed_tokens.weight"]
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["mode"], config["expert_weights"]) == ("pgt_merged", "mean", [0.25, 0.75])
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForCausalLM"}
    assert sorted(path.name for path in out.glob("*.py")) == [
        "configuration_pgt_merged.py",
        "frozen.py",
        "modeling_pgt_merged.py",
    ]
    assert "trust_remote_code=True" in (out / "README.md").read_text()

    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)  # no standard class merges experts
    assert type(model).__name__ == "PgtMergedForCausalLM"
    assert model.experts[1].get_input_embeddings().weight is model.experts[0].get_input_embeddings().weight
    with torch.no_grad():
        torch.testing.assert_close(model(prompt_ids).logits, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits_of(out, prompt_ids), expected, atol=1e-6, rtol=0)


def test_trained_adapter_survives_save_and_load(expert_dirs, prompt_ids, tmp_path):
    merged_dir = merge_experts(expert_dirs, tmp_path / "adapter", mode="adapter", adapter_hidden_size=8)
    model, tokenizer = load_model(merged_dir)
    with torch.no_grad():
        mean = model(prompt_ids).logits
        for parameter in model.adapter.parameters():  # stand-in for training: every weight moves
            parameter.add_(torch.randn_like(parameter) * 0.1)
        adapted = model(prompt_ids).logits
    assert (adapted - mean).abs().max() > 0.1
    saved = save_model(model, tokenizer, tmp_path / "adapter-trained", substrate_meta=substrate_meta_of(merged_dir))
    torch.testing.assert_close(logits_of(saved, prompt_ids), adapted, atol=1e-6, rtol=0)


def test_experts_on_different_substrates_are_refused(substrate_dir, expert_dirs, tmp_path):
    substrate = Substrate.load(substrate_dir)
    other_substrate = save_substrate(
        tmp_path / "other-substrate",
        substrate.tokenizer,
        -substrate.embeddings.numpy(),
        substrate.meta.params,  # the same tokenizer and build parameters: only the matrix differs
    )
    stranger = init_model_dir(other_substrate, tmp_path / "stranger", layers=1, heads=4)
    out = tmp_path / "refused"
    with pytest.raises(PgtError, match=r"different \(trimmed\) substrates") as error:
        merge_experts([expert_dirs[0], stranger], out)
    assert str(expert_dirs[0]) in str(error.value) and str(stranger) in str(error.value)
    assert "\n" not in str(error.value)
    assert not out.exists()


@pytest.mark.parametrize(
    ("count", "kwargs", "message"),
    [
        (1, {}, "at least two expert directories"),
        (2, {"weights": [1.0]}, "1 weights given for 2 experts"),
        (2, {"weights": [1.0, -1.0]}, "must be positive"),
        (2, {"mode": "median"}, "unknown merge mode"),
    ],
)
def test_bad_merge_requests_are_one_line_errors(expert_dirs, tmp_path, count, kwargs, message):
    with pytest.raises(PgtError, match=message):
        merge_experts(expert_dirs[:1] * count, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_merged_directory_is_not_an_expert(expert_dirs, tmp_path):
    merged = merge_experts(expert_dirs, tmp_path / "merged")
    with pytest.raises(PgtError, match="not a single PGT model"):
        merge_experts([merged, expert_dirs[0]], tmp_path / "nested")


def test_pgt_merge_and_pgt_generate_on_the_result(expert_dirs, tmp_path, capsys):
    out = tmp_path / "cli-merged"
    assert main(["merge", *map(str, expert_dirs), "--out", str(out), "--weights", "2,1"]) == 0
    assert json.loads((out / "config.json").read_text())["expert_weights"] == pytest.approx([2 / 3, 1 / 3])
    assert main(["merge", *map(str, expert_dirs), "--out", str(out)]) == 2  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err

    assert main(["generate", str(out), PROMPT, "--greedy", "--max-new-tokens", "5"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(PROMPT) and len(printed) > len(PROMPT)


@pytest.mark.slow
def test_model_card_code_runs_a_merged_model_without_pgt(expert_dirs, tmp_path):
    out = merge_experts(expert_dirs, tmp_path / "card", mode="adapter", adapter_hidden_size=8)
    python = clean_virtualenv(tmp_path / "venv")
    env = clean_env(tmp_path / "hf-home")
    result = subprocess.run(
        [str(python), "-I", "-c", CARD, str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["pgt_importable"] is False
    assert report["model_module"].startswith("transformers_modules")
    assert report["model_module"].endswith("modeling_pgt_merged")
    assert report["dtype"] == "torch.bfloat16"
    assert report["total_tokens"] == report["prompt_tokens"] + 100


def test_info_on_a_merged_directory(expert_dirs, tmp_path, capsys):
    out = merge_experts(expert_dirs, tmp_path / "info")
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(pgt_merged)" in printed and "experts:    2 (merge mode mean)" in printed
    assert "(embedding frozen)" in printed


def test_an_adapter_merge_is_drawn_from_its_seed(expert_dirs, tmp_path):
    """The adapter's random down-projection comes from `--seed`, not from whatever the global generator held:
    the same merge gives the same model (a tuned adapter merge is then reproducible), another seed another."""

    def adapter_weights(name: str, seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(len(name))  # a different global state before every merge
        out = merge_experts(expert_dirs, tmp_path / name, mode="adapter", seed=seed)
        with safe_open(str(out / "model.safetensors"), "pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith("adapter.")}

    first, again, other = adapter_weights("a", 0), adapter_weights("bb", 0), adapter_weights("ccc", 1)
    assert first and first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["adapter.down_weight"], other["adapter.down_weight"])
