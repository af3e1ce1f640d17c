"""Generation: search on hand-made step decoders (results worked by hand), the seq2seq
step decoder against full forwards, the texts API and ``xling translate/generate``."""

from __future__ import annotations

import io
import itertools
import logging
import math
import sys

import pytest
import torch

from xling.cli import main
from xling.errors import XlingError
from xling.generation import search
from xling.generation.api import generate_nbest, generate_texts
from xling.generation.base import GenerationConfig, StepDecoder
from xling.generation.decoders import check_decodable, step_decoder
from xling.models.config import EncoderConfig, Seq2SeqConfig
from xling.models.encoder import TransformerEncoder
from xling.models.seq2seq import TransformerSeq2Seq

PAD, BOS, EOS = 0, 1, 2  # toy ids; tokens 3.. are ordinary
A, B, C, D = 3, 4, 5, 6
EPS = 1e-6  # probability of tokens a toy distribution does not list


def run(decoder, src_lens, **kw):
    cfg = GenerationConfig(**{"max_len_a": 0, "max_len_b": 8, "min_len": 0, **kw})
    return search.generate(decoder, src_lens, cfg, BOS, EOS, PAD)


class MarkovDecoder:
    """Next-token log-probs depend on the source row and the previous token only:
    table (N, V, V). ``reorder`` follows rows, so wrong bookkeeping shows up."""

    def __init__(self, table: torch.Tensor, max_target_len=None):
        self.table = table
        self.rows = torch.arange(table.shape[0])  # (N',) source of each live row
        self.max_target_len = max_target_len
        self.batch_sizes: list[int] = []

    def step(self, prev):
        self.batch_sizes.append(len(prev))
        return self.table[self.rows, prev].clone()

    def reorder(self, index):
        self.rows = self.rows[index]


