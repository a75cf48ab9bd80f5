"""bvv241 tokenizers: the id layout, the reference's encodings, lossless round trips, n-gram sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgt.errors import PgtError
from pgt.substrate.layout import (
    FAMILIES,
    SPECIAL_TOKENS,
    build_layout,
    get_family,
    reserved_tokens,
)
from pgt.substrate.ngrams import (
    NgramCounter,
    collect_ngrams,
    normalise,
    parse_corpus_arg,
    read_extra_tokens,
    read_reference_lists,
)
from pgt.substrate.tokenizer import (
    build_tokenizer,
    load_tokenizer,
    reference_merges,
    token_texts,
)

# Every valid Unicode scalar value (no surrogates), astral planes included.
UNICODE_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)


@pytest.fixture(scope="session")
def abs_ngrams(reference_dir: Path) -> set[str]:
    """The n-grams of bvv241-abs from the reference's lists."""
    return collect_ngrams(
        get_family("bvv241-abs"),
        ngram_files=[reference_dir / "ngrams-2-3-4-5.txt"],
        extra_token_files=[reference_dir / "ngrams-intersection.txt"],
    ).strings


@pytest.fixture(scope="session")
def abs_layout(abs_ngrams: set[str]):
    return build_layout(get_family("bvv241-abs"), abs_ngrams)


@pytest.fixture(scope="session")
def abs_tokenizer(abs_layout):
    return build_tokenizer(abs_layout)


@pytest.fixture(scope="session")
def abs_reloaded(abs_tokenizer, tmp_path_factory):
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("abs-tokenizer")
    abs_tokenizer.save_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))


def test_family_sizes_and_specials():
    assert get_family("bvv241-2-3").vocab_size == 65_536 + 256
    assert get_family("bvv241-abs").vocab_size == get_family("bvv241-max").vocab_size == 131_072 + 256
    assert get_family("bvv241-2-3").ngram_capacity == 0x800 + 0x1800
    assert get_family("bvv241-abs").ngram_capacity == 0x800 + 0x1800 + 0xFFFF
    assert len(SPECIAL_TOKENS) == 23
    for name, cell, dim, rotate, shift, noise in [
        ("bvv241-2-3", 32, 1024, 4, 2, 0.01),
        ("bvv241-max", 32, 1024, 7, 3, 0.03),  # the reference used the 64-cell augmentation with a 32 cell
        ("bvv241-abs", 64, 4096, 7, 3, 0.03),
    ]:
        family = get_family(name)
        augment = family.augment
        assert (family.cell, family.dim, augment.rotate_deg, augment.shift_px, augment.noise_fraction) == (
            cell,
            dim,
            rotate,
            shift,
            noise,
        )
    with pytest.raises(PgtError, match="unknown tokenizer family"):
        get_family("bvv242")


def test_layout_places_characters_specials_ngrams_and_bytes():
    layout = build_layout(FAMILIES["bvv241-2-3"], ["th", "the", "he", "ing"])
    vocab = layout.vocab
    assert len(layout.tokens) == 65_792 == len(vocab)
    assert (vocab["A"], vocab["<pad>"], vocab["<s>"], vocab["</s>"], vocab["<unk>"]) == (65, 57344, 57345, 57346, 57347)
    assert layout.tokens[0xE000 : 0xE000 + 23] == SPECIAL_TOKENS
    assert layout.tokens[0xE017] == "<special_token_57367>" and layout.tokens[0xE0FF] == "<special_token_57599>"
    assert layout.tokens[0xD800:0xD804] == ("ing", "the", "he", "th")  # (-length, string) order
    assert layout.tokens[0xD804] == "<unused_55300>" and layout.tokens[0xFFFF] == "<unused_65535>"
    assert layout.tokens[0xF900] == "\uf900" and layout.tokens[0xFFFE] == "\ufffe"
    assert layout.tokens[65_536] == "<0x00>" and layout.tokens[-1] == "<0xFF>"
    assert layout.dropped == ()


def test_layout_fills_ranges_in_order_and_drops_overflow():
    family = FAMILIES["bvv241-2-3"]
    ngrams = [f"{chr(0x4E00 + i)}{chr(0x4E00 + i)}" for i in range(family.ngram_capacity + 5)]
    layout = build_layout(family, ngrams)
    assert len(layout.ngrams) == family.ngram_capacity and len(layout.dropped) == 5
    assert layout.tokens[0xDFFF] == layout.ngrams[0x7FF] and layout.tokens[0xE100] == layout.ngrams[0x800]
    with pytest.raises(PgtError, match="collides"):
        build_layout(family, ["ab", "<unused_65535>"])


