"""Task definitions of the reference protocol (DESIGN.md §7): prompt formats, answers, sources.

Each task turns one dataset row (field names as in the Hugging Face dataset the
reference used) into an `Example`: the prompt, the gold answer, how many new
tokens greedy decoding produces and, for multiple-choice tasks, the options
that log-likelihood mode scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pgt.errors import PgtError

# How a generated continuation is scored.
#   first_char: first non-space character, upper-cased, equals the key (letters, T/F)
#   substring:  the upper-cased answer occurs in the upper-cased continuation
#   bleu:       sacrebleu corpus BLEU of the upper-cased continuations
Scoring = Literal["first_char", "substring", "bleu"]

# Display names for the OPUS-100 prompt ("Translate from English to Russian:");
# codes not listed are shown as the code itself.
LANGUAGE_NAMES = {
    "ar": "Arabic", "de": "German", "en": "English", "es": "Spanish", "fr": "French",
    "hi": "Hindi", "it": "Italian", "ja": "Japanese", "ko": "Korean", "nl": "Dutch",
    "pl": "Polish", "pt": "Portuguese", "ru": "Russian", "sv": "Swedish", "tr": "Turkish",
    "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Perplexity tasks score held-out text rather than prompts; both report perplexity and bits per byte.
PERPLEXITY_TASKS = ("perplexity", "bpb")


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
    template: str  # the prompt format, as documented in DESIGN.md §7
    scoring: Scoring
    expected_fields: str  # shown in the error for a malformed dataset
    hf_path: str
    hf_config: str | None
    split: str
    build: Callable[[Mapping[str, Any]], Example | None]  # None: row excluded by the protocol
    new_tokens_doc: str
    metric: str = "accuracy"
    loglik_options: Literal["letters+text", "boolean", "none"] = "letters+text"
    notes: tuple[str, ...] = field(default=())


def _text(row: Mapping[str, Any], name: str) -> str:
    value = row[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string")
    return value


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"{name} must be a list")
    return [str(item) for item in value]


def _options(labels: list[str], texts: list[str], key: str) -> tuple[tuple[str, str], ...]:
    """(label, text) pairs of a multiple-choice question, checked: as many labels as texts, the key among them."""
    if len(labels) != len(texts) or len(texts) < 2:
        raise ValueError(f"{len(texts)} option texts for {len(labels)} labels (need at least 2 of each)")
    if key not in labels:
        raise ValueError(f"the key {key!r} is not one of the option labels {labels}")
    return tuple(zip(labels, texts, strict=True))


def _mmlu(row: Mapping[str, Any]) -> Example:
    texts = _strings(row["choices"], "choices")
    answer = row["answer"]
    key = LETTERS[answer] if isinstance(answer, int) else str(answer).strip().upper()
    options = _options(list(LETTERS[: len(texts)]), texts, key)
    listed = " ".join(f"{label}) {text}" for label, text in options)
    prompt = f"Question: {_text(row, 'question')}\nOptions: {listed}\nAnswer:"
    subject = row.get("subject")
    return Example(prompt, key, 1, options, str(subject) if subject else None)


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
    answers = list(row["answers"]["text"])
    # The reference keeps answerable questions whose (first) answer is at most 8 characters.
    if not answers or not 0 < len(answers[0]) <= SQUAD_MAX_ANSWER_CHARS:
        return None
    prompt = f"Context: {_text(row, 'context')}\nQuestion: {_text(row, 'question')}\nAnswer:"
    return Example(prompt, answers[0], len(answers[0]))


def language_name(code: str) -> str:
    """The English name of an OPUS-100 language code (the code itself when unknown)."""
    return LANGUAGE_NAMES.get(code, code)


def _opus100(source: str, target: str) -> Callable[[Mapping[str, Any]], Example]:
    def build(row: Mapping[str, Any]) -> Example:
        pair = row["translation"]
        text, reference = str(pair[source]), str(pair[target])
        prompt = f"Translate from {language_name(source)} to {language_name(target)}:\n{text}\nAnswer:"
        return Example(prompt, reference, max(len(reference), 1))

    return build


ARC_FIELDS = "question (str), choices {label: [str], text: [str]}, answerKey (str)"
ARC_TEMPLATE = "Question: {q}\nOptions:\n{L}) {text}  (one line per choice)\nAnswer:"


def _arc_task(name: str, hf_path: str, hf_config: str | None) -> Task:
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
    )


TASKS: dict[str, Task] = {
    "mmlu": Task(
        name="mmlu",
        template="Question: {q}\nOptions: A) {a} B) {b} C) {c} D) {d}\nAnswer:",
        scoring="first_char",
        expected_fields="question (str), choices ([str]), answer (int index or letter)",
        hf_path="cais/mmlu",
        hf_config="all",
        split="test",
        build=_mmlu,
        new_tokens_doc="1",
    ),
    "arc_easy": _arc_task("arc_easy", "allenai/ai2_arc", "ARC-Easy"),
    "arc_challenge": _arc_task("arc_challenge", "allenai/ai2_arc", "ARC-Challenge"),
    "commonsense_qa": _arc_task("commonsense_qa", "tau/commonsense_qa", None),
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
        loglik_options="boolean",
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
        new_tokens_doc="len(answer) (characters of the first answer)",
        loglik_options="none",
        notes=(f"only answerable questions whose first answer has at most {SQUAD_MAX_ANSWER_CHARS} characters",),
    ),
}

OPUS_PREFIX = "opus100"


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
            new_tokens_doc="len(reference) (characters of the reference translation)",
            metric="bleu",
            loglik_options="none",
        )
    known = ", ".join([*TASKS, "opus100:SRC-TGT", *PERPLEXITY_TASKS])
    raise PgtError(f"unknown task {name!r} (known: {known})")