def markov(n: int, V: int = 9, seed: int = 0, sharp: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (sharp * torch.randn(n, V, V, generator=g)).log_softmax(-1)


class TreeDecoder:
    """Log-probs given by the whole prefix: ``tree[prefix] = {token: prob}`` (unlisted
    tokens get EPS; prefixes not in the tree end with EOS)."""

    def __init__(self, tree: dict, V: int = 7, n: int = 1):
        self.tree, self.V = tree, V
        self.hist: list[tuple] | None = None
        self.n = n

    def step(self, prev):
        self.hist = [()] * self.n if self.hist is None else [h + (int(p),) for h, p in zip(self.hist, prev)]
        out = torch.full((len(self.hist), self.V), EPS)
        for r, h in enumerate(self.hist):
            for tok, p in self.tree.get(h, {EOS: 1.0}).items():
                out[r, tok] = p
        return (out / out.sum(-1, keepdim=True)).log()

    def reorder(self, index):
        self.hist = [self.hist[i] for i in index.tolist()]


def path_logprobs(table, s, tokens):
    """Log-probs of ``tokens`` then EOS under source s's Markov table."""
    prev, out = BOS, []
    for tok in list(tokens) + [EOS]:
        out.append(float(table[s, prev, tok]))
        prev = tok
    return out


# --------------------------------------------------------------------------- search


def test_toy_decoders_follow_the_protocol():
    assert isinstance(MarkovDecoder(markov(1)), StepDecoder)
    assert isinstance(TreeDecoder({}), StepDecoder)


def test_greedy_picks_the_argmax_path_by_hand():
    table = markov(3)
    out = run(MarkovDecoder(table), [1, 1, 1], max_len_b=6, length_penalty=1.0)
    for s, (hyp,) in enumerate(out):
        prev, tokens, lps = BOS, [], []
        while True:  # argmax among allowed tokens (PAD and BOS never), EOS forced at 6
            row = table[s, prev].clone()
            row[[PAD, BOS]] = -math.inf
            tok = EOS if len(tokens) == 6 else int(row.argmax())
            lps.append(float(row[tok]))
            if tok == EOS:
                break
            tokens.append(tok)
            prev = tok
        assert hyp.tokens == tokens
        assert hyp.token_logprobs == pytest.approx(lps)
        assert hyp.score == pytest.approx(sum(lps) / (len(tokens) + 1))


def test_beam_beats_myopic_greedy():
    # greedy takes A (0.6) then ends: 0.6 * 0.4 = 0.24; B then EOS is 0.4 * 0.95 = 0.38
    tree = {(): {A: 0.6, B: 0.4}, (A,): {EOS: 0.4, A: 0.3, B: 0.3}, (B,): {EOS: 0.95, A: 0.05}}
    greedy = run(TreeDecoder(tree), [1], min_len=1, length_penalty=0.0)[0]
    beam = run(TreeDecoder(tree), [1], min_len=1, length_penalty=0.0, beam=2, n_best=2)[0]
    assert greedy[0].tokens == [A] and greedy[0].score == pytest.approx(math.log(0.24), abs=1e-4)
    assert beam[0].tokens == [B] and beam[0].score == pytest.approx(math.log(0.38), abs=1e-4)
    assert beam[1].tokens == [A]


def test_beam_hypotheses_sorted_and_scored_from_the_model():
    table = markov(4, seed=1, sharp=1.0)
    out = run(MarkovDecoder(table), [1] * 4, beam=4, n_best=4, length_penalty=0.7)
    for s, hyps in enumerate(out):
        assert len(hyps) == 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 4
        for h in hyps:
            lps = path_logprobs(table, s, h.tokens)
            assert h.token_logprobs == pytest.approx(lps, abs=1e-5)
            assert h.score == pytest.approx(sum(lps) / (len(h.tokens) + 1) ** 0.7, abs=1e-5)
            assert EOS not in h.tokens and BOS not in h.tokens and PAD not in h.tokens


def test_beam_1_equals_greedy_on_a_markov_chain():
    table = markov(5, seed=2)
    g = run(MarkovDecoder(table), [1, 2, 3, 4, 5], max_len_a=1.0, max_len_b=2)
    b = search.beam_search(MarkovDecoder(table), [1, 2, 3, 4, 5],
                           GenerationConfig(beam=1, max_len_a=1.0, max_len_b=2, min_len=0), BOS, EOS, PAD)
    assert [h[0].tokens for h in g] == [h[0].tokens for h in b]
    assert [h[0].score for h in g] == pytest.approx([h[0].score for h in b])


LENPEN_TREE = {(): {A: 0.55, B: 0.45}, (A,): {EOS: 1.0}, (B,): {B: 0.9, C: 0.1}, (B, B): {B: 0.9, C: 0.1},
               (B, B, B): {EOS: 0.9, C: 0.1}}
# [A]: log .55 = -0.598 (2 with EOS); [B B B]: log .45 + 3 log .9 = -1.114 (4 with EOS)


def test_length_penalty_changes_the_ranking():
    # early_stopping off: with it, beam 2 would stop on the junk [A, x] ending at step 2
    raw = run(TreeDecoder(LENPEN_TREE), [1], beam=2, n_best=2, length_penalty=0.0, early_stopping=False)[0]
    norm = run(TreeDecoder(LENPEN_TREE), [1], beam=2, n_best=2, length_penalty=1.0, early_stopping=False)[0]
    assert [h.tokens for h in raw] == [[A], [B, B, B]]
    assert [h.tokens for h in norm] == [[B, B, B], [A]]
    assert norm[0].score == pytest.approx((math.log(0.45) + 3 * math.log(0.9)) / 4, abs=1e-4)
    assert norm[1].score == pytest.approx(math.log(0.55) / 2, abs=1e-4)


def test_early_stopping_off_keeps_searching():
    # [A] ends first: log .55 / 2 = -0.299; [A B B] later: (log .45 + 2 log .95) / 4 = -0.225
    tree = {(): {A: 1.0}, (A,): {EOS: 0.55, B: 0.45}, (A, B): {B: 0.95, C: 0.05}, (A, B, B): {EOS: 0.95, C: 0.05}}
    early = run(TreeDecoder(tree), [1], beam=1, length_penalty=1.0)[0]
    full = run(TreeDecoder(tree), [1], beam=1, length_penalty=1.0, early_stopping=False)[0]
    assert early[0].tokens == [A]  # beam 1 stops at the first ended hypothesis
    assert full[0].tokens == [A, B, B] and full[0].score == pytest.approx(-0.225, abs=1e-3)
    table = markov(6, seed=3, sharp=1.0)
    for lp in (0.0, 1.0, 2.0):
        e = run(MarkovDecoder(table), [1] * 6, beam=3, length_penalty=lp)
        f = run(MarkovDecoder(table), [1] * 6, beam=3, length_penalty=lp, early_stopping=False)
        assert all(y[0].score >= x[0].score - 1e-6 for x, y in zip(e, f))


def _ngrams(tokens, n):
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram(n):
    table = torch.full((2, 9, 9), math.log(EPS))  # a cycle A -> B -> A ..., EOS unlikely
    table[:, BOS, A] = table[:, A, B] = table[:, B, A] = 0.0
    table[:, :, C] = table[:, :, D] = math.log(0.01)
    table = table.log_softmax(-1)
    kinds = [dict(), dict(beam=3, n_best=3), dict(sampling=True, n_best=5, seed=1)]
    for kw in kinds:
        plain = run(MarkovDecoder(table), [1, 1], max_len_b=10, **kw)
        assert any(len(set(_ngrams(h.tokens, n))) < len(_ngrams(h.tokens, n)) for hs in plain for h in hs)
        out = run(MarkovDecoder(table), [1, 1], max_len_b=10, no_repeat_ngram=n, **kw)
        for hyps in out:
            for h in hyps:
                grams = _ngrams(h.tokens, n)
                assert len(grams) == len(set(grams)), (kw, h.tokens)


def test_eos_ends_and_max_length_a_src_plus_b():
    table = torch.zeros(3, 9, 9)
    table[:, :, EOS] = -30.0  # EOS almost impossible: outputs run to their maximum length
    table = table.log_softmax(-1)
    for kw in (dict(), dict(beam=3), dict(sampling=True)):
        dec = MarkovDecoder(table)
        out = run(dec, [2, 5, 8], max_len_a=0.5, max_len_b=2, **kw)
        assert [len(h[0].tokens) for h in out] == [3, 4, 6]
        assert len(dec.batch_sizes) == 7  # steps 0..6, the last forcing EOS
        capped = run(MarkovDecoder(table, max_target_len=[10, 1, 3]), [2, 5, 8], max_len_a=0.5, max_len_b=2, **kw)
        assert [len(h[0].tokens) for h in capped] == [3, 1, 3]
    # a likely EOS ends each row early, and finished rows leave the live batch
    table = markov(6, seed=2, sharp=1.0)
    table[:, :, EOS] += 0.5
    dec = MarkovDecoder(table.log_softmax(-1))
    lengths = [len(h[0].tokens) for h in run(dec, [1] * 6, max_len_b=30, min_len=1)]
    assert min(lengths) < 30 and len(set(lengths)) > 1
    # a row ending at step L (EOS emitted there) is in the batch of steps 0..L only
    assert dec.batch_sizes == [sum(n >= t for n in lengths) for t in range(max(lengths) + 1)]


def test_min_len():
    table = torch.zeros(2, 9, 9)
    table[:, :, EOS] = 20.0  # EOS (almost surely) most likely everywhere
    table = table.log_softmax(-1)
    for kw in (dict(), dict(beam=3), dict(sampling=True)):
        assert [len(h[0].tokens) for h in run(MarkovDecoder(table), [1, 1], min_len=3, **kw)] == [3, 3]
        assert [len(h[0].tokens) for h in run(MarkovDecoder(table), [1, 1], min_len=0, **kw)] == [0, 0]


def test_top_k_1_sampling_equals_greedy():
    table = markov(5, seed=5, sharp=1.0)
    greedy = run(MarkovDecoder(table), [1] * 5)
    for seed in range(3):
        sampled = run(MarkovDecoder(table), [1] * 5, sampling=True, top_k=1, seed=seed)
        assert [h[0].tokens for h in sampled] == [h[0].tokens for h in greedy]


ONE_STEP = {(): {A: 0.5, B: 0.25, C: 0.15, D: 0.1}}  # then EOS


def _frequencies(n_samples=4000, **kw):
    hyps = run(TreeDecoder(ONE_STEP), [1], min_len=1, sampling=True, n_best=n_samples, **kw)[0]
    counts = {t: 0 for t in (A, B, C, D)}
    for h in hyps:  # the first token is the draw under test (then EOS, almost surely)
        counts[h.tokens[0]] += 1
    return {t: c / n_samples for t, c in counts.items()}


def test_top_p_keeps_the_smallest_nucleus():
    freq = _frequencies(top_p=0.7)  # 0.5 < 0.7 <= 0.75: nucleus {A, B}, renormalised 2/3, 1/3
    assert freq[C] == freq[D] == 0
    assert freq[A] == pytest.approx(2 / 3, abs=0.03) and freq[B] == pytest.approx(1 / 3, abs=0.03)
    freq = _frequencies(top_p=0.8)  # nucleus {A, B, C}
    assert freq[D] == 0 and freq[C] == pytest.approx(0.15 / 0.9, abs=0.03)
    freq = _frequencies()  # no filter: the model's distribution
    assert [freq[t] for t in (A, B, C, D)] == pytest.approx([0.5, 0.25, 0.15, 0.1], abs=0.03)


def test_temperature_reshapes_the_distribution():
    p = torch.tensor([0.5, 0.25, 0.15, 0.1])
    for t in (0.5, 2.0):
        want = (p ** (1 / t)) / (p ** (1 / t)).sum()
        freq = _frequencies(temperature=t)
        assert [freq[x] for x in (A, B, C, D)] == pytest.approx(want.tolist(), abs=0.03)


def test_sampling_is_reproducible_with_a_seed():
    table = markov(3, seed=6, sharp=0.5)
    a = run(MarkovDecoder(table), [1] * 3, sampling=True, n_best=4, seed=7)
    b = run(MarkovDecoder(table), [1] * 3, sampling=True, n_best=4, seed=7)
    c = run(MarkovDecoder(table), [1] * 3, sampling=True, n_best=4, seed=8)
    tokens = lambda out: [[h.tokens for h in hs] for hs in out]  # noqa: E731
    assert tokens(a) == tokens(b) and tokens(a) != tokens(c)
    for s, hs in enumerate(a):  # samples are scored with the model's log-probs
        for h in hs:
            assert h.token_logprobs == pytest.approx(path_logprobs(table, s, h.tokens), abs=1e-5)


def test_config_errors_are_one_line():
    for kw, msg in [(dict(beam=0), "beam"), (dict(top_p=0.0), "top_p"), (dict(temperature=0.7), "sampling"),
                    (dict(sampling=True, beam=4), "beam 1"), (dict(n_best=3, beam=2), "n_best"),
                    (dict(max_len_a=0, max_len_b=0), "max_len")]:
        with pytest.raises(XlingError, match=msg) as e:
            GenerationConfig(**kw)
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------- real models

SMALL = dict(vocab_size=40, n_langs=3, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_positions=40,
             dropout=0.0, attn_dropout=0.0, init_std=0.3)
SRC = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15, 16, 17, 18]]


