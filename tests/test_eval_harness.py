"""lm-evaluation-harness on a pgt model: a local multiple-choice task, offline (few tests: lm-eval imports slowly)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HARNESS_TASKS = Path("tests/data/eval/harness")  # the task YAML's data_files are relative to the repository root


def test_harness_runs_a_local_task_on_a_pgt_model(
    eval_model_dir: Path, hf_offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(REPO)
    from pgt.eval.harness import harness_paths, run_harness
    from pgt.model.loading import load_model

    model, tokenizer = load_model(eval_model_dir)
    [(path, record)] = run_harness(
        model, tokenizer, eval_model_dir, ["fortune_cloze"], include_path=HARNESS_TASKS, batch_size=4, out_dir=tmp_path
    )
    assert path == tmp_path / "harness-fortune_cloze--fortune_cloze.json"
    assert harness_paths(eval_model_dir, ["fortune_cloze"], include_path=HARNESS_TASKS, out_dir=tmp_path) == [path]
    assert json.loads(path.read_text(encoding="utf-8")) == record.to_json()
    assert record.task == "harness-fortune_cloze" and record.metric == "acc" and record.kind == "lm-eval"
    assert record.protocol["output_type"] == "multiple_choice" and record.n_examples == 10
    raw = record.details["harness_metrics"]
    # Ten questions with four options: accuracy is a multiple of 10 %, its standard error positive.
    assert record.metrics.mean == pytest.approx(100 * raw["acc"])
    assert round(raw["acc"] * 10) == pytest.approx(raw["acc"] * 10) and 0 <= raw["acc"] <= 1
    assert 0 <= raw["acc_norm"] <= 1 and raw["acc_stderr"] > 0
    assert record.model_fingerprint.substrate_fingerprint
    # The same items as our own multiple-choice task: per-option log-likelihoods, acc and acc_norm agree.
    from pgt.eval.results import EvalRecord
    from pgt.eval.runner import evaluate_to_file

    own = tmp_path / "fortune_cloze.jsonl"
    with open(own, "w", encoding="utf-8") as handle:
        for line in (HARNESS_TASKS / "fortune_cloze.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            prompt = f"Fill the blank: {row['text']}\nAnswer:"  # the task YAML's doc_to_text
            handle.write(json.dumps({"prompt": prompt, "choices": row["choices"], "answer": row["gold"]}) + "\n")
    [(logged, _)] = run_harness(
        model,
        tokenizer,
        eval_model_dir,
        ["fortune_cloze"],
        include_path=HARNESS_TASKS,
        batch_size=4,
        out_dir=tmp_path / "logged",
        log_samples=True,
    )
    harness_samples = [
        json.loads(line)
        for line in (logged.parent / EvalRecord.load(logged).samples_file).read_text(encoding="utf-8").splitlines()
    ]
    path, ours = evaluate_to_file(
        model, tokenizer, eval_model_dir, "mc", name="fortune", data=str(own), out_dir=tmp_path, log_samples=True
    )
    assert ours.metrics.mean == pytest.approx(100 * raw["acc"])
    assert ours.other_metrics["acc_norm"].mean == pytest.approx(100 * raw["acc_norm"])
    our_samples = {s["index"]: s for s in map(json.loads, (tmp_path / ours.samples_file).read_text().splitlines())}
    for sample in harness_samples:
        theirs = [float(resp[0][0]) for resp in sample["resps"]]
        assert our_samples[sample["doc_id"]]["logprobs"]["text"] == pytest.approx(theirs, abs=1e-4)
        assert our_samples[sample["doc_id"]]["correct"]["acc_norm"] == bool(sample["acc_norm"])


def test_an_existing_harness_result_is_refused_before_the_model_loads(
    eval_model_dir: Path,
    hf_offline: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(REPO)
    from pgt.cli import main
    from pgt.eval import runner
    from pgt.eval.harness import harness_paths

    # A group or tag names its member tasks' files (the group's own too): all known before evaluating.
    names = [p.name for p in harness_paths(eval_model_dir, ["ai2_arc"], out_dir=tmp_path)]
    assert names == ["harness-arc_challenge--ai2_arc-ARC-Challenge.json", "harness-arc_easy--ai2_arc-ARC-Easy.json"]
    existing = tmp_path / "harness-fortune_cloze--fortune_cloze.json"
    existing.write_text("an earlier result\n", encoding="utf-8")

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(runner, "load_for_eval", no_loading)
    command = [
        "eval",
        str(eval_model_dir),
        "--harness",
        "fortune_cloze",
        "--include-path",
        str(HARNESS_TASKS),
        "--out",
        str(tmp_path),
    ]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err == f"error: eval result {existing} already exists (choose another --out or pass --overwrite)\n"
    assert existing.read_text(encoding="utf-8") == "an earlier result\n"
