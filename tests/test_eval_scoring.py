"""Reference-protocol scoring, prompts, statistics and dataset loading (no model needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pgt.errors import PgtError
from pgt.eval.datasets_io import load_task_data
from pgt.eval.protocol import (
    answer_letter,
    example_list,
    is_correct,
    sentence_bleu,
    summarize,
)
from pgt.eval.tasks import Example, get_task

DATA = Path(__file__).parent / "data" / "eval"


def rows(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.mark.parametrize(
    ("continuation", "answer"),
    [
        ("B", "B"),
        (" b)", "B"),
        ("xyz", "X"),
        ("  \n c", "C"),
        ("", ""),
        ("   ", ""),
        (" True", "T"),
        ("false", "F"),
        ("<unk>C", "<"),
        (" ßa", "S"),
        ("ﬁne", "F"),
    ],
)
def test_answer_letter_is_strip_upper_then_first_character(continuation: str, answer: str) -> None:
    assert answer_letter(continuation) == answer  # .strip().upper()[:1]: "ß" upper-cases to "SS"


def test_letter_and_true_false_scoring() -> None:
    mmlu = get_task("mmlu")
    example = Example("Q", "B", 1)
    assert is_correct(mmlu, example, " b)")
    assert not is_correct(mmlu, example, " A")
    assert not is_correct(mmlu, example, "xyz")  # not a valid letter: wrong, which is how scores fall below chance
    assert not is_correct(mmlu, Example("Q", "C", 1), "<unk>C")  # special-token text is kept, as in the reference
    assert is_correct(mmlu, Example("Q", "S", 1), "ß")
    boolq = get_task("boolq")
    assert is_correct(boolq, Example("Q", "T", 1), " true")
    assert not is_correct(boolq, Example("Q", "F", 1), " True")


def test_substring_scoring_compares_the_stripped_continuation() -> None:
    squad = get_task("squad_v2")
    assert is_correct(squad, Example("Q", "Paris", 5), " in PARIS, I think")
    assert not is_correct(squad, Example("Q", "Paris", 5), " Pari")
    # An answer with a leading space never occurs in the stripped continuation's start.
    assert not is_correct(squad, Example("Q", " Paris", 6), " Paris")
    assert is_correct(squad, Example("Q", " Paris", 6), "in Paris")


def test_bleu_is_sacrebleu_per_sentence_upper_cased_and_cut_at_end_of_sequence() -> None:
    import sacrebleu

    reference = "A bird in the bush usually has a friend in there with him."
    hypothesis = " a bird in the bush usually has a friend"
    expected = sacrebleu.corpus_bleu([hypothesis.strip().upper()], [[reference.upper()]]).score
    assert 0 < expected < 100
    assert sentence_bleu(hypothesis, reference) == pytest.approx(expected)
    assert sentence_bleu(hypothesis + "</s> with him. xyz qq", reference) == pytest.approx(expected)
    assert sentence_bleu(" everything is sometimes.</s>", "Everything is sometimes.") == pytest.approx(100.0)
    assert sentence_bleu("xyz qwv", "Everything is sometimes.") == pytest.approx(0.0)


def test_summary_statistics_use_the_population_standard_deviation() -> None:
    import numpy as np

    values = [20.0, 25.0, 30.0, 22.5]
    summary = summarize(values)
    assert summary.mean == pytest.approx(np.mean(values))
    assert summary.std == pytest.approx(np.std(values))  # ddof 0, as the reference's np.std
    assert summary.ci95 == pytest.approx(1.96 * np.std(values) / math.sqrt(4))
    assert summary.per_run == values
    assert summarize([42.0]).to_json() == {"mean": 42.0, "std": 0.0, "ci95": 0.0, "per_run": [42.0]}


def test_the_example_list_is_one_seeded_shuffle_cut_at_the_limit() -> None:
    full = example_list(12, None, 0)
    assert sorted(full) == list(range(12)) and full != list(range(12))
    assert example_list(12, 5, 0) == full[:5]
    assert example_list(12, 5, 0) == example_list(12, 5, 0)
    assert example_list(12, 5, 1) != full[:5]
    with pytest.raises(PgtError, match="--limit"):
        example_list(12, 0, 0)


def test_mmlu_reads_both_hub_schemas_and_refuses_coerced_answers() -> None:
    cais = rows("mmlu.jsonl")[1]
    a, b, c, d = cais["choices"]
    lukaemon = {"input": cais["question"], "A": a, "B": b, "C": c, "D": d, "target": "B"}
    task = get_task("mmlu")
    assert task.build(lukaemon).prompt == task.build(cais).prompt
    assert task.build(lukaemon).target == task.build(cais).target == "B"
    with pytest.raises(TypeError, match="option index"):
        task.build(dict(cais, answer=True))  # a bool is an int to Python: never the option B


def test_prompts_follow_the_reference_templates() -> None:
    mmlu_row = rows("mmlu.jsonl")[1]
    example = get_task("mmlu").build(mmlu_row)
    a, b, c, d = mmlu_row["choices"]
    assert example.prompt == f"Question: {mmlu_row['question']}\nOptions: A) {a} B) {b} C) {c} D) {d}\nAnswer:"
    assert (example.target, example.new_tokens) == ("B", 1)

    arc_row = rows("arc.jsonl")[0]
    example = get_task("arc_challenge").build(arc_row)
    choices = arc_row["choices"]
    lines = "".join(f"\n{label}) {text}" for label, text in zip(choices["label"], choices["text"], strict=True))
    assert example.prompt == f"Question: {arc_row['question']}\nOptions:{lines}\nAnswer:"
    assert (example.target, example.new_tokens) == (arc_row["answerKey"], 2)

    boolq_row = rows("boolq.jsonl")[1]
    example = get_task("boolq").build(boolq_row)
    assert example.prompt == f"Context: {boolq_row['passage']}\nQuestion: {boolq_row['question']}\nAnswer (True/False):"
    assert (example.target, example.new_tokens) == ("F", 1)

    squad_row = rows("squad_v2.jsonl")[3]
    example = get_task("squad_v2").build(squad_row)
    answer = squad_row["answers"]["text"][0]
    assert example.prompt == f"Context: {squad_row['context']}\nQuestion: {squad_row['question']}\nAnswer:"
    assert (example.target, example.new_tokens) == (answer, len(answer))

    pair = rows("opus100_en_ru.jsonl")[0]["translation"]
    example = get_task("opus100:en-ru").build({"translation": pair})
    assert example.prompt == f"Translate from English to Russian:\n{pair['en']}\nAnswer:"
    assert (example.target, example.new_tokens) == (pair["ru"], len(pair["ru"]))
    long = {"translation": {"en": "x", "ru": "я" * 130}}
    assert get_task("opus100:en-ru").build(long).new_tokens == 100  # min(len(reference), 100)
    reverse = get_task("opus100:ru-en")
    assert reverse.hf_config == "en-ru"
    assert reverse.build({"translation": pair}).prompt.startswith("Translate from Russian to English:\n")


def test_unknown_task_names_are_one_line_errors() -> None:
    with pytest.raises(PgtError, match="unknown task 'mmlu_pro'"):
        get_task("mmlu_pro")
    with pytest.raises(PgtError, match="opus100:SRC-TGT"):
        get_task("opus100:en")


def test_local_jsonl_parquet_and_saved_datasets_load_offline(tmp_path: Path, hf_offline: None) -> None:
    import datasets

    task = get_task("squad_v2")
    loaded = load_task_data(task, DATA / "squad_v2.jsonl")
    # 10 rows: one unanswerable and one with an answer longer than 8 characters are left out.
    assert (loaded.n_rows, len(loaded.examples)) == (10, 8)
    table = datasets.Dataset.from_list(rows("squad_v2.jsonl"))
    table.to_parquet(tmp_path / "squad.parquet")
    assert load_task_data(task, tmp_path / "squad.parquet").examples == loaded.examples
    datasets.DatasetDict({"validation": table, "train": table.select(range(2))}).save_to_disk(tmp_path / "saved")
    assert load_task_data(task, tmp_path / "saved").examples == loaded.examples
    assert len(load_task_data(task, tmp_path / "saved", split="train").examples) == 2
    # The hub's own layout: one parquet file per split in a folder.
    (tmp_path / "hub").mkdir()
    table.to_parquet(tmp_path / "hub" / "validation-00000-of-00001.parquet")
    table.select(range(3)).to_parquet(tmp_path / "hub" / "train-00000-of-00001.parquet")
    assert load_task_data(task, tmp_path / "hub").examples == loaded.examples
    with pytest.raises(PgtError, match="has no split 'test'"):
        load_task_data(task, tmp_path / "hub", split="test")


def test_malformed_or_missing_datasets_name_what_was_expected(tmp_path: Path, hf_offline: None) -> None:
    wrong = tmp_path / "arc.jsonl"
    wrong.write_text(json.dumps({"question": "Who?", "options": ["a", "b"], "answer": 1}) + "\n", encoding="utf-8")
    with pytest.raises(PgtError, match=r"expected fields: question \(str\), choices \{label") as error:
        load_task_data(get_task("arc_easy"), wrong)
    assert "\n" not in str(error.value)
    bad_key = tmp_path / "bad_key.jsonl"
    bad_key.write_text(json.dumps(dict(rows("mmlu.jsonl")[0], answer=7)) + "\n", encoding="utf-8")  # no option H
    with pytest.raises(PgtError, match=r"bad_key.jsonl:1: row does not fit task mmlu .*expected fields: question"):
        load_task_data(get_task("mmlu"), bad_key)
    flat = tmp_path / "flat_choices.jsonl"
    flat.write_text(json.dumps(dict(rows("mmlu.jsonl")[0], choices="abcd")) + "\n", encoding="utf-8")
    with pytest.raises(PgtError, match="choices must be a list"):
        load_task_data(get_task("mmlu"), flat)
    with pytest.raises(PgtError, match="dataset not found"):
        load_task_data(get_task("boolq"), tmp_path / "missing.jsonl")
    with pytest.raises(PgtError, match="Hugging Face hub") as error:
        load_task_data(get_task("boolq"), "hf:google/boolq")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("task", "line", "message"),
    [
        ("mmlu", {"question": "Q?", "choices": ["a", "b"], "answer": True}, "option index"),
        ("squad_v2", {"context": "c", "question": "q", "answers": {"text": "A"}}, "answers.text must be a list"),
        ("opus100:en-ru", {"translation": {"en": "Hello.", "ru": None}}, "ru must be a string"),
    ],
)
def test_silently_coercible_values_are_one_line_errors(tmp_path: Path, task: str, line: dict, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n" + json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(PgtError, match=message) as error:
        load_task_data(get_task(task), path)
    assert f"{path}:2:" in str(error.value) and "\n" not in str(error.value)


def test_empty_files_and_bad_lines_name_the_file_and_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(PgtError, match=r"empty.jsonl: no rows \(the file is empty\)"):
        load_task_data(get_task("arc_easy"), empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text((DATA / "arc.jsonl").read_text(encoding="utf-8").splitlines()[0] + "\n{not json\n", encoding="utf-8")
    with pytest.raises(PgtError, match=r"bad.jsonl:2: malformed JSON") as error:
        load_task_data(get_task("arc_easy"), bad)
    assert "\n" not in str(error.value)


def test_local_data_never_opens_a_network_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    import datasets

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network connection was opened")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    table = datasets.Dataset.from_list(rows("squad_v2.jsonl"))
    table.to_parquet(tmp_path / "squad.parquet")
    for path in (DATA / "squad_v2.jsonl", tmp_path / "squad.parquet"):
        assert len(load_task_data(get_task("squad_v2"), path).examples) == 8


def test_hub_loads_have_an_overall_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import datasets

    from pgt.eval import datasets_io

    stalled = threading.Event()
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: stalled.wait(30))
    monkeypatch.setenv("PGT_HUB_TIMEOUT", "0.2")  # the one hub timeout, shared with pgt data prepare
    with pytest.raises(PgtError, match="loading 'google/boolq': no data from the Hugging Face hub for 0.2 s"):
        datasets_io._load_hub("hf:google/boolq", "validation")
    stalled.set()


def test_lukaemon_mmlu_from_the_hub_reads_all_57_subject_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from pgt.eval.tasks import MMLU_SUBJECTS

    cais = rows("mmlu.jsonl")[0]
    row = {"input": cais["question"], **dict(zip("ABCD", cais["choices"], strict=True)), "target": "A"}
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config, split: asked.append(config) or [row])
    loaded = load_task_data(get_task("mmlu"), "hf:lukaemon/mmlu")
    assert asked == list(MMLU_SUBJECTS) and len(MMLU_SUBJECTS) == 57
    assert [e.group for e in loaded.examples] == list(MMLU_SUBJECTS)


def test_only_the_published_protocol_is_comparable_to_published_figures() -> None:
    from pgt.eval.generation import SAMPLERS
    from pgt.eval.protocol import TaskOutcome, summarize
    from pgt.eval.runner import comparable_to_published
    from pgt.eval.tasks import mc_task

    def outcome(n: int, runs: int = 10) -> TaskOutcome:
        return TaskOutcome({"accuracy": summarize([20.0] * runs)}, "accuracy", n, runs, False, 0)

    arc = get_task("arc_easy")
    assert comparable_to_published(arc, outcome(570), "generate", SAMPLERS["sample"])
    assert comparable_to_published(arc, outcome(570), "generate", SAMPLERS["card"])
    assert not comparable_to_published(arc, outcome(570), "generate", SAMPLERS["greedy"])
    assert not comparable_to_published(arc, outcome(569), "generate", SAMPLERS["sample"])  # another file
    assert not comparable_to_published(arc, outcome(570, runs=3), "generate", SAMPLERS["sample"])
    assert not comparable_to_published(arc, outcome(570), "loglik", SAMPLERS["sample"])
    assert not comparable_to_published(mc_task("mine"), outcome(570), "generate", SAMPLERS["sample"])