@pytest.fixture(scope="module")
def s2s():
    torch.manual_seed(0)
    return TransformerSeq2Seq(Seq2SeqConfig(**SMALL, n_dec_layers=2)).eval()


def _full_logprobs(model, src, prefixes):
    """No-cache reference: log-probs after each row's whole decoder prefix (N, V)."""
    from xling.data.masking import pad_batch
    from xling.data.span_masking import with_bos_eos

    tokens = torch.from_numpy(pad_batch([with_bos_eos(x, BOS, EOS) for x in src]))
    prefixes = torch.tensor(prefixes)
    with torch.no_grad():
        h = model(tokens, langs=torch.zeros_like(tokens), dec_tokens=prefixes, dec_langs=torch.ones_like(prefixes))
        return model.lm_logits(h[:, -1]).float().log_softmax(-1)


def test_seq2seq_cached_steps_equal_full_forward(s2s):
    g = torch.Generator().manual_seed(0)
    dec = step_decoder(s2s, SRC, 0, 1, BOS, EOS)
    src, prefixes = list(SRC), [[BOS] for _ in SRC]
    for t in range(6):
        lp = dec.step(torch.tensor([p[-1] for p in prefixes]))
        assert lp.dtype == torch.float32
        torch.testing.assert_close(lp, _full_logprobs(s2s, src, prefixes), atol=1e-5, rtol=1e-4)
        if t == 2:  # beam-style expansion, reordering and dropping
            index = [2, 0, 0, 1, 2]
            dec.reorder(torch.tensor(index))
            src, prefixes = [src[i] for i in index], [list(prefixes[i]) for i in index]
        nxt = torch.randint(5, 40, (len(prefixes),), generator=g).tolist()
        prefixes = [p + [x] for p, x in zip(prefixes, nxt)]


