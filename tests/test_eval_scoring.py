"""Reference-protocol scoring, prompts, statistics and dataset loading (no model needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pgt.errors import PgtError
from pgt.eval.datasets_io import load_task_data
from pgt.eval.protocol import corpus_bleu, first_answer_char, is_correct, run_subsets, summarize
from pgt.eval.tasks import Example, get_task

DATA = Path(__file__).parent / "data" / "eval"


def rows(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.mark.parametrize(
    ("continuation", "answer"),
    [("B", "B"), (" b)", "B"), ("xyz", "X"), ("  \n c", "C"), ("", ""), ("   ", ""), (" True", "T"), ("false", "F")],
)
def test_first_answer_char_is_first_non_space_character_upper_cased(continuation: str, answer: str) -> None:
    assert first_answer_char(continuation) == answer


def test_letter_and_true_false_scoring() -> None:
    mmlu = get_task("mmlu")
    example = Example("Q", "B", 1)
    assert is_correct(mmlu, example, " b)")
    assert not is_correct(mmlu, example, " A")
    assert not is_correct(mmlu, example, "xyz")  # not a valid letter: wrong, which is how scores fall below chance
    boolq = get_task("boolq")
    assert is_correct(boolq, Example("Q", "T", 1), " true")
    assert not is_correct(boolq, Example("Q", "F", 1), " True")


def test_substring_scoring_is_case_insensitive() -> None:
    squad = get_task("squad_v2")
    assert is_correct(squad, Example("Q", "Paris", 5), " in PARIS, I think")
    assert not is_correct(squad, Example("Q", "Paris", 5), " Pari")


def test_bleu_is_sacrebleu_corpus_bleu_upper_cased() -> None:
    import sacrebleu

    hypotheses = ["a bird in the bush usually has a friend", "nothing is always"]
    references = ["A bird in the bush usually has a friend in there with him.", "Nothing is always."]
    expected = sacrebleu.corpus_bleu([h.upper() for h in hypotheses], [[r.upper() for r in references]]).score
    assert corpus_bleu(hypotheses, references) == pytest.approx(expected)
    assert 0 < expected < 100
    assert corpus_bleu(["everything is sometimes."], ["Everything is sometimes."]) == pytest.approx(100.0)
    assert corpus_bleu(["xyz qwv"], ["Everything is sometimes."]) == pytest.approx(0.0)


def test_summary_statistics() -> None:
    summary = summarize([20.0, 25.0, 30.0])
    assert summary["mean"] == pytest.approx(25.0)
    assert summary["std"] == pytest.approx(5.0)  # sample standard deviation
    assert summary["ci95"] == pytest.approx(1.96 * 5.0 / math.sqrt(3))
    assert summary["per_run"] == [20.0, 25.0, 30.0]
    assert summarize([42.0]) == {"mean": 42.0, "std": 0.0, "ci95": 0.0, "per_run": [42.0]}


def test_runs_are_seeded_random_subsets_or_the_whole_split() -> None:
    subsets, identical = run_subsets(12, 3, None, 0)
    assert identical and subsets == [list(range(12))] * 3
    assert run_subsets(12, 3, 20, 0) == (subsets, True)
    subsets, identical = run_subsets(12, 4, 5, 7)
    assert not identical
    assert all(len(s) == 5 == len(set(s)) and all(0 <= i < 12 for i in s) for s in subsets)
    assert len({tuple(s) for s in subsets}) > 1
    assert run_subsets(12, 4, 5, 7)[0] == subsets  # reproducible
    assert run_subsets(12, 4, 5, 8)[0][0] == subsets[1]  # run r uses seed + r
    with pytest.raises(PgtError, match="--runs"):
        run_subsets(12, 0, None, 0)


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
    with pytest.raises(PgtError, match=r"row 0 does not fit task mmlu .*expected fields: question \(str\), choices"):
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
