"""Task definitions of the reference protocol (docs/evaluation.md): prompt formats, answers, sources.

Each task turns one dataset row (field names as in the Hugging Face dataset the
reference used) into an `Example`: the prompt, the gold answer, how many new
tokens the reference generates and, for multiple-choice tasks, the options that
log-likelihood mode scores. `mc` is a user's own multiple-choice / cloze file,
scored by log-likelihood only and never labelled as a benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pgt.errors import PgtError

# How a generated continuation is scored (docs/evaluation.md, "Answers and scores").
#   first_char: `.strip().upper()[:1]` of the continuation equals the key (letters, T/F)
#   substring:  the upper-cased answer occurs in the stripped, upper-cased continuation
#   bleu:       mean over sentences of sacrebleu BLEU of the upper-cased continuation cut at `</S>`
#   loglik:     only log-likelihood scoring (a user's `mc` file)
Scoring = Literal["first_char", "substring", "bleu", "loglik"]

# Display names for the OPUS-100 prompt ("Translate from English to Russian:");
# codes not listed are shown as the code itself.
LANGUAGE_NAMES = {
    "ar": "Arabic",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ru": "Russian",
    "sv": "Swedish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}

# The 57 subject configs of `lukaemon/mmlu` (cais/mmlu's `subject` values are the same names).
MMLU_SUBJECTS = (
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_NEW_TOKENS = 100  # the reference's cap: min(len(answer or reference), 100)

# Perplexity tasks score held-out text rather than prompts; both report perplexity and bits per byte.
PERPLEXITY_TASKS = ("perplexity", "bpb")
MC_TASK = "mc"  # a user's own multiple-choice / cloze file: `--task mc --name NAME --data FILE`


@dataclass(frozen=True)
class Example:
    """One prompt of a task, ready for generation or log-likelihood scoring."""

    prompt: str
    target: str  # the key letter, "T"/"F", the answer text or the reference translation
    new_tokens: int
    options: tuple[tuple[str, str], ...] = ()  # (label, text) of a multiple-choice question
    group: str | None = None  # e.g. the MMLU subject, for per-group accuracy


@dataclass(frozen=True)
class Task:
    """A task of the reference protocol: where its data lives and how rows become examples."""

    name: str
    template: str  # the prompt format, as documented in docs/evaluation.md
    scoring: Scoring
    expected_fields: str  # shown in the error for a malformed dataset
    hf_path: str | None
    hf_config: str | None
    split: str
    build: Callable[[Mapping[str, Any]], Example | None]  # None: row excluded by the protocol
    new_tokens_doc: str
    metric: str = "accuracy"
    loglik_options: Literal["letters+text", "text", "none"] = "letters+text"
    # The reference's examples per run: `reference_size` scored in its published figures,
    # of which `reference_draw` are drawn at random once when the split is larger (SQuAD, OPUS).
    reference_size: int | None = None
    reference_draw: int | None = None
    notes: tuple[str, ...] = field(default=())


def _text(row: Mapping[str, Any], name: str) -> str:
    value = row[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{name} must be a list of strings")
    return list(value)


def _index(value: Any, name: str, n: int) -> int:
    """An option index: an int (never a bool, which Python counts as one) within range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an option index (int), got {value!r}")
    if not 0 <= value < n:
        raise ValueError(f"{name} {value} is not an index of the {n} options")
    return value


def _options(labels: list[str], texts: list[str], key: str) -> tuple[tuple[str, str], ...]:
    """(label, text) pairs of a multiple-choice question, checked: as many labels as texts, the key among them."""
    if len(labels) != len(texts) or len(texts) < 2:
        raise ValueError(f"{len(texts)} option texts for {len(labels)} labels (need at least 2 of each)")
    if key not in labels:
        raise ValueError(f"the key {key!r} is not one of the option labels {labels}")
    return tuple(zip(labels, texts, strict=True))


