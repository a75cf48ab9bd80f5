"""Bad input that used to end in a traceback is a one-line error, through `pgt.cli.main`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_never_lose_work import one_line_error

from pgt.cli import main as pgt_main
from pgt.errors import PgtError

SURROGATE = "half a pair \udcff here"  # what invalid UTF-8 on a command line becomes


def parse_error(argv: list[str], capsys) -> str:
    """A refusal at parse time: exit status 2, the message on the last line, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        pgt_main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "command",
    [
        ["tokenize", SURROGATE, "--substrate", "S"],
        ["substrate", "show", SURROGATE, "--substrate", "S"],
        ["generate", "M", SURROGATE],
    ],
)
def test_a_lone_surrogate_on_the_command_line(command, capsys):
    assert "holds the lone surrogate \\udcff" in parse_error(command, capsys)


def test_a_lone_surrogate_in_a_multiple_choice_file(eval_model_dir, tmp_path, capsys):
    data = tmp_path / "mine.jsonl"
    data.write_text(
        '{"question": "2 + 2?", "choices": ["4", "5"], "answer": 0}\n'
        '{"question": "half \\udcff a pair", "choices": ["a", "b"], "answer": 1}\n'
    )
    line = one_line_error(
        ["eval", eval_model_dir, "--task", "mc", "--name", "mine", "--data", data, "--out", tmp_path / "results"],
        capsys,
    )
    assert "mine.jsonl:2 holds the lone surrogate \\udcff" in line


@pytest.mark.parametrize(
    "command",
    [
        ["generate", "{model}", "hello"],
        ["info", "{model}"],
        ["eval", "{model}", "--task", "perplexity", "--out", "{out}"],
    ],
)
def test_a_config_field_of_the_wrong_type(command, eval_model_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(eval_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "num_hidden_layers": "1"}))
    argv = [a.format(model=model, out=tmp_path / "out") for a in command]
    assert "num_hidden_layers is '1', expected a positive integer" in one_line_error(argv, capsys)


