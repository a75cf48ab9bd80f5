"""Chat and instruction records -> one document of text, through the one chat template (docs/data.md, "Chat").

`pgt data prepare` reads three common record formats (in JSONL files, parquet files and
datasets), detected from a record's fields or named with `--record-format`:

  messages   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
  alpaca     {"instruction": "...", "input": "...", "output": "...", "system": "..."}   (input, system optional)
  sharegpt   {"conversations": [{"from": "system"|"human"|"gpt", "value": "..."}, ...], "system": "..."}

Each conversation is rendered with CHAT_TEMPLATE, a Jinja template written in the bvv241
substrate's own special tokens (our choice: the reference does not publish its layout):

  system     [INST]content[/INST]
  user       [USER]content[EOT]
  assistant  [ASSISTANT]content[EOT]

with nothing between turns, no bos (token data puts eos after each document) and, with
`add_generation_prompt`, a trailing `[ASSISTANT]`. The same string is saved as the tokenizer's
`chat_template` in every substrate and model directory pgt writes (`with_chat_template`), so
`tokenizer.apply_chat_template(messages)` in plain transformers gives exactly the ids
training saw. Message text is kept exactly: decoding the ids gives it back.
"""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pgt.errors import PgtError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The special tokens the template writes; a tokenizer without all of them as special tokens gets no template.
CHAT_TOKENS = ("[INST]", "[/INST]", "[USER]", "[ASSISTANT]", "[EOT]")
ROLES = ("system", "user", "assistant")
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is not string -%}"
    "{{- raise_exception('message content must be a string') -}}"
    "{%- elif message['role'] == 'system' -%}[INST]{{- message['content'] -}}[/INST]"
    "{%- elif message['role'] == 'user' -%}[USER]{{- message['content'] -}}[EOT]"
    "{%- elif message['role'] == 'assistant' -%}[ASSISTANT]{{- message['content'] -}}[EOT]"
    "{%- else -%}{{- raise_exception('unknown role ' + message['role']) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}[ASSISTANT]{%- endif -%}"
)

RecordFormat = Literal["auto", "text", "messages", "alpaca", "sharegpt"]
RECORD_FORMATS: tuple[str, ...] = typing.get_args(RecordFormat)
CHAT_FORMATS = ("messages", "alpaca", "sharegpt")
# ShareGPT's speaker names -> roles (the spellings datasets use).
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
ALPACA_SEPARATOR = "\n\n"  # between an instruction and its input, in the user turn


class RecordError(ValueError):
    """What is wrong with one record; the reader adds `file:line`."""


def detect_format(record: Mapping[str, Any], text_field: str) -> str:
    """The record's format from its fields: the text field first, then messages, conversations, instruction."""
    if text_field in record:
        return "text"
    for name, key in (("messages", "messages"), ("sharegpt", "conversations"), ("alpaca", "instruction")):
        if key in record:
            return name
    raise RecordError(
        f"expected an object with a string field {text_field!r} (see --text-field) or a chat record with "
        "messages, conversations or instruction/output (see --record-format)"
    )


def conversation(record: Mapping[str, Any], record_format: str) -> list[dict[str, str]]:
    """The record (of a chat format) as a list of `{"role", "content"}` messages; RecordError if malformed."""
    if record_format == "messages":
        turns = _turns(record, "messages", "role", "content", {role: role for role in ROLES})
    elif record_format == "sharegpt":
        turns = _turns(record, "conversations", "from", "value", SHAREGPT_ROLES)
    elif record_format == "alpaca":
        instruction, output = _string(record, "instruction"), _string(record, "output")
        extra = record.get("input") or ""
        if not isinstance(extra, str):
            raise RecordError("field 'input' must be a string")
        turns = [
            {"role": "user", "content": instruction + (ALPACA_SEPARATOR + extra if extra else "")},
            {"role": "assistant", "content": output},
        ]
    else:
        raise RecordError(f"unknown record format {record_format!r} (choose from {', '.join(CHAT_FORMATS)})")
    if record_format != "messages" and isinstance(record.get("system"), str) and record["system"]:
        turns.insert(0, {"role": "system", "content": record["system"]})
    return turns