def test_reference_merge_order():
    vocab = {s: i for i, s in enumerate(["a", "b", "c", "ab", "bc", "abc"])}
    # abc first (longest): split a|bc then ab|c; then ab, then bc.
    assert reference_merges(["abc", "ab", "bc"], vocab) == [("a", "bc"), ("ab", "c"), ("a", "b"), ("b", "c")]
    assert reference_merges(["abd"], vocab) == []  # "d" and "bd" are not in the vocabulary


def test_reference_lists_drop_41_of_73768(abs_ngrams: set[str], abs_layout):
    assert len(abs_ngrams) == 73_768
    assert len(abs_layout.ngrams) == 73_727 and len(abs_layout.dropped) == 41
    assert abs_layout.tokens[0x1FFFF] == "<unused_131071>"


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("the nation", [113757, 32, 61404]),
        ("Hello, I am a language model ", [63315, 44, 32, 73, 32, 122882, 32, 97, 32, 57625, 32, 73888, 32]),
    ],
)
def test_reference_encodings(abs_tokenizer, abs_reloaded, text, ids):
    assert abs_tokenizer.encode(text) == ids
    assert abs_reloaded.encode(text) == ids
    assert abs_reloaded.decode(ids) == text


def test_every_reference_id_keeps_its_id_and_only_named_specials_are_special(abs_layout, abs_tokenizer, abs_reloaded):
    reference = abs_layout.tokens[:131_072]
    assert abs_reloaded.convert_ids_to_tokens(list(range(131_072))) == list(reference)
    for token_id, special in enumerate(SPECIAL_TOKENS, start=0xE000):
        assert abs_tokenizer.encode(f"a{special}b") == [97, token_id, 98]
    # `<special_token_N>` and `<unused_N>` text is ordinary text in the reference: its characters and n-grams.
    reserved = reserved_tokens(abs_layout.family) - set(SPECIAL_TOKENS)
    for text in ("x <special_token_57400> y", "<special_token_57599>", "<unused_131071>", "<0x41>"):
        for tokenizer in (abs_tokenizer, abs_reloaded):
            ids = tokenizer.encode(text)
            pieces = [reference[i] for i in ids]
            assert "".join(pieces) == text and not set(pieces) & reserved
            assert all(i < 0xE000 or 0xE100 <= i < 131_072 for i in ids)


def test_saved_tokenizer_is_fast_with_special_tokens(abs_reloaded):
    assert abs_reloaded.is_fast
    assert (abs_reloaded.bos_token, abs_reloaded.eos_token, abs_reloaded.unk_token, abs_reloaded.pad_token) == (
        "<s>",
        "</s>",
        "<unk>",
        "<pad>",
    )
    assert (abs_reloaded.pad_token_id, abs_reloaded.bos_token_id, abs_reloaded.eos_token_id) == (57344, 57345, 57346)
    assert len(abs_reloaded) == 131_328
    assert abs_reloaded.convert_tokens_to_ids("A") == 65


def test_characters_outside_the_layout_use_byte_fallback(abs_tokenizer):
    ids = abs_tokenizer.encode("a😀\uffff")
    assert ids[0] == 97 and all(i >= 131_072 for i in ids[1:])
    assert abs_tokenizer.convert_ids_to_tokens(ids[1:5]) == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert abs_tokenizer.unk_token_id not in ids


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=UNICODE_TEXT)
def test_round_trip_is_lossless(abs_tokenizer, abs_reloaded, text):
    ids = abs_tokenizer.encode(text)
    assert abs_tokenizer.unk_token_id not in ids
    assert abs_tokenizer.decode(ids) == text
    assert abs_reloaded.encode(text) == ids
    assert abs_reloaded.decode(ids) == text


def test_mining_rules():
    assert normalise("It’s 1999,\tsaid `Bob‘\r\n") == "It's , said 'Bob'  "
    counter = NgramCounter((2, 3))
    counter.add("Abba, ab2ba!\tabb a")  # words: Abba, abba, abb, a
    counter.add("東京 東京")  # CJK: n-grams over the non-space characters 東京東京
    top = counter.top(50)
    assert dict(top[2]) == {"Ab": 1, "ab": 2, "bb": 3, "ba": 2, "東京": 2, "京東": 1}
    assert dict(top[3]) == {"Abb": 1, "bba": 2, "abb": 2, "東京東": 1, "京東京": 1}
    assert counter.top(1)[2] == [("bb", 3)]