@pytest.mark.parametrize(
    "command",
    [
        ["generate", "M", "hi", "--seed", str(2**63)],
        ["init", "--substrate", "S", "--layers", "1", "--heads", "2", "--out", "O", "--seed", str(2**64)],
        ["grow", "--out", "O", "--seed", str(2**32)],
    ],
)
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
    """Online mode, but nothing answers (a closed local port stands in for no network)."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_TOKEN": "hf_none",
        "HF_HOME": str(tmp_path / "hf"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pgt", "push", str(eval_model_dir), "someone/pgt-test"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: cannot push {eval_model_dir} to someone/pgt-test")


@pytest.mark.parametrize(("option", "value"), [("--batch-size", "10000"), ("--grad-accum", "1000000")])
def test_a_stage_budget_below_one_step_is_refused(option, value, substrate_dir, token_data_dir, tmp_path, capsys):
    """4,000 tokens per stage used to train 320,000 (or one 128 M-token step)."""
    argv = [
        "grow",
        "--substrate",
        substrate_dir,
        "--data",
        token_data_dir,
        "--out",
        tmp_path / "run",
        "--stages",
        "1",
        "--tokens-per-stage",
        "4000",
        "--seq-len",
        "32",
        "--heads",
        "2",
        option,
        value,
    ]
    line = one_line_error(argv, capsys)
    assert "--tokens-per-stage 4,000 is less than one optimizer step" in line and not (tmp_path / "run").exists()


def test_tune_refuses_a_budget_below_one_step_and_windows_beyond_the_context(
    substrate_dir, token_data_dir, tmp_path, capsys
):
    """--tokens 300 trained 40,000 tokens; --seq-len beyond the context trained positions never seen."""
    from pgt.model.loading import init_model_dir

    experts = [
        init_model_dir(substrate_dir, tmp_path / f"e{i}", layers=1, heads=2, seed=i, max_position_embeddings=32)
        for i in range(2)
    ]
    assert pgt_main(["merge", *map(str, experts), "--mode", "adapter", "--out", str(tmp_path / "merged")]) == 0
    tune = ["tune", tmp_path / "merged", "--data", token_data_dir, "--device", "cpu", "--out", tmp_path / "tuned"]
    line = one_line_error([*tune, "--tokens", "300", "--seq-len", "5000", "--batch-size", "8"], capsys)
    assert "--tokens 300 is less than one optimizer step of 40,000 tokens" in line
    line = one_line_error([*tune, "--tokens", "3000", "--seq-len", "64", "--batch-size", "2"], capsys)
    assert "--seq-len 64 is longer than the model's context of 32 tokens" in line
    assert not (tmp_path / "tuned").exists()


def test_a_directory_given_for_a_file_is_named_not_a_temporary(substrate_dir, tmp_path, capsys):
    """`--png DIR` printed the path of a hidden temporary file."""
    line = one_line_error(["substrate", "show", "A", "--substrate", substrate_dir, "--png", tmp_path], capsys)
    assert line == f"error: {tmp_path} is a directory; give a file name"
    assert not list(tmp_path.iterdir())


def test_report_into_a_path_through_a_file_is_one_line(tmp_path, capsys):
    """`--out afile/x.md` where afile is a file raised FileExistsError."""
    from pgt.io import make_dirs

    (tmp_path / "afile").write_text("mine")
    with pytest.raises(
        PgtError, match=f"cannot create the directory {tmp_path / 'afile' / 'x'}: {tmp_path / 'afile'} is a file"
    ):
        make_dirs(tmp_path / "afile" / "x")
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_directory_that_needs_custom_code_is_refused_without_asking(eval_model_dir, tmp_path):
    """Transformers asked "Do you wish to run the custom code? [y/N]" with stdin closed."""
    import os
    import subprocess
    import sys

    model = tmp_path / "custom"
    shutil.copytree(eval_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    del config["substrate_fingerprint"]  # not a pgt directory: transformers' Auto classes load it
    config.update(
        model_type="someone_custom", auto_map={"AutoConfig": "custom.Config", "AutoModelForCausalLM": "custom.Model"}
    )
    (model / "config.json").write_text(json.dumps(config))
    (model / "custom.py").write_text("raise SystemExit('custom code ran')\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgt",
            "eval",
            str(model),
            "--task",
            "perplexity",
            "--limit",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert "Do you wish to run" not in result.stdout + result.stderr and "custom code ran" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot load {model} as a causal LM")


def test_a_torchrun_worker_ends_with_the_command_s_status_and_its_output(tmp_path):
    """Under torchrun (WORLD_SIZE > 1) `pgt` ends with os._exit after the command: the status and every
    printed line must still come out."""
    import os
    import subprocess
    import sys

    missing = tmp_path / "missing"
    for world_size in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-m", "pgt", "info", str(missing)],
            capture_output=True,
            text=True,
            env={**os.environ, "WORLD_SIZE": world_size},
            timeout=120,
            check=False,
        )
        assert result.returncode == 2, (world_size, result.stderr[-2000:])
        assert result.stderr.startswith(f"error: '{missing}' is neither a preset"), result.stderr[-2000:]


def test_every_pgt_error_survives_a_trip_to_another_process() -> None:
    """`pgt study --jobs` raises a worker's error in the study's process: the class, the message and the
    fields a caller reads (a SettingError's key, for the flag named on the command line) all cross."""
    import pickle

    from pgt.errors import MissingSetting, SettingError
    from pgt.records import Mismatch

    for error in (PgtError("plain"), SettingError("seq_len", "must be at most 64"), MissingSetting("out")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)
    mismatch = pickle.loads(pickle.dumps(Mismatch("config.lr", "fast", "float")))
    assert (type(mismatch), str(mismatch), mismatch.value) == (Mismatch, "config.lr is 'fast', expected float", "fast")