def _encoder():
    torch.manual_seed(1)
    return TransformerEncoder(EncoderConfig(**SMALL)).eval()


@pytest.mark.parametrize("kind", ["seq2seq", "unilm"])
def test_beam_1_equals_greedy_on_a_model(kind, s2s):
    if kind == "unilm":
        pytest.importorskip("xling.generation.unilm")
    model = s2s if kind == "seq2seq" else _encoder()
    cfg = dict(max_len_a=1.0, max_len_b=4, min_len=1)
    lens = [len(x) for x in SRC]
    g = search.greedy(step_decoder(model, SRC, 0, 1), lens, GenerationConfig(**cfg), BOS, EOS, PAD, (4,))
    b = search.beam_search(step_decoder(model, SRC, 0, 1), lens, GenerationConfig(beam=1, **cfg), BOS, EOS, PAD, (4,))
    assert [h[0].tokens for h in g] == [h[0].tokens for h in b]
    assert [h[0].score for h in g] == pytest.approx([h[0].score for h in b], abs=1e-5)
    assert len({tuple(h[0].tokens) for h in g}) > 1  # the sources matter
    wide = search.beam_search(step_decoder(model, SRC, 0, 1), lens, GenerationConfig(beam=4, n_best=4, **cfg),
                              BOS, EOS, PAD, (4,))
    for hs in wide:
        assert [h.score for h in hs] == sorted([h.score for h in hs], reverse=True)