def test_mining_a_real_corpus_per_language(corpus_files: list[Path]):
    english = [p for p in corpus_files if p.parent.name not in {"ru", "de"}][:2]
    russian = [p for p in corpus_files if p.parent.name == "ru"][:1]
    family = get_family("bvv241-2-3")
    ngrams = collect_ngrams(family, corpus=[*english, f"ru={russian[0]}"])
    languages = {source["language"] for source in ngrams.sources}
    assert languages == {"xx", "ru"}
    assert {"th", "the", "ст"} <= ngrams.strings
    assert all(2 <= len(s) <= 3 and " " not in s for s in ngrams.strings)
    assert len(ngrams.strings) <= 2 * 2 * family.top_k


def test_corpus_directories_skip_binary_files(tmp_path: Path):
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "b.dat").write_bytes(b"\0\1\2")
    assert [s.name for s in parse_corpus_arg(f"de={tmp_path}")] == ["a.txt"]
    assert parse_corpus_arg(f"de={tmp_path}")[0].language == "de"
    with pytest.raises(PgtError, match="not found"):
        parse_corpus_arg(tmp_path / "missing")


@pytest.mark.parametrize(
    "content",
    ["", "[{'lang': 'en', 'top_ngrams': {2: [('th', 3)]}", "__import__('os').system('true')", "[{'lang': 'en'}]", "[]"],
)
def test_bad_ngram_files(tmp_path: Path, content: str):
    path = tmp_path / "ngrams.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PgtError, match=str(path)):
        read_reference_lists(path)
    with pytest.raises(PgtError, match="not found"):
        read_reference_lists(tmp_path / "missing.txt")


def test_reference_list_format(reference_dir: Path):
    lists = read_reference_lists(reference_dir / "ngrams-2-3.txt")
    assert len(lists) == 32 and set(lists["en"]) == {2, 3}
    strings = collect_ngrams(get_family("bvv241-2-3"), ngram_files=[reference_dir / "ngrams-2-3.txt"]).strings
    layout = build_layout(get_family("bvv241-2-3"), strings)
    assert len(layout.ngrams) == len(strings) <= get_family("bvv241-2-3").ngram_capacity


def test_extra_tokens_are_stripped_multichar_and_shortest_first(tmp_path: Path):
    path = tmp_path / "extra.txt"
    path.write_text("  hello \nx\nab\nabc\n\nab\n", encoding="utf-8")
    assert read_extra_tokens(path) == ["ab", "abc", "hello"]
    assert read_extra_tokens(path, limit=2) == ["ab", "abc"]
    path.write_text("x\n\n", encoding="utf-8")
    with pytest.raises(PgtError, match="no multi-character"):
        read_extra_tokens(path)


def test_no_ngram_source_is_an_error():
    with pytest.raises(PgtError, match="needs n-grams"):
        collect_ngrams(get_family("bvv241-abs"))


def test_empty_corpus_is_an_error(tmp_path: Path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "digits.txt").write_text("12 34 !!\n", encoding="utf-8")
    with pytest.raises(PgtError, match="no n-grams"):
        collect_ngrams(get_family("bvv241-2-3"), corpus=[tmp_path])


def test_any_tokenizer_texts_show_byte_level_tokens_as_text(byte_level_tokenizer_dir: Path, tmp_path: Path):
    tokenizer = load_tokenizer(byte_level_tokenizer_dir)
    texts = token_texts(tokenizer)
    raw = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert len(texts) == len(tokenizer) == 400
    assert texts[0] == "<|endoftext|>"
    assert texts[raw.index("Ġthe")] == " the"
    assert texts[raw.index("A")] == "A"
    assert token_texts(tokenizer, [raw.index("Ġthe")]) == [" the"]
    with pytest.raises(PgtError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(PgtError, match="cannot load"):
        load_tokenizer(tmp_path)


def test_token_texts_of_byte_and_special_tokens(abs_tokenizer):
    ids = [131_072 + 0x41, 131_072 + 0xF0, 57345, 61404, 65]
    assert token_texts(abs_tokenizer, ids) == ["A", "<0xF0>", "<s>", "nation", "A"]
