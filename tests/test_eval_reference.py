"""The reference's rules, end to end, with scripted models whose continuations are known.

A `ScriptedLM` continues every prompt after its last `:` (`Answer:`) with a fixed script of
next-token distributions, so the extracted answers, scores, σ and BLEU can be worked out by
hand from the rules in docs/evaluation.md and compared with what `pgt eval` computes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from pgt.eval.datasets_io import load_task_data
from pgt.eval.generation import SAMPLERS
from pgt.eval.protocol import evaluate_task, example_list
from pgt.eval.tasks import get_task
from pgt.model.loading import load_model

DATA = Path(__file__).parent / "data" / "eval"
GREEDY = SAMPLERS["greedy"]


class ScriptedConfig(PretrainedConfig):
    model_type = "pgt-test-scripted"

    def __init__(self, vocab_size: int = 8, max_position_embeddings: int = 512, **kwargs: object) -> None:
        self.vocab_size, self.max_position_embeddings = vocab_size, max_position_embeddings
        super().__init__(use_cache=False, **kwargs)  # the script reads the whole row at every step


class ScriptedLM(PreTrainedModel, GenerationMixin):
    """Step k after the row's last `mark` token draws from `script[k]` ({token id: probability})."""

    config_class = ScriptedConfig

    def __init__(self, config: ScriptedConfig, mark: int, script: list[dict[int, float]], filler: int) -> None:
        super().__init__(config)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a parameter, so the model has a device
        self.mark, self.script, self.filler = mark, script, filler
        self.generation_config.use_cache = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: object):
        logits = torch.full((*input_ids.shape, self.config.vocab_size), -1e9)
        for row, ids in enumerate(input_ids.tolist()):
            step = len(ids) - 1 - max(i for i, token in enumerate(ids) if token == self.mark)
            for token, p in (self.script[step] if step < len(self.script) else {self.filler: 1.0}).items():
                logits[row, -1, token] = math.log(p)
        return CausalLMOutputWithPast(logits=logits)


@pytest.fixture(scope="module")
def tokenizer(eval_model_dir: Path):
    return load_model(eval_model_dir)[1]


def scripted(tokenizer, *steps: str | int | dict[str, float]) -> ScriptedLM:
    """A model whose continuation is `steps`: texts (one token each), token ids, or {text: probability}."""

    def token(text: str | int) -> int:
        if isinstance(text, int):
            return text
        (single,) = tokenizer(text, add_special_tokens=False)["input_ids"]
        return single

    script = [{token(k): p for k, p in s.items()} if isinstance(s, dict) else {token(s): 1.0} for s in steps]
    (mark,) = tokenizer(":", add_special_tokens=False)["input_ids"]
    return ScriptedLM(
        ScriptedConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id), mark, script, token("x")
    ).eval()


def test_special_token_text_is_part_of_the_answer(tokenizer) -> None:
    arc = get_task("arc_easy")
    examples = load_task_data(arc, DATA / "arc.jsonl").examples
    share_c = 100.0 * sum(e.target == "C" for e in examples) / len(examples)
    assert 0 < share_c < 100
    plain = evaluate_task(scripted(tokenizer, " ", "C"), tokenizer, arc, examples, runs=1, sampler=GREEDY)
    assert plain.metrics["accuracy"].mean == pytest.approx(share_c)
    # `<unk>C` decodes with its special-token text: the answer is "<", wrong everywhere.
    unk = evaluate_task(
        scripted(tokenizer, tokenizer.unk_token_id, "C"), tokenizer, arc, examples, runs=1, sampler=GREEDY
    )
    assert {s["continuations"][0] for s in unk.samples} == {"<unk>C"}
    assert {s["answers"][0] for s in unk.samples} == {"<"}
    assert unk.metrics["accuracy"].mean == 0.0 and unk.metrics["valid_answer_rate"].mean == 0.0
    # `ß` upper-cases to "SS": the answer is its first character, "S".
    eszett = evaluate_task(scripted(tokenizer, "ß", "C"), tokenizer, arc, examples, runs=1, sampler=GREEDY)
    assert {s["answers"][0] for s in eszett.samples} == {"S"}


