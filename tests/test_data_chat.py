"""Chat and instruction data: three record formats, one chat template, id-exact in plain transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_data_prepare import leftovers

from pgt.cli import main
from pgt.corpus.chat import CHAT_TEMPLATE, CHAT_TOKENS, render
from pgt.data.loader import TokenData
from pgt.data.prepare import prepare_token_data
from pgt.errors import PgtError

# Written for these tests: multi-turn, a system message, Russian, Chinese and Greek text, markup-like text.
MESSAGES = [
    {
        "messages": [
            {"role": "system", "content": "You answer in one sentence."},
            {"role": "user", "content": "What is a glyph?"},
            {"role": "assistant", "content": "A glyph is the picture of a character."},
            {"role": "user", "content": "And a token?"},
            {"role": "assistant", "content": "A token is a piece of text with an id."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Переведи: «доброе утро»."},
            {"role": "assistant", "content": "Good morning.\n\n  (two spaces kept)"},
        ]
    },
]
ALPACA = [
    {"instruction": "Translate to Chinese.", "input": "thank you", "output": "谢谢"},
    {"instruction": "Name a Greek letter.", "input": "", "output": "λ (lambda)", "system": "Be terse."},
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "human", "value": "Say <think> literally."},
            {"from": "gpt", "value": "<think>"},
            {"from": "human", "value": "Спасибо!"},
            {"from": "gpt", "value": "Пожалуйста."},
        ],
        "system": "A patient tutor.",
    },
]


def conversations() -> list[list[dict[str, str]]]:
    """The fixtures' conversations as role/content messages, by hand (what each format means)."""
    return [
        MESSAGES[0]["messages"],
        MESSAGES[1]["messages"],
        [{"role": "user", "content": "Translate to Chinese.\n\nthank you"}, {"role": "assistant", "content": "谢谢"}],
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Name a Greek letter."},
            {"role": "assistant", "content": "λ (lambda)"},
        ],
        [
            {"role": "system", "content": "A patient tutor."},
            {"role": "user", "content": "Say <think> literally."},
            {"role": "assistant", "content": "<think>"},
            {"role": "user", "content": "Спасибо!"},
            {"role": "assistant", "content": "Пожалуйста."},
        ],
    ]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chat_data(substrate_dir, tmp_path_factory) -> Path:
    """The three formats prepared with the bvv241 test substrate, all in train (no validation split)."""
    root = tmp_path_factory.mktemp("chat")
    sources = [
        write_jsonl(root / "a-messages.jsonl", MESSAGES),
        write_jsonl(root / "b-alpaca.jsonl", ALPACA),
        write_jsonl(root / "c-sharegpt.jsonl", SHAREGPT),
    ]
    out = root / "data"
    assert (
        main(
            [
                "data",
                "prepare",
                *map(str, sources),
                "--substrate",
                str(substrate_dir),
                "--out",
                str(out),
                "--val-fraction",
                "0",
                "--no-progress",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    return out


def documents(data_dir: Path) -> list[list[int]]:
    """The training split's documents as token ids (the eos after each removed)."""
    data = TokenData(data_dir)
    ids = data.splits["train"].read(0, data.train_tokens)
    ends = np.flatnonzero(ids == data.eos_id)
    return [ids[begin:end].tolist() for begin, end in zip([0, *(ends[:-1] + 1)], ends, strict=True)]


def test_the_three_formats_render_as_the_template_says(chat_data, substrate_dir):
    from pgt.substrate.store import Substrate

    tokenizer = Substrate.load(substrate_dir).tokenizer
    docs = documents(chat_data)
    assert len(docs) == 5
    for ids, messages in zip(docs, conversations(), strict=True):
        text = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
        assert text == render(messages)
        for message in messages:  # lossless: every message's text survives decoding
            assert message["content"] in text
    # The layout, spelled out once: the first alpaca record.
    assert render(conversations()[2]) == "[USER]Translate to Chinese.\n\nthank you[EOT][ASSISTANT]谢谢[EOT]"
    # The template's markers are single special ids; "<think>" in a message is the substrate's own special token.
    for token in CHAT_TOKENS:
        assert tokenizer.convert_tokens_to_ids(token) in docs[0] + docs[4]
    manifest = TokenData(chat_data).manifest
    assert [s.conversations for s in manifest.sources] == [2, 2, 1]
    assert {s.record_format for s in manifest.sources} == {"auto"}


ROUND_TRIP = """
import json, sys
sys.modules["pgt"] = None  # plain transformers: importing pgt would fail
from transformers import AutoTokenizer
directory, conversations = sys.argv[1], json.loads(sys.stdin.read())
tokenizer = AutoTokenizer.from_pretrained(directory)
print(json.dumps({
    "ids": [list(tokenizer.apply_chat_template(c, tokenize=True, return_dict=False)) for c in conversations],
    "template": tokenizer.chat_template,
}))
"""


@pytest.mark.parametrize("directory", ["substrate", "model"])
def test_apply_chat_template_in_plain_transformers_gives_the_ids_training_saw(
    chat_data, substrate_dir, eval_model_dir, directory
):
    """A substrate and a model directory pgt wrote: their tokenizer's chat_template is ours, id for id."""
    where = substrate_dir if directory == "substrate" else eval_model_dir
    config = json.loads((where / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["chat_template"] == CHAT_TEMPLATE
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, str(where)],
        input=json.dumps(conversations()),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    answer = json.loads(result.stdout)
    assert answer["template"] == CHAT_TEMPLATE
    assert answer["ids"] == documents(chat_data)


def write_bad(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(MESSAGES[0], ensure_ascii=False) + "\n" + line + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"messages": [{"role": "robot", "content": "beep"}]}, r"bad\.jsonl:2: turn 1: unknown role 'robot'"),
        ({"messages": [{"role": "user"}]}, r"bad\.jsonl:2: turn 1: 'content' is missing"),
        ({"messages": [{"role": "user", "content": ["a", "b"]}]}, r"bad\.jsonl:2: turn 1: 'content' is not a string"),
        (
            {"messages": []},
            r"bad\.jsonl:2: field 'messages' must be a non-empty list of turns \(an empty conversation\)",
        ),
        ({"conversations": [{"from": "bot", "value": "x"}]}, r"bad\.jsonl:2: turn 1: unknown from 'bot'"),
        ({"instruction": "Do it."}, r"bad\.jsonl:2: field 'output' is missing"),
        ({"question": "?"}, r"bad\.jsonl:2: expected an object with a string field 'text' .* or a chat record"),
    ],
)
def test_bad_chat_records_get_a_file_line_error_and_leave_nothing(tmp_path, substrate_dir, record, message):
    source = write_bad(tmp_path, json.dumps(record))
    with pytest.raises(PgtError, match=message) as caught:
        prepare_token_data([str(source)], substrate_dir, tmp_path / "out", progress=False)
    assert "\n" not in str(caught.value)
    assert leftovers(tmp_path) == ["bad.jsonl"]


def test_a_named_record_format_is_enforced(tmp_path, substrate_dir):
    source = write_jsonl(tmp_path / "chat.jsonl", MESSAGES)
    with pytest.raises(PgtError, match=r"chat\.jsonl:1: field 'instruction' is missing"):
        prepare_token_data([str(source)], substrate_dir, tmp_path / "out", record_format="alpaca", progress=False)


def test_strict_refuses_invalid_utf8_in_chat_records_as_in_text(tmp_path, substrate_dir):
    good = json.dumps({"messages": [{"role": "user", "content": "caf"}]}).encode()
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(good.replace(b"caf", b"caf\xe9") + b"\n" + good + b"\n")
    with pytest.raises(PgtError, match=r"bytes\.jsonl:1: invalid UTF-8 \(--strict"):
        prepare_token_data([str(path)], substrate_dir, tmp_path / "strict", strict=True, progress=False)
    manifest = prepare_token_data([str(path)], substrate_dir, tmp_path / "lenient", val_fraction=0, progress=False)
    assert manifest.sources[0].replaced_bytes == 1 and manifest.sources[0].conversations == 2


def test_chat_records_on_a_tokenizer_without_the_chat_tokens_are_refused(tmp_path, byte_level_tokenizer_dir):
    source = write_jsonl(tmp_path / "chat.jsonl", MESSAGES)
    with pytest.raises(PgtError, match=r"chat\.jsonl:1: a chat record, but the tokenizer lacks the chat tokens"):
        prepare_token_data([str(source)], byte_level_tokenizer_dir, tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == ["chat.jsonl"]
