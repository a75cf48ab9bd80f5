"""Evaluation with real pgt models: batching, known answers, perplexity, truncation, results JSON, CLI."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from pgt.cli import main as pgt_main
from pgt.eval.datasets_io import load_task_data
from pgt.eval.generation import SAMPLERS, generate_continuations
from pgt.eval.loglik import continuation_logprobs
from pgt.eval.perplexity import score_texts, windows
from pgt.eval.protocol import evaluate_task, example_list
from pgt.eval.tasks import Example, get_task
from pgt.model.loading import load_model

DATA = Path(__file__).parent / "data" / "eval"
GREEDY = SAMPLERS["greedy"]


@pytest.fixture(scope="module")
def model_and_tokenizer(eval_model_dir: Path):
    return load_model(eval_model_dir)


@pytest.fixture(scope="module")
def answers_b(eval_model_dir: Path, corpus_files: list[Path]):
    """The test model trained for a few steps to predict the token `B` after anything."""
    from pgt.corpus.sources import iter_fortunes

    model, tokenizer = load_model(eval_model_dir)
    (letter,) = tokenizer("B", add_special_tokens=False)["input_ids"]
    texts = [text for _, text in zip(range(8), iter_fortunes(corpus_files[0]), strict=False)]
    batch = tokenizer(
        texts, add_special_tokens=False, return_tensors="pt", padding=True, truncation=True, max_length=24
    )
    labels = torch.full_like(batch["input_ids"], letter)
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(20):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, tokenizer


def share_of_key(examples: list[Example], key: str) -> float:
    return 100.0 * sum(e.target == key for e in examples) / len(examples)


def test_batched_generation_and_loglik_equal_one_at_a_time(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    examples = load_task_data(get_task("arc_easy"), DATA / "arc.jsonl").examples[:5]
    examples += load_task_data(get_task("squad_v2"), DATA / "squad_v2.jsonl").examples[:3]
    prompts, counts = [e.prompt for e in examples], [e.new_tokens for e in examples]
    alone = generate_continuations(model, tokenizer, prompts, counts, batch_size=1)
    batched = generate_continuations(model, tokenizer, prompts, counts, batch_size=4)
    assert batched.texts == alone.texts
    assert all(text for text in alone.texts)
    requests = [(e.prompt, f" {text}") for e in examples[:5] for _, text in e.options]
    one, _ = continuation_logprobs(model, tokenizer, requests, batch_size=1)
    many, _ = continuation_logprobs(model, tokenizer, requests, batch_size=7)
    assert [s.n_tokens for s in one] == [s.n_tokens for s in many]
    assert [s.logprob for s in many] == pytest.approx([s.logprob for s in one], rel=1e-4, abs=1e-4)
    assert all(s.logprob < 0 for s in one)


def test_a_model_that_always_answers_b_scores_the_share_of_b_keys(answers_b) -> None:
    model, tokenizer = answers_b
    for name, path in (("mmlu", "mmlu.jsonl"), ("arc_easy", "arc.jsonl")):
        examples = load_task_data(get_task(name), DATA / path).examples
        expected = share_of_key(examples, "B")
        assert 0 < expected < 50
        generated = evaluate_task(model, tokenizer, get_task(name), examples, runs=2, batch_size=4, sampler=GREEDY)
        assert generated.runs_identical
        assert generated.metrics["accuracy"].mean == pytest.approx(expected)
        assert generated.metrics["accuracy"].std == 0.0
        if name == "mmlu":  # the rows carry a subject: accuracy per subject
            assert generated.by_group["fortunes_science"].mean == pytest.approx(expected)
        # ARC's last question is labelled 1-4: "B" is no valid answer there.
        valid = 100.0 * sum(any(label == "B" for label, _ in e.options) for e in examples) / len(examples)
        assert generated.metrics["valid_answer_rate"].mean == pytest.approx(valid)
        by_letter = evaluate_task(model, tokenizer, get_task(name), examples, mode="loglik", runs=1)
        assert by_letter.metrics["accuracy"].mean == pytest.approx(expected)
    only_b = [Example(e.prompt, "B", e.new_tokens, e.options) for e in examples[:4]]
    assert (
        evaluate_task(model, tokenizer, get_task("arc_easy"), only_b, runs=1, sampler=GREEDY).metrics["accuracy"].mean
        == 100.0
    )
    # True/False questions: "B" is neither, so letter scoring gives 0 % (below chance) ...
    boolq = load_task_data(get_task("boolq"), DATA / "boolq.jsonl").examples
    assert (
        evaluate_task(model, tokenizer, get_task("boolq"), boolq, runs=1, sampler=GREEDY).metrics["accuracy"].mean
        == 0.0
    )
    # ... while log-likelihood mode always answers True or False, and scores the share it gets right.
    loglik = evaluate_task(model, tokenizer, get_task("boolq"), boolq, mode="loglik", runs=1)
    answers = {s["index"]: s["answers"]["accuracy"] for s in loglik.samples}
    assert set(answers.values()) <= {"T", "F"} and len(answers) == len(boolq)
    right = [answer == boolq[i].target for i, answer in answers.items()]
    assert loglik.metrics["accuracy"].mean == pytest.approx(100.0 * sum(right) / len(boolq))


def test_sampled_runs_score_one_fixed_list_and_differ_only_by_their_draws(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    examples = load_task_data(get_task("squad_v2"), DATA / "squad_v2.jsonl").examples
    outcome = evaluate_task(model, tokenizer, get_task("squad_v2"), examples, runs=4, limit=3, seed=1, batch_size=8)
    summary = outcome.metrics["accuracy"]
    assert not outcome.runs_identical and outcome.n_examples == 3 and len(summary.per_run) == 4
    assert {s["index"] for s in outcome.samples} == set(example_list(len(examples), 3, 1))  # the same list every run
    assert all(len(s["continuations"]) == 4 for s in outcome.samples)
    assert any(len(set(s["continuations"])) > 1 for s in outcome.samples)  # runs differ by their draws
    assert summary.mean == pytest.approx(sum(summary.per_run) / 4)
    assert summary.ci95 == pytest.approx(1.96 * summary.std / 2)
    again = evaluate_task(model, tokenizer, get_task("squad_v2"), examples, runs=4, limit=3, seed=1, batch_size=1)
    assert [s["continuations"] for s in again.samples] == [s["continuations"] for s in outcome.samples]


def test_windows_score_every_token_once_within_the_context() -> None:
    for n, length, stride in ((1, 8, 4), (2, 8, 4), (8, 8, 4), (9, 8, 4), (50, 8, 3), (50, 8, 7)):
        spans = windows(n, length, stride)
        targets = [t for begin, end, first in spans for t in range(first, end)]
        assert targets == list(range(1, n))
        assert all(end - begin <= length and begin < first for begin, end, first in spans)
        # After the first window every target sees at least length - stride tokens of context.
        assert all(first - begin >= min(first, length - stride) for begin, end, first in spans)


def test_bits_per_byte_equals_the_manual_computation(model_and_tokenizer, corpus_files: list[Path]) -> None:
    from pgt.corpus.sources import iter_fortunes

    model, tokenizer = model_and_tokenizer
    texts = [t for t in iter_fortunes(corpus_files[0]) if 20 < len(t) < 100][:3]
    nats, tokens, per_text = 0.0, 0, []
    for text in texts:
        ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]])
        assert ids.shape[1] <= 128
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        document_nats = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        per_text.append((ids.shape[1] - 1, document_nats))
        nats += document_nats
        tokens += ids.shape[1] - 1
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    score = score_texts(model, tokenizer, texts, batch_size=2)
    assert (score.n_tokens, score.n_bytes) == (tokens, n_bytes)
    assert score.bits_per_byte == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-4)
    assert score.perplexity == pytest.approx(math.exp(nats / tokens), rel=1e-4)
    # Each document's own figures (--log-samples); a blank text is skipped but keeps the numbering.
    documents = score_texts(model, tokenizer, [texts[0], " \n", *texts[1:]], batch_size=2).documents
    assert [(d.index, d.n_bytes) for d in documents] == [
        (0, len(texts[0].encode())),
        *((i + 1, len(t.encode())) for i, t in enumerate(texts) if i),
    ]
    for document, (n_tokens, document_nats) in zip(documents, per_text, strict=True):
        assert document.n_tokens == n_tokens and document.nats == pytest.approx(document_nats, rel=1e-4)
    # A text longer than the context is scored in windows, every token once, batched or not.
    long_text = " ".join(t for t in iter_fortunes(corpus_files[0]))[:2000]
    one, many = score_texts(model, tokenizer, [long_text], batch_size=1), score_texts(model, tokenizer, [long_text], 8)
    assert one.n_tokens == len(tokenizer(long_text, add_special_tokens=False)["input_ids"]) > 128
    assert many.nats == pytest.approx(one.nats, rel=1e-4)


def test_prompts_longer_than_the_context_are_left_truncated(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    rows = [json.loads(line) for line in (DATA / "boolq.jsonl").read_text(encoding="utf-8").splitlines()]
    passage = " ".join(row["passage"] for row in rows)
    long_example = get_task("boolq").build({**rows[0], "passage": passage})
    assert len(tokenizer(long_example.prompt)["input_ids"]) > 128
    out = generate_continuations(model, tokenizer, [long_example.prompt, rows[1]["question"]], [1, 1])
    assert out.n_truncated == 1 and len(out.texts) == 2
    scores, truncated = continuation_logprobs(model, tokenizer, [(long_example.prompt, " True")])
    assert truncated == 1 and math.isfinite(scores[0].logprob)


def test_cli_writes_typed_results_named_by_task_and_dataset(eval_model_dir: Path, tmp_path: Path, capsys) -> None:
    from pgt.eval.results import EvalRecord

    out = tmp_path / "results"
    heldout_de = tmp_path / "heldout_de.jsonl"
    heldout_de.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ["Der Mensch denkt, Gott lenkt.", "Ende gut, alles gut."]),
        encoding="utf-8",
    )
    # Several --task/--data pairs in one call, each example logged.
    assert (
        pgt_main(
            [
                "eval",
                str(eval_model_dir),
                "--out",
                str(out),
                "--log-samples",
                "--runs",
                "3",
                "--limit",
                "4",
                "--seed",
                "2",
                "--task",
                "arc_easy",
                "--data",
                str(DATA / "arc.jsonl"),
                "--task",
                "bpb",
                "--data",
                str(DATA / "heldout.jsonl"),
                "--task",
                "bpb",
                "--data",
                str(heldout_de),
            ]
        )
        == 0
    )
    result = EvalRecord.load(out / "arc_easy--arc.json")
    config = json.loads((eval_model_dir / "config.json").read_text(encoding="utf-8"))
    weights = hashlib.sha256()
    weights.update(b"model.safetensors")
    weights.update((eval_model_dir / "model.safetensors").read_bytes())
    assert result.model_fingerprint.substrate_fingerprint == config["substrate_fingerprint"]
    assert result.model_fingerprint.weights_sha256 == weights.hexdigest()
    assert (result.task, result.dataset, result.kind, result.metric, result.unit) == (
        "arc_easy",
        "arc",
        "reference",
        "accuracy",
        "percent",
    )
    assert (result.n_examples, result.runs, result.runs_identical) == (4, 3, False)
    assert not result.comparable_to_published  # 4 examples and 3 runs are not the published protocol
    assert result.protocol["prompt_template"].startswith("Question: {q}\nOptions:\n")
    assert (result.protocol["limit"], result.protocol["seed"], result.protocol["decoding_choice"]) == (4, 2, "sample")
    assert len(result.metrics.per_run) == 3 and all(0 <= v <= 100 for v in result.metrics.per_run)
    assert result.metrics.ci95 == pytest.approx(1.96 * result.metrics.std / math.sqrt(3))
    assert result.chance == pytest.approx(25.0) and result.pgt_version and result.created
    samples = [
        json.loads(line) for line in (out / "arc_easy--arc.samples.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert result.samples_file == "arc_easy--arc.samples.jsonl" and len(samples) == 4
    assert all(len(s["continuations"]) == len(s["answers"]) == len(s["correct"]) == 3 for s in samples)
    assert all(s["prompt"].endswith("Answer:") for s in samples)
    # Two held-out datasets: two files, neither overwrites the other.
    english, german = EvalRecord.load(out / "bpb--heldout.json"), EvalRecord.load(out / "bpb--heldout_de.json")
    assert (english.n_examples, german.n_examples) == (4, 2)
    # --log-samples of a bpb task: one line per document, adding up to the result.
    lines = [json.loads(line) for line in (out / german.samples_file).read_text(encoding="utf-8").splitlines()]
    assert [(d["index"], d["n_bytes"]) for d in lines] == [(0, 29), (1, 20)]
    assert sum(d["n_tokens"] for d in lines) == german.details["n_tokens"]
    assert sum(d["nats"] for d in lines) / math.log(2) / 49 == pytest.approx(
        german.value("bpb")
    )  # --limit 4 documents and english.value("bpb") != german.value("bpb")
    assert english.metrics.mean == english.value("bpb") > 0
    assert english.value("loss") == pytest.approx(math.log(english.value("perplexity")))
    # The same task and dataset again: refused without --overwrite, before any model is loaded.
    capsys.readouterr()
    again = pgt_main(["eval", str(eval_model_dir), "--out", str(out), "--task", "bpb", "--data", str(heldout_de)])
    assert again == 2 and "pass --overwrite" in capsys.readouterr().err
    # Without --data: the held-out (validation) documents of the embedded default corpus.
    assert pgt_main(["eval", str(eval_model_dir), "--task", "perplexity", "--limit", "3", "--overwrite"]) == 0
    default = EvalRecord.load(eval_model_dir / "eval" / "perplexity--default.json")
    assert (default.n_examples, default.data["source"], default.data["split"]) == (3, "default", "validation")
    assert default.metrics.mean == default.value("perplexity") > 1
    capsys.readouterr()

    malformed = pgt_main(["eval", str(eval_model_dir), "--task", "mmlu", "--data", str(DATA / "boolq.jsonl")])
    error = capsys.readouterr().err.strip().splitlines()
    assert malformed == 2 and error[-1].startswith("error:") and "expected fields: question (str), choices" in error[-1]
    assert not (eval_model_dir / "eval" / "mmlu--boolq.json").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--task", "arc_easy", "--temperature", "nan"], "must be a finite number"),
        (["--task", "arc_easy", "--runs", "0"], "must be a finite number"),
        (["--task", "arc_easy", "--device", "cuda"], "CUDA is not available"),
        (["--task", "arc_easy", "--data", "a.jsonl", "--data", "b.jsonl"], "2 --data for 1 --task"),
        (["--task", "mc", "--data", "a.jsonl"], "0 --name for 1 --task mc"),
        (["--task", "arc_easy", "--decoding", "greedy", "--temperature", "0.5"], "--temperature is for sampling"),
    ],
)
def test_bad_eval_arguments_are_one_line_errors(
    eval_model_dir: Path, capsys, arguments: list[str], message: str
) -> None:
    if "cuda" in arguments and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    try:
        code = pgt_main(["eval", str(eval_model_dir), *arguments])
    except SystemExit as exit_:  # argparse refuses bad numbers at parse time
        code = exit_.code
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in error[-1]


def test_an_out_that_is_a_file_is_a_one_line_error(eval_model_dir: Path, tmp_path: Path, capsys) -> None:
    file = tmp_path / "results.txt"
    file.write_text("mine", encoding="utf-8")
    code = pgt_main(
        ["eval", str(eval_model_dir), "--task", "bpb", "--data", str(DATA / "heldout.jsonl"), "--out", str(file)]
    )
    assert code == 2 and "is a file" in capsys.readouterr().err and file.read_text(encoding="utf-8") == "mine"


def test_a_users_multiple_choice_file_is_its_own_task_with_chance_level(eval_model_dir: Path, tmp_path: Path) -> None:
    from pgt.eval.results import EvalRecord

    cloze = tmp_path / "cloze_en.jsonl"
    lines = (DATA / "harness" / "fortune_cloze.jsonl").read_text(encoding="utf-8").splitlines()
    with open(cloze, "w", encoding="utf-8") as handle:
        for line in lines:
            row = json.loads(line)
            handle.write(json.dumps({"context": row["text"], "choices": row["choices"], "answer": row["gold"]}) + "\n")
    assert (
        pgt_main(
            [
                "eval",
                str(eval_model_dir),
                "--task",
                "mc",
                "--name",
                "cloze",
                "--data",
                str(cloze),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    record = EvalRecord.load(tmp_path / "out" / "mc-cloze--cloze_en.json")
    assert (record.task, record.kind, record.n_examples, record.chance) == ("mc-cloze", "mc", 10, pytest.approx(25.0))
    assert not record.comparable_to_published and set(record.other_metrics) == {"acc_norm"}
    assert round(record.metrics.mean) % 10 == 0


@pytest.fixture(scope="module")
def llama_dir(byte_level_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Llama with a byte-level tokenizer: any HF causal LM, not a pgt one."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(byte_level_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=96,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    # The reference's sampling settings as the saved default: evaluation must still decode greedily.
    model.generation_config.update(do_sample=True, temperature=0.8, top_k=50, top_p=0.95)
    out = tmp_path_factory.mktemp("llama") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_any_hf_causal_lm_decodes_greedily_and_writes_results(llama_dir: Path) -> None:
    from pgt.eval.runner import evaluate_to_file, load_for_eval

    model, tokenizer = load_for_eval(llama_dir)
    assert tokenizer.pad_token_id is None  # padding falls back to the end-of-sequence token
    prompts = [e.prompt for e in load_task_data(get_task("squad_v2"), DATA / "squad_v2.jsonl").examples[:3]]
    out = generate_continuations(model, tokenizer, prompts, [4, 4, 4], batch_size=3)
    for prompt, text in zip(prompts, out.texts, strict=True):
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"][:, -(96 - 4) :]
        for _ in range(4):  # step-by-step argmax without a cache
            with torch.no_grad():
                next_id = model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
        assert text == tokenizer.decode(ids[0, -4:], skip_special_tokens=True)
    path, record = evaluate_to_file(
        model, tokenizer, llama_dir, "mmlu", data=str(DATA / "mmlu.jsonl"), mode="loglik", runs=1
    )
    assert path == llama_dir / "eval" / "mmlu-loglik--mmlu.json"
    assert record.model_fingerprint.substrate_fingerprint is None
    assert record.model_fingerprint.model_type == "llama"
    assert set(record.other_metrics) == {"accuracy_text", "acc_norm"}
    assert all(0 <= m.mean <= 100 for m in [record.metrics, *record.other_metrics.values()])


def test_cli_evaluates_several_model_dirs(eval_model_dir: Path, llama_dir: Path) -> None:
    assert (
        pgt_main(
            [
                "eval",
                str(eval_model_dir),
                str(llama_dir),
                "--task",
                "squad_v2",
                "--data",
                str(DATA / "squad_v2.jsonl"),
                "--runs",
                "1",
            ]
        )
        == 0
    )
    for model_dir in (eval_model_dir, llama_dir):
        result = json.loads((model_dir / "eval" / "squad_v2--squad_v2.json").read_text(encoding="utf-8"))
        assert result["model_dir"] == str(model_dir.resolve()) and result["n_examples"] == 8


def test_token_data_directories_are_refused_for_bits_per_byte(
    model_and_tokenizer, eval_model_dir: Path, token_data_dir: Path
) -> None:
    from pgt.errors import PgtError
    from pgt.eval.runner import evaluate_to_file

    model, tokenizer = model_and_tokenizer
    with pytest.raises(PgtError, match="holds token ids, not text"):
        evaluate_to_file(model, tokenizer, eval_model_dir, "bpb", data=str(token_data_dir))


def test_a_prompts_truncation_does_not_depend_on_its_batch(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    rows = [json.loads(line) for line in (DATA / "squad_v2.jsonl").read_text(encoding="utf-8").splitlines()]
    passage = " ".join(row["context"] for row in rows)
    long_prompt = get_task("squad_v2").build({**rows[0], "context": passage}).prompt
    assert len(tokenizer(long_prompt)["input_ids"]) > 128
    alone = generate_continuations(model, tokenizer, [long_prompt], [2])
    # Beside a prompt that wants 40 new tokens, the long prompt keeps its own budget (128 - 2 ids).
    batched = generate_continuations(model, tokenizer, [long_prompt, rows[1]["question"]], [2, 40], batch_size=2)
    assert batched.truncated[0] and alone.truncated[0]
    assert batched.new_ids[0] == alone.new_ids[0] and len(batched.new_ids[1]) == 40


def test_local_evaluation_opens_no_network_connection(
    eval_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network connection was opened")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert (
        pgt_main(
            [
                "eval",
                str(eval_model_dir),
                "--task",
                "squad_v2",
                "--data",
                str(DATA / "squad_v2.jsonl"),
                "--runs",
                "1",
                "--decoding",
                "greedy",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "squad_v2--squad_v2.json").is_file()


def test_eval_records_round_trip_and_reject_ill_typed_files(eval_model_dir: Path, tmp_path: Path) -> None:
    from pgt.errors import PgtError
    from pgt.eval.results import EvalRecord

    assert (
        pgt_main(
            [
                "eval",
                str(eval_model_dir),
                "--task",
                "bpb",
                "--data",
                str(DATA / "heldout.jsonl"),
                "--limit",
                "2",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    path = tmp_path / "bpb--heldout.json"
    record = EvalRecord.load(path)
    assert EvalRecord.from_json(record.to_json()) == record
    data = json.loads(path.read_text(encoding="utf-8"))
    for broken in ({k: v for k, v in data.items() if k != "metrics"}, {**data, "runs": "1"}):
        path.write_text(json.dumps(broken), encoding="utf-8")
        with pytest.raises(PgtError, match="evaluation result .*field 'metrics'|field 'runs'") as error:
            EvalRecord.load(path)
        assert "\n" not in str(error.value)


def _nanogpt_generate(model, ids: list[int], n: int, context: int, generator=None) -> list[int]:
    """The reference's sampler as nanoGPT writes it: crop to the last `context` ids before every new token."""
    sequence = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([sequence[-context:]])).logits[0, -1].float()
            pick = (
                logits.argmax()
                if generator is None
                else torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
            )
            sequence.append(int(pick))
    return sequence[len(ids) :]