def test_squad_compares_the_stripped_continuation(tokenizer, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (DATA / "squad_v2.jsonl").read_text(encoding="utf-8").splitlines()]
    first_word = [r for r in rows if r["answers"]["text"] == ["A"]][:2]
    assert len(first_word) == 2
    spaced = [dict(r, answers={"text": [" A"], "answer_start": [0]}) for r in first_word]
    path = tmp_path / "squad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in first_word + spaced), encoding="utf-8")
    examples = load_task_data(get_task("squad_v2"), path).examples
    assert [e.new_tokens for e in examples] == [1, 1, 2, 2]  # min(len(answer), 100): the space counts
    outcome = evaluate_task(
        scripted(tokenizer, " ", "A"), tokenizer, get_task("squad_v2"), examples, runs=1, sampler=GREEDY
    )
    by_target = {examples[s["index"]].target: s["correct"][0] for s in outcome.samples}
    # One new token reads " " -> "" (holds no "A"); two read " A" -> stripped "A", which holds no " A".
    assert by_target == {"A": False, " A": False}
    longer = evaluate_task(
        scripted(tokenizer, "A", " ", "A"), tokenizer, get_task("squad_v2"), examples, runs=1, sampler=GREEDY
    )
    correct = {(s["index"], examples[s["index"]].target): s["correct"][0] for s in longer.samples}
    # "A" -> "A" contains "A"; "A " stripped -> "A" does not contain " A".
    assert {target: right for (_, target), right in correct.items()} == {"A": True, " A": False}
    assert longer.metrics["accuracy"].mean == pytest.approx(50.0)


def test_bleu_is_the_mean_of_sentence_scores_over_at_most_100_new_tokens(tokenizer, tmp_path: Path) -> None:
    import sacrebleu

    references = [
        "Everything is sometimes, and nothing is always, said the old man who had seen a great many things "
        "happen to a great many people.",
        "Everything is sometimes, and nothing is always right.",
    ]
    assert len(references[0]) > 100
    path = tmp_path / "opus.jsonl"
    path.write_text(
        "".join(json.dumps({"translation": {"en": "Quote.", "ru": r}}) + "\n" for r in references), encoding="utf-8"
    )
    task = get_task("opus100:en-ru")
    examples = load_task_data(task, path).examples
    assert [e.new_tokens for e in examples] == [100, len(references[1])]
    hypothesis = " Everything is sometimes, and nothing is always"
    steps = [*tokenizer(hypothesis, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id, "x", "x"]
    outcome = evaluate_task(scripted(tokenizer, *steps), tokenizer, task, examples, runs=1, sampler=GREEDY)
    by_index = {s["index"]: s for s in outcome.samples}
    hyp = hypothesis.strip().upper()
    assert by_index[0]["continuations"][0].startswith(hypothesis + "</s>xx")
    assert all(s["answers"][0] == hyp for s in outcome.samples)  # cut at </S>
    sentence = [sacrebleu.corpus_bleu([hyp], [[r.upper()]]).score for r in references]
    assert outcome.metrics["bleu"].mean == pytest.approx(np.mean(sentence))
    corpus = sacrebleu.corpus_bleu([hyp] * 2, [[r.upper() for r in references]]).score
    assert abs(np.mean(sentence) - corpus) > 1  # the reference's figure is not corpus BLEU


def test_sampled_runs_over_one_list_give_a_population_sigma_and_greedy_none(tokenizer) -> None:
    arc = get_task("arc_easy")
    examples = load_task_data(arc, DATA / "arc.jsonl").examples
    coin = scripted(tokenizer, {" ": 1.0}, {"A": 0.5, "D": 0.5})
    outcome = evaluate_task(coin, tokenizer, arc, examples, runs=10, limit=6, seed=3)
    chosen = example_list(len(examples), 6, 3)
    assert [s["index"] for s in outcome.samples] == chosen  # the same list in every run
    per_run = [100.0 * np.mean([s["correct"][run] for s in outcome.samples]) for run in range(10)]
    summary = outcome.metrics["accuracy"]
    assert summary.per_run == pytest.approx(per_run)
    assert summary.std == pytest.approx(np.std(per_run)) and summary.std > 0
    assert summary.ci95 == pytest.approx(1.96 * np.std(per_run) / math.sqrt(10))
    assert not outcome.runs_identical
    assert all(set(s["answers"]) <= {"A", "D"} for s in outcome.samples)
    # Draws are per example and run: another batch size gives the same continuations.
    again = evaluate_task(coin, tokenizer, arc, examples, runs=10, limit=6, seed=3, batch_size=1)
    assert [s["continuations"] for s in again.samples] == [s["continuations"] for s in outcome.samples]
    greedy = evaluate_task(coin, tokenizer, arc, examples, runs=10, limit=6, seed=3, sampler=GREEDY)
    assert (
        greedy.runs_identical
        and greedy.metrics["accuracy"].std == 0.0
        and len(greedy.metrics["accuracy"].per_run) == 10
    )