def _string(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise RecordError(f"field {key!r} is {'missing' if value is None else 'not a string'}")
    return value


def _turns(
    record: Mapping[str, Any], key: str, role_key: str, content_key: str, roles: Mapping[str, str]
) -> list[dict[str, str]]:
    turns = record.get(key)
    if not isinstance(turns, list) or not turns:
        raise RecordError(f"field {key!r} must be a non-empty list of turns (an empty conversation)")
    messages = []
    for number, turn in enumerate(turns, 1):
        if not isinstance(turn, Mapping):
            raise RecordError(f"turn {number} of {key!r} is not an object")
        role = turn.get(role_key)
        if role not in roles:
            raise RecordError(f"turn {number}: unknown {role_key} {role!r} (known: {', '.join(roles)})")
        content = turn.get(content_key)
        if not isinstance(content, str):
            raise RecordError(f"turn {number}: {content_key!r} is {'missing' if content is None else 'not a string'}")
        messages.append({"role": roles[role], "content": content})
    return messages


@functools.cache
def _template() -> Any:
    """CHAT_TEMPLATE compiled as transformers compiles chat templates (sandboxed, trim_blocks, lstrip_blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise RecordError(message)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(CHAT_TEMPLATE)


def render(messages: list[dict[str, str]], *, add_generation_prompt: bool = False) -> str:
    """The text CHAT_TEMPLATE makes of `messages` (what `apply_chat_template(..., tokenize=False)` returns)."""
    return _template().render(messages=messages, add_generation_prompt=add_generation_prompt)


def record_text(record: Any, record_format: str, text_field: str) -> tuple[str, bool]:
    """(the document's text, whether it is a conversation) of one record; RecordError if malformed."""
    if not isinstance(record, Mapping):
        raise RecordError("expected a JSON object")
    chosen = detect_format(record, text_field) if record_format == "auto" else record_format
    if chosen == "text":
        value = record.get(text_field)
        if not isinstance(value, str):
            raise RecordError(f"expected an object with a string field {text_field!r} (see --text-field)")
        return value, False
    return render(conversation(record, chosen)), True


def has_chat_tokens(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether every token CHAT_TEMPLATE writes is one special token of `tokenizer`."""
    special = set(tokenizer.all_special_tokens) | {
        token.content for token in tokenizer.added_tokens_decoder.values() if token.special
    }
    return set(CHAT_TOKENS) <= special


def with_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """`tokenizer` with CHAT_TEMPLATE as its chat_template when it has the template's tokens (in place)."""
    if has_chat_tokens(tokenizer):
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | os.PathLike) -> None:
    """Save `tokenizer` with CHAT_TEMPLATE (where it has the tokens) as `chat_template` in tokenizer_config.json.

    In the config rather than transformers 5's separate `chat_template.jinja`, so older
    transformers versions find it too. Every substrate and model directory is written through here.
    """
    with_chat_template(tokenizer).save_pretrained(str(directory), save_jinja_files=False)


def missing_chat_tokens_error(where: str) -> PgtError:
    """The one error for chat records on a tokenizer without the template's tokens."""
    return PgtError(
        f"{where}: a chat record, but the tokenizer lacks the chat tokens {' '.join(CHAT_TOKENS)}; "
        'prepare chat data with a bvv241 substrate (docs/data.md, "Chat")'
    )


__all__ = [
    "CHAT_FORMATS",
    "CHAT_TEMPLATE",
    "CHAT_TOKENS",
    "RECORD_FORMATS",
    "RecordError",
    "conversation",
    "has_chat_tokens",
    "record_text",
    "render",
    "save_tokenizer",
    "with_chat_template",
]