def _mmlu(row: Mapping[str, Any]) -> Example:
    """cais/mmlu rows (question, choices, answer index) or lukaemon/mmlu rows (input, A..D, target letter)."""
    if "input" in row:
        question, texts = _text(row, "input"), [_text(row, letter) for letter in "ABCD"]
        key = _text(row, "target").strip().upper()
    else:
        question, texts = _text(row, "question"), _strings(row["choices"], "choices")
        answer = row["answer"]
        key = LETTERS[_index(answer, "answer", len(texts))] if not isinstance(answer, str) else answer.strip().upper()
    options = _options(list(LETTERS[: len(texts)]), texts, key)
    listed = " ".join(f"{label}) {text}" for label, text in options)
    prompt = f"Question: {question}\nOptions: {listed}\nAnswer:"
    subject = row.get("subject")
    return Example(prompt, key, 1, options, subject if isinstance(subject, str) and subject else None)


def _arc_like(row: Mapping[str, Any]) -> Example:
    choices = row["choices"]
    key = _text(row, "answerKey").strip().upper()
    options = _options(_strings(choices["label"], "choices.label"), _strings(choices["text"], "choices.text"), key)
    lines = "".join(f"\n{label}) {text}" for label, text in options)
    prompt = f"Question: {_text(row, 'question')}\nOptions:{lines}\nAnswer:"
    return Example(prompt, key, 2, options)


def _boolq(row: Mapping[str, Any]) -> Example:
    answer = row["answer"]
    if not isinstance(answer, bool):
        raise TypeError("answer must be a boolean")
    prompt = f"Context: {_text(row, 'passage')}\nQuestion: {_text(row, 'question')}\nAnswer (True/False):"
    return Example(prompt, "T" if answer else "F", 1, (("T", "True"), ("F", "False")))


SQUAD_MAX_ANSWER_CHARS = 8


def _squad_v2(row: Mapping[str, Any]) -> Example | None:
    answers = _strings(row["answers"]["text"], "answers.text")
    # The reference keeps answerable questions whose (first) answer is at most 8 characters.
    if not answers or not 0 < len(answers[0]) <= SQUAD_MAX_ANSWER_CHARS:
        return None
    prompt = f"Context: {_text(row, 'context')}\nQuestion: {_text(row, 'question')}\nAnswer:"
    return Example(prompt, answers[0], min(len(answers[0]), MAX_NEW_TOKENS))


def language_name(code: str) -> str:
    """The English name of an OPUS-100 language code (the code itself when unknown)."""
    return LANGUAGE_NAMES.get(code, code)


def _opus100(source: str, target: str) -> Callable[[Mapping[str, Any]], Example]:
    def build(row: Mapping[str, Any]) -> Example:
        pair = row["translation"]
        if not isinstance(pair, Mapping):
            raise TypeError("translation must be an object")
        text, reference = _text(pair, source), _text(pair, target)
        prompt = f"Translate from {language_name(source)} to {language_name(target)}:\n{text}\nAnswer:"
        return Example(prompt, reference, min(max(len(reference), 1), MAX_NEW_TOKENS))

    return build


def _mc(row: Mapping[str, Any]) -> Example:
    prompt = _text(row, "prompt" if "prompt" in row else "context")
    texts = _strings(row["choices"], "choices")
    if len(texts) < 2:
        raise ValueError(f"{len(texts)} choices (need at least 2)")
    labels = list(LETTERS[: len(texts)])
    key = labels[_index(row["answer"], "answer", len(texts))]
    return Example(prompt, key, 1, tuple(zip(labels, texts, strict=True)))


ARC_FIELDS = "question (str), choices {label: [str], text: [str]}, answerKey (str)"
ARC_TEMPLATE = "Question: {q}\nOptions:\n{L}) {text}  (one line per choice)\nAnswer:"


def _arc_task(name: str, hf_path: str, hf_config: str | None, size: int) -> Task:
    return Task(
        name=name,
        template=ARC_TEMPLATE,
        scoring="first_char",
        expected_fields=ARC_FIELDS,
        hf_path=hf_path,
        hf_config=hf_config,
        split="validation",
        build=_arc_like,
        new_tokens_doc="2",
        reference_size=size,
    )


