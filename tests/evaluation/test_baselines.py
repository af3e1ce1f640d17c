"""Summarization baselines against hand-worked outputs."""

import pytest

from xling.errors import XlingError
from xling.evaluation.baselines import baseline, first_sentence, first_words


def test_first_sentence():
    assert first_sentence("Tool to dump ABI. It reads ELF files. Also DWARF.") == "Tool to dump ABI."
    assert first_sentence("Does it work? Yes!") == "Does it work?"
    assert first_sentence("no end  at\tall") == "no end at all"
    assert first_sentence("版本 1.2 很好。第二句。") == "版本 1.2 很好。"
    assert first_sentence("Version 1.2.3 is out. Next") == "Version 1.2.3 is out."  # dots inside a word do not end it


def test_first_words_and_dispatch():
    text = "one two three four five six seven eight nine ten"
    assert first_words(text, 8) == "one two three four five six seven eight"
    assert first_words("short text", 8) == "short text"
    assert baseline("lead-3", [text, "a b"]) == ["one two three", "a b"]
    assert baseline("lead-sentence", ["A b. C d."]) == ["A b."]
    for bad in ("lead-0", "lead", "first"):
        with pytest.raises(XlingError, match="unknown baseline"):
            baseline(bad, [text])