def test_check_decodable():
    check_decodable({"model_type": "transformer_seq2seq", "extra": {}})
    check_decodable({"model_type": "transformer_encoder",
                     "extra": {"pretrain": {"objectives": [{"type": "mlm"}, {"type": "unilm"}]}}})
    check_decodable({"model_type": "transformer_encoder", "extra": {  # fine-tuned from a UNILM model
        "pretrain": {"objectives": [{"type": "mlm"}]},
        "init_extra": {"pretrain": {"objectives": [{"type": "unilm"}]}}}})
    check_decodable({"model_type": "transformer_encoder",
                     "extra": {"pretrain": {"objectives": [{"type": "summarization", "langs": ["en"]}]}}})
    for meta in ({"model_type": "transformer_encoder", "extra": {"pretrain": {"objectives": [{"type": "mlm"}]}}},
                 {"model_type": "transformer_encoder", "extra": {}}):
        with pytest.raises(XlingError, match="has no decoder; fine-tune it for translation"):
            check_decodable(meta)


# ------------------------------------------------------------------ API and CLI


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from xling.tokenization.vocab import train_vocab

    d = tmp_path_factory.mktemp("gen")
    words = {"en": ["the", "old", "man", "reads", "a", "book", "today", "river"],
             "de": ["der", "alte", "Mann", "liest", "ein", "Buch", "heute", "Fluss"]}
    texts = {lang: [" ".join(p) for p in itertools.permutations(w, 4)][:300] for lang, w in words.items()}
    vocab = train_vocab(texts, d / "vocab", vocab_size=290, max_sentences=600)
    torch.manual_seed(2)
    cfg = dict(SMALL, vocab_size=len(vocab), n_langs=2, max_positions=24)
    TransformerSeq2Seq(Seq2SeqConfig(**cfg, n_dec_layers=2)).save_pretrained(d / "s2s", vocab=vocab)
    encoder = TransformerEncoder(EncoderConfig(**cfg))
    for name, kind in (("xlm", "mlm"), ("unilm", "unilm")):
        extra = {"pretrain": {"objectives": [{"type": kind, "langs": ["en"]}]}}
        encoder.save_pretrained(d / name, vocab=vocab, extra=extra)
    return d, vocab


