"""Bad input that used to end in a traceback is a one-line error (issue 20.8-20.13), through `pgt.cli.main`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from pgt.cli import main as pgt_main
from test_never_lose_work import one_line_error

SURROGATE = "half a pair \udcff here"  # what invalid UTF-8 on a command line becomes


def parse_error(argv: list[str], capsys) -> str:
    """A refusal at parse time: exit status 2, the message on the last line, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        pgt_main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", [["tokenize", SURROGATE, "--substrate", "S"],
                                     ["substrate", "show", SURROGATE, "--substrate", "S"],
                                     ["generate", "M", SURROGATE]])
def test_a_lone_surrogate_on_the_command_line(command, capsys):
    assert "holds the lone surrogate \\udcff" in parse_error(command, capsys)


def test_a_lone_surrogate_in_a_multiple_choice_file(eval_model_dir, tmp_path, capsys):
    data = tmp_path / "mine.jsonl"
    data.write_text('{"question": "2 + 2?", "choices": ["4", "5"], "answer": 0}\n'
                    '{"question": "half \\udcff a pair", "choices": ["a", "b"], "answer": 1}\n')
    line = one_line_error(["eval", eval_model_dir, "--task", "mc", "--name", "mine", "--data", data, "--out",
                           tmp_path / "results"], capsys)
    assert "mine.jsonl:2 holds the lone surrogate \\udcff" in line


@pytest.mark.parametrize("command", [["generate", "{model}", "hello"], ["info", "{model}"],
                                     ["eval", "{model}", "--task", "perplexity", "--out", "{out}"]])
def test_a_config_field_of_the_wrong_type(command, eval_model_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(eval_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "num_hidden_layers": "1"}))
    argv = [a.format(model=model, out=tmp_path / "out") for a in command]
    assert "num_hidden_layers is '1', expected a positive integer" in one_line_error(argv, capsys)


@pytest.mark.parametrize("command", [["generate", "M", "hi", "--seed", str(2**63)],
                                     ["init", "--substrate", "S", "--layers", "1", "--heads", "2", "--out", "O",
                                      "--seed", str(2**64)],
                                     ["grow", "--out", "O", "--seed", str(2**32)]])
def test_seeds_beyond_2_to_the_32_are_refused_when_parsing(command, capsys):
    assert "must be at most 4294967295 (2^32 - 1)" in parse_error(command, capsys)


def test_pickle_weights_are_refused_in_one_line(eval_model_dir, tmp_path, capsys):
    """Safe before (weights_only), but a traceback; now one line that says why."""
    for name, model in (("pgt", tmp_path / "pgt"), ("hf", tmp_path / "hf")):
        shutil.copytree(eval_model_dir, model)
        weights = model / "model.safetensors"
        from safetensors.torch import load_file

        torch.save(load_file(str(weights)), model / "pytorch_model.bin")
        weights.unlink()
        if name == "hf":  # not a pgt directory: transformers' own loading path
            config = json.loads((model / "config.json").read_text())
            del config["substrate_fingerprint"]
            (model / "config.json").write_text(json.dumps(config))
        line = one_line_error(["eval", model, "--task", "perplexity", "--out", tmp_path / f"out-{name}"], capsys)
        assert "holds pickle weights only (pytorch_model.bin)" in line and "can run code" in line


def test_push_without_a_network_is_one_line(eval_model_dir, tmp_path):
    """Issue 20.12: online mode, but nothing answers (a closed local port stands in for no network)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_none",
           "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-m", "pgt", "push", str(eval_model_dir), "someone/pgt-test"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: cannot push {eval_model_dir} to someone/pgt-test")