def test_long_prompts_are_cropped_before_every_new_token_as_the_reference_does(model_and_tokenizer) -> None:
    """One crop of the prompt differed from the reference's sampler once the prompt and its new
    tokens exceed the context; each new token now sees the last `context` tokens, batched or not."""
    model, tokenizer = model_and_tokenizer
    rows = [json.loads(line) for line in (DATA / "squad_v2.jsonl").read_text(encoding="utf-8").splitlines()]
    long_prompt = get_task("squad_v2").build({**rows[0], "context": " ".join(r["context"] for r in rows)}).prompt
    ids = tokenizer(long_prompt)["input_ids"]
    edge = tokenizer.decode(ids[: 128 - 2], skip_special_tokens=True)  # fits, but not with its 6 new tokens
    prompts, counts = [long_prompt, edge, rows[1]["question"]], [6, 6, 6]
    greedy = generate_continuations(model, tokenizer, prompts, counts, batch_size=3)
    sampled = generate_continuations(
        model, tokenizer, prompts, counts, sampler=SAMPLERS["sample"], seeds=[7, 8, 9], batch_size=3
    )
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    assert greedy.truncated == sampled.truncated == [True, True, False]
    for i, prompt_ids in enumerate(encoded[:2]):  # the cropped ones; the third is batched with the KV cache
        assert greedy.new_ids[i] == _nanogpt_generate(model, prompt_ids, 6, 128)
        generator = torch.Generator().manual_seed(7 + i)
        assert sampled.new_ids[i] == _nanogpt_generate(model, prompt_ids, 6, 128, generator)