TEXTS = ["the old man reads", "", "a book", "   ", "der alte Mann liest heute ein Buch",
         "river", "the man reads a book today the old river"]


def test_generate_texts_order_batching_empty_lines(saved, monkeypatch):
    d, vocab = saved
    model = TransformerSeq2Seq.from_pretrained(d / "s2s")
    seen = []
    import xling.generation.api as api

    real = api.step_decoder
    monkeypatch.setattr(api, "step_decoder", lambda m, src, *a: seen.extend(src) or real(m, src, *a))
    cfg = GenerationConfig(beam=2, max_len_a=0, max_len_b=4)
    alone = [generate_texts(model, vocab, [t], "en", "de", cfg)[0] for t in TEXTS]
    assert len(seen) == 5  # empty and whitespace-only lines never reach the model
    assert alone[1] == alone[3] == ""
    for bs, mt in ((2, None), (3, 40), (64, None)):
        assert generate_texts(model, vocab, TEXTS, "en", "de", cfg, batch_size=bs, max_tokens=mt) == alone
    nbest = generate_nbest(model, vocab, TEXTS, "en", "de", GenerationConfig(beam=3, n_best=3, max_len_a=0,
                                                                             max_len_b=4))
    assert [len(h) for h in nbest] == [3, 1, 3, 1, 3, 3, 3] and nbest[1] == [("", 0.0)]
    with pytest.raises(XlingError, match="unknown language code 'xx'.*valid: de, en"):
        generate_texts(model, vocab, TEXTS, "en", "xx")


def test_truncation_warning_counts_lines(saved, caplog):
    d, vocab = saved
    model = TransformerSeq2Seq.from_pretrained(d / "s2s")  # max_positions 24: sources of 22 tokens at most
    long = " ".join(["the old man reads a book today"] * 4)
    assert len(vocab.encode(long)) > 22
    with caplog.at_level(logging.WARNING, logger="xling.generation.api"):
        out = generate_texts(model, vocab, [long, "a book", long, ""], "en", "de",
                             GenerationConfig(max_len_a=0, max_len_b=3))
    assert len(out) == 4
    records = [r for r in caplog.records if r.name == "xling.generation.api"]
    assert len(records) == 1 and "2 of 4 input lines" in records[0].getMessage()


