"""BLEU / chrF / ROUGE: agreement with sacrebleu, hand-worked ROUGE, Unicode tokens, errors, CLI."""

from __future__ import annotations

import hashlib
import json

import pytest
import sacrebleu

from xling.cli import main
from xling.errors import XlingError
from xling.evaluation.textmetrics import bleu, bleu_tokenizer, evaluate_files, rouge
from xling.tokenization.words import unicode_tokens

HYPS = [
    "The quick brown fox jumps over the lazy dog.",
    "A cat sat on a mat near the door.",
    "",
    "Machine translation is evaluated with BLEU scores.",
]
REFS = [
    "The quick brown fox jumped over the lazy dog.",
    "The cat sat on the mat by the door.",
    "Nothing was produced for this line.",
    "Machine translation is usually evaluated with BLEU.",
]


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- BLEU / chrF


def test_identical_hypotheses_score_100():
    r = bleu(REFS, REFS, "en")
    assert r["bleu"] == pytest.approx(100.0) and r["chrf"] == pytest.approx(100.0)


def test_bleu_and_chrf_equal_sacrebleu_called_directly():
    r = bleu(HYPS, REFS, "en")
    assert r["bleu"] == sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="13a").score
    assert r["chrf"] == sacrebleu.corpus_chrf(HYPS, [REFS]).score
    assert 0 < r["bleu"] < 100 and 0 < r["chrf"] < 100
    assert "tok:13a" in r["sacrebleu"]["bleu"] and "nc:6" in r["sacrebleu"]["chrf"]


def test_chinese_uses_sacrebleus_zh_tokenizer():
    hyps, refs = ["我喜欢机器翻译。", "今天天气很好"], ["我很喜欢机器翻译。", "今天天气非常好"]
    r = bleu(hyps, refs, "zh")
    assert r["tokenizer"] == "zh" and "tok:zh" in r["sacrebleu"]["bleu"]
    assert r["bleu"] == sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score
    # unsegmented Chinese under 13a is one "word" per line: no 4-gram matches at all
    assert sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score == 0.0 < r["bleu"]
    assert bleu_tokenizer("ja") == "char" and bleu_tokenizer("de") == "13a" and bleu_tokenizer(None) == "13a"


# ----------------------------------------------------------------------------- ROUGE


def test_rouge_hand_worked():
    # hyp "the cat sat" vs ref "the cat was here":
    #   unigrams: overlap {the, cat} = 2, P = 2/3, R = 2/4, F = 2PR/(P+R) = 4/7
    #   bigrams:  overlap {the cat} = 1, P = 1/2, R = 1/3, F = 2/5
    #   LCS "the cat" = 2: same as ROUGE-1, 4/7
    # line 2 is an empty hypothesis: 0 for every type. Means over the 2 lines:
    r = rouge(["the cat sat", ""], ["the cat was here", "a dog"], "en")
    assert r["rouge1"] == pytest.approx(100 * (4 / 7) / 2)
    assert r["rouge2"] == pytest.approx(100 * (2 / 5) / 2)
    assert r["rougeL"] == pytest.approx(100 * (4 / 7) / 2)
    assert r["detail"]["rouge1"]["precision"] == pytest.approx(100 * (2 / 3) / 2)
    assert r["detail"]["rouge2"]["recall"] == pytest.approx(100 * (1 / 3) / 2)


def test_unicode_tokens_keep_umlauts_and_split_han():
    assert unicode_tokens("Größe: 3 Äpfel, 中文字!") == ["größe", "3", "äpfel", "中", "文", "字"]
    assert unicode_tokens("हिन्दी 한국어") == ["हिन्दी", "한국어"]  # combining marks stay inside the word


def test_german_umlaut_words_count():
    # Only the umlaut words differ. rouge-score's ASCII tokenizer would see "gr", "e"
    # in both "Größe" and "Grüße"; the Unicode tokenizer sees two different words.
    hyp, ref = ["die Größe des Fensters"], ["die Grüße des Fensters"]
    de = rouge(hyp, ref, "de")
    assert de["tokenizer"] == "unicode"
    assert de["rouge1"] == pytest.approx(75.0)  # 3 of 4 words
    assert rouge(hyp, ref, "en")["rouge1"] == pytest.approx(100.0)  # the English tokenizer cannot tell
    assert rouge(["Äpfel Öl"], ["Äpfel Öl"], "de")["rouge1"] == pytest.approx(100.0)


def test_chinese_characters_count():
    # 机器翻译 vs 机器学习: 2 of 4 characters shared, 1 of 3 bigrams (机器)
    r = rouge(["机器翻译"], ["机器学习"], "zh")
    assert r["rouge1"] == pytest.approx(50.0) and r["rouge2"] == pytest.approx(100 / 3)
    assert rouge(["机器翻译"], ["机器学习"], "en")["rouge1"] == 0.0  # ASCII tokenizer: no tokens at all


# ----------------------------------------------------------------------------- errors, files, signatures


def test_length_mismatch_is_one_line_error(tmp_path):
    with pytest.raises(XlingError, match="hypotheses has 2 lines, references has 1"):
        bleu(["a", "b"], ["a"])
    h, r = write(tmp_path / "sys.txt", ["a", "b", "c"]), write(tmp_path / "ref.txt", ["a", "b"])
    with pytest.raises(XlingError) as e:
        evaluate_files("rouge", h, r)
    msg = str(e.value)
    assert "sys.txt has 3 lines" in msg and "ref.txt has 2" in msg and "\n" not in msg


def test_signature_hashes_are_the_files_sha256(tmp_path):
    h, r = write(tmp_path / "h.txt", HYPS), write(tmp_path / "r.txt", REFS)
    res = evaluate_files("bleu", h, r, "de")
    sha = {p: hashlib.sha256(p.read_bytes()).hexdigest()[:8] for p in (h, r)}
    assert res["signature"].startswith(f"xling-bleu|hyp:{sha[h]}|ref:{sha[r]}|n:4|lang:de|tok:13a|v:")
    other = evaluate_files("bleu", write(tmp_path / "h2.txt", REFS), r, "de")
    assert other["signature"] != res["signature"]


def test_cli_bleu_and_rouge_write_json(tmp_path, capsys):
    h, r = write(tmp_path / "h.txt", HYPS), write(tmp_path / "r.txt", REFS)
    assert main(["evaluate", "bleu", "--hyp", str(h), "--ref", str(r), "--lang", "en", "--out", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    b = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert b["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert b["signature"].startswith("xling-bleu|") and b["sacrebleu"]["bleu"].startswith("nrefs:1|")
    assert f"BLEU = {b['bleu']:.2f}" in out and b["signature"] in out
    assert main(["evaluate", "rouge", "--hyp", str(h), "--ref", str(r), "--out", str(tmp_path / "r.json")]) == 0
    g = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert g["tokenizer"] == "unicode" and "tok:unicode" in g["signature"] and 0 < g["rougeL"] < 100


@pytest.mark.parametrize("metric", ["bleu", "rouge"])
def test_cli_errors_exit_2(tmp_path, capsys, metric):
    h, r = write(tmp_path / "h.txt", ["a"]), write(tmp_path / "r.txt", ["a", "b"])
    out = tmp_path / "res.json"
    assert main(["evaluate", metric, "--hyp", str(h), "--ref", str(r), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xling: error: line counts differ") and err.count("\n") == 1
    assert not out.exists()
    assert main(["evaluate", metric, "--hyp", str(tmp_path / "missing.txt"), "--ref", str(r)]) == 2
    assert "missing.txt: no such file" in capsys.readouterr().err