TASKS: dict[str, Task] = {
    "mmlu": Task(
        name="mmlu",
        template="Question: {q}\nOptions: A) {a} B) {b} C) {c} D) {d}\nAnswer:",
        scoring="first_char",
        expected_fields="question (str), choices ([str]), answer (int index or letter) as in cais/mmlu; "
        "or input, A, B, C, D (str), target (letter) as in lukaemon/mmlu",
        hf_path="cais/mmlu",
        hf_config="all",
        split="test",
        build=_mmlu,
        new_tokens_doc="1",
        reference_size=14042,
    ),
    "arc_easy": _arc_task("arc_easy", "allenai/ai2_arc", "ARC-Easy", 570),
    "arc_challenge": _arc_task("arc_challenge", "allenai/ai2_arc", "ARC-Challenge", 299),
    "commonsense_qa": _arc_task("commonsense_qa", "tau/commonsense_qa", None, 1221),
    "boolq": Task(
        name="boolq",
        template="Context: {passage}\nQuestion: {q}\nAnswer (True/False):",
        scoring="first_char",
        expected_fields="question (str), passage (str), answer (bool)",
        hf_path="google/boolq",
        hf_config=None,
        split="validation",
        build=_boolq,
        new_tokens_doc="1",
        loglik_options="text",
        reference_size=3270,
        notes=("the reference has this scorer but publishes no BoolQ figure",),
    ),
    "squad_v2": Task(
        name="squad_v2",
        template="Context: {context}\nQuestion: {q}\nAnswer:",
        scoring="substring",
        expected_fields="context (str), question (str), answers {text: [str]}",
        hf_path="rajpurkar/squad_v2",
        hf_config=None,
        split="validation",
        build=_squad_v2,
        new_tokens_doc=f"min(len(answer), {MAX_NEW_TOKENS}) (characters of the first answer)",
        loglik_options="none",
        reference_size=256,
        reference_draw=256,
        notes=(f"only answerable questions whose first answer has at most {SQUAD_MAX_ANSWER_CHARS} characters",),
    ),
}

OPUS_PREFIX = "opus100"
OPUS_SIZE = 128  # the reference's sentences per direction, drawn once


def mc_task(name: str) -> Task:
    """A user's own multiple-choice file called `name` (never one of the reference's benchmarks)."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise PgtError(f"--name {name!r}: use letters, digits, - and _ (it names the results file)")
    return Task(
        name=f"{MC_TASK}-{name}",
        template="{prompt} (or {context}), each choice scored as the continuation ' {choice}'",
        scoring="loglik",
        expected_fields="prompt or context (str), choices ([str], at least 2), answer (int index)",
        hf_path=None,
        hf_config=None,
        split="validation",
        build=_mc,
        new_tokens_doc="–",
        loglik_options="text",
    )


def get_task(name: str) -> Task:
    """The task called `name`; `opus100:SRC-TGT` (e.g. `opus100:en-ru`) translates SRC into TGT."""
    if name in TASKS:
        return TASKS[name]
    if name.startswith(OPUS_PREFIX + ":"):
        source, _, target = name.partition(":")[2].partition("-")
        if not source or not target or source == target:
            raise PgtError(f"bad translation task {name!r}: use opus100:SRC-TGT, e.g. opus100:en-ru")
        return Task(
            name=name,
            template="Translate from {Src} to {Tgt}:\n{text}\nAnswer:",
            scoring="bleu",
            expected_fields=f"translation {{{source}: str, {target}: str}}",
            hf_path="Helsinki-NLP/opus-100",
            hf_config="-".join(sorted((source, target))),  # the hub's configs name pairs alphabetically
            split="validation",
            build=_opus100(source, target),
            new_tokens_doc=f"min(len(reference), {MAX_NEW_TOKENS}) (characters of the reference translation)",
            metric="bleu",
            loglik_options="none",
            reference_size=OPUS_SIZE,
            reference_draw=OPUS_SIZE,
        )
    if name == MC_TASK:
        raise PgtError("--task mc needs --name NAME (your task's name) and --data FILE.jsonl")
    known = ", ".join([*TASKS, "opus100:SRC-TGT", MC_TASK, *PERPLEXITY_TASKS])
    raise PgtError(f"unknown task {name!r} (known: {known})")