def test_int8_quantization_tracks_the_float_model(saved):
    """--quantize int8: every Linear becomes a dynamic-int8 one; the log-probs stay close to
    the float model's, and generation keeps the input order and the empty lines."""
    from xling.generation.api import load_generation_model, quantize_for_inference
    from xling.generation.decoders import step_decoder

    d, vocab = saved
    model = load_generation_model(d / "s2s").model
    q = load_generation_model(d / "s2s", quantize="int8").model
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    assert any(type(m) is torch.nn.Linear for m in model.modules())
    src = [ids for ids in map(vocab.encode, TEXTS) if 0 < len(ids) <= 20]
    a, b = step_decoder(model, src, 0, 1), step_decoder(q, src, 0, 1)
    for _ in range(3):
        la, lb = a.step(torch.full((len(src),), 2)), b.step(torch.full((len(src),), 2))
        pa, pb = la.exp(), lb.exp()
        assert 0.5 * (pa - pb).abs().sum(-1).max() < 0.2  # total variation distance per row (dim 32: coarse)
        assert torch.corrcoef(torch.stack([la.flatten(), lb.flatten()]))[0, 1] > 0.98
        assert not torch.equal(la, lb)  # really quantized
    out = generate_texts(q, vocab, TEXTS, "en", "de", GenerationConfig(beam=2, max_len_a=0, max_len_b=4))
    assert len(out) == len(TEXTS) and out[1] == out[3] == ""
    with pytest.raises(XlingError, match="unknown quantization 'int4'"):
        quantize_for_inference(model, "int4")


def _one_line_error(capsys, rc, match):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err and err[-1].startswith("xling: error:") and match in err[-1], err
    assert "Traceback" not in "\n".join(err)


def test_cli_translate_and_generate(saved, tmp_path, capsys, monkeypatch):
    d, _ = saved
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    args = ["--model", str(d / "s2s"), "--input", str(inp), "--output", str(out),
            "--max-len-a", "0", "--max-len-b", "4", "--quiet"]
    assert main(["translate", "--src-lang", "en", "--tgt-lang", "de", *args]) == 0
    lines = out.read_text(encoding="utf-8").split("\n")
    assert len(lines) == len(TEXTS) + 1 and lines[-1] == "" and lines[1] == lines[3] == ""
    args[1] = str(d / "unilm")  # a UNILM-trained encoder decodes too
    assert main(["translate", "--src-lang", "de", "--tgt-lang", "en", *args, "--beam", "2"]) == 0
    lines = out.read_text(encoding="utf-8").split("\n")
    assert len(lines) == len(TEXTS) + 1 and lines[1] == lines[3] == ""
    args[1] = str(d / "s2s")
    assert main(["generate", "--lang", "en", *args, "--sampling", "--top-p", "0.9", "--n-best", "2"]) == 0
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    assert [int(r[0]) for r in rows] == [1, 1, 2, 3, 3, 4, 5, 5, 6, 6, 7, 7]
    # stdin, to stdout
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("a book\n\nriver\n".encode())))
    assert main(["translate", "--src-lang", "en", "--tgt-lang", "de", "--model", str(d / "s2s"), "--quiet"]) == 0
    printed = capsys.readouterr().out.split("\n")
    assert len(printed) == 4 and printed[1] == ""


def test_cli_user_errors(saved, tmp_path, capsys, monkeypatch):
    d, _ = saved
    inp = tmp_path / "in.txt"
    inp.write_text("a book\n", encoding="utf-8")
    base = ["translate", "--input", str(inp), "--output", str(tmp_path / "o.txt")]
    rc = main([*base, "--model", str(d / "s2s"), "--src-lang", "en", "--tgt-lang", "xx"])
    _one_line_error(capsys, rc, "unknown language code 'xx'")
    rc = main([*base, "--model", str(d / "xlm"), "--src-lang", "en", "--tgt-lang", "de"])
    _one_line_error(capsys, rc, "has no decoder; fine-tune it for translation first")
    rc = main([*base, "--model", str(d / "s2s"), "--src-lang", "en", "--tgt-lang", "de", "--sampling", "--beam", "3"])
    _one_line_error(capsys, rc, "use beam 1")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe\n")
    rc = main(["translate", "--input", str(bad), "--model", str(d / "s2s"), "--src-lang", "en", "--tgt-lang", "de"])
    _one_line_error(capsys, rc, "bad.txt:2: invalid UTF-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\n")))
    rc = main(["translate", "--model", str(d / "s2s"), "--src-lang", "en", "--tgt-lang", "de"])
    _one_line_error(capsys, rc, "<stdin>:1: invalid UTF-8")
    assert not (tmp_path / "o.txt").exists()
