"""`pgt info`, `pgt init`, `pgt generate` end to end, and the preset sizes."""

from __future__ import annotations

import pytest
import torch

from pgt.cli import main
from pgt.model.loading import load_model, parameter_counts
from pgt.model.presets import PRESETS


@pytest.mark.parametrize(
    "name, billions",
    [
        ("abs-bvv-1", 1.3),
        ("abs-bvv-2", 1.5),
        ("abs-bvv-3", 1.7),
        ("abs-bvv-4", 1.9),
        ("abs-bvv-5", 2.1),
        ("abs-bvv-6", 2.3),
        ("best-bvv", 0.5),
    ],
)
def test_published_presets_round_to_the_published_sizes(name, billions):
    preset = PRESETS[name]
    total, trainable = parameter_counts(preset.config())
    assert round(total / 1e9, 1) == billions == preset.published
    # the frozen embedding is the only non-trainable matrix
    assert total - trainable == preset.vocab_size * preset.hidden_size


def test_info_prints_a_preset(capsys):
    assert main(["info", "abs-bvv-4"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "blocks:     4",
        "d_model:    4096",
        "heads:      32",
        "vocab:      131,328",
        "total:      1,881,182,208",
        "trainable:  1,343,262,720",
        "published:  1.9 B",
    ):
        assert expected in out


def test_unknown_preset_is_a_clear_error(capsys):
    assert main(["info", "abs-bvv-9"]) == 2
    assert "neither a preset" in capsys.readouterr().err


def test_init_info_and_generate_end_to_end(substrate_dir, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["init", "--substrate", str(substrate_dir), "--preset", "tiny", "--out", str(out)]) == 0
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "blocks:     2" in info and "d_model:    64" in info

    prompt = "Hello, I am a language model "
    assert main(["generate", str(out), prompt, "--greedy", "--max-new-tokens", "8"]) == 0
    printed = capsys.readouterr().out
    model, tokenizer = load_model(out)
    inputs = tokenizer(prompt, return_tensors="pt")
    expected = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert printed.rstrip("\n") == tokenizer.decode(expected[0])

    args = ["generate", str(out), prompt, "--max-new-tokens", "8", "--seed", "5", "--dtype", "bfloat16"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith(prompt)


def test_generate_refuses_prompts_past_the_context_unless_truncating(substrate_dir, tmp_path, capsys):
    from pgt.model.loading import init_model_dir

    out = init_model_dir(substrate_dir, tmp_path / "short", layers=1, heads=4, max_position_embeddings=16)
    prompt = "a b c d e f g h i j k l m n o p q r s t"
    assert main(["generate", str(out), prompt, "--max-new-tokens", "4"]) == 2
    assert "exceeds the model's context of 16" in capsys.readouterr().err
    assert main(["generate", str(out), prompt, "--max-new-tokens", "4", "--truncate", "--greedy"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(" o p q r s t")  # the last 12 prompt tokens (spaces are tokens), then 4 new ones
    model, _ = load_model(out)
    assert torch.isfinite(model(torch.zeros(1, 16, dtype=torch.long)).logits).all()


def test_generate_on_a_missing_directory(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nope"), "hi"]) == 2
    assert "model directory not found" in capsys.readouterr().err


def test_info_on_a_directory_that_is_not_a_pgt_model(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a pgt model directory" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--temperature", "nan"),
        ("--temperature", "0"),
        ("--top-p", "1.5"),
        ("--top-k", "-1"),
        ("--max-new-tokens", "0"),
        ("--attn-implementation", "eager"),
    ],
)
def test_generate_refuses_bad_options_at_parse_time(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", str(tmp_path), "hi", flag, value])
    assert exit_.value.code == 2 and flag in capsys.readouterr().err


def test_init_out_inside_the_substrate_is_refused(substrate_dir, capsys):
    assert (
        main(
            [
                "init",
                "--substrate",
                str(substrate_dir),
                "--layers",
                "1",
                "--heads",
                "4",
                "--out",
                str(substrate_dir / "m"),
            ]
        )
        == 2
    )
    assert "overlaps the input" in capsys.readouterr().err and not (substrate_dir / "m").exists()


def test_generate_with_an_explicit_attention_backend(eval_model_dir, capsys):
    args = ["generate", str(eval_model_dir), "Hello", "--greedy", "--max-new-tokens", "4", "--device", "cpu"]
    assert main([*args, "--attn-implementation", "sdpa"]) == 0
    model, tokenizer = load_model(eval_model_dir, attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    expected = model.generate(**tokenizer("Hello", return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert capsys.readouterr().out.rstrip("\n") == tokenizer.decode(expected[0])


def test_push_offline_is_a_one_line_error(eval_model_dir, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["push", str(eval_model_dir), "someone/pgt-test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot push") and err.count("\n") == 1


def test_model_commands_show_examples(capsys):
    for command in ("info", "init", "generate", "push"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "examples:\n  pgt " + command in capsys.readouterr().out
