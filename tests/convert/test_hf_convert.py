"""xling convert hf / to-hf: Hugging Face encoders into xling's TransformerEncoder and back, checked
against ``transformers`` itself.

Tiny random models of each family are built locally with ``transformers`` (hidden 32, 2 layers,
tokenizers of ~200-300 tokens trained with ``tokenizers`` on sentences in six scripts): BERT
(WordPiece, BertForMaskedLM), XLM-R (Unigram, XLMRobertaForMaskedLM) and XLM (XLMWithLMHeadModel with
two languages, XLMTokenizer's vocab.json + merges.txt from tests/helpers.py's XLM checkpoint).

- import: xling's hidden states and LM log-probabilities equal the transformers model's on the same
  sentences (ids mapped through the converted vocabulary, one padded batch) within 1e-4;
- export: ``AutoModel`` / ``AutoModelForMaskedLM.from_pretrained(exported)`` equal xling within 1e-4
  (post-norm xling -> XLM or BERT, pre-norm -> RoBERTa-PreLayerNorm or XLM-R XL, language ids as
  XLM's ``langs`` / ``token_type_ids``), and ``AutoTokenizer`` gives xling's ids;
- bad input: one-line XlingErrors.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import hf_xlm, hf_xlm_tokenizer, write_xlm_model

from xling.cli import main
from xling.errors import XlingError
from xling.models.encoder import TransformerEncoder
from xling.tokenization.vocab import Vocab

TOL = 1e-4
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
TEXTS = [  # training text of the tiny tokenizers: six scripts
    "The old man reads a book by the river today.", "In the beginning God created the heaven and the earth.",
    "Le vieil homme lit un livre au bord de la rivière.", "Au commencement, Dieu créa les cieux et la terre.",
    "Старик читает книгу у реки сегодня.", "В начале сотворил Бог небо и землю.",
    "老人今天在河边读书。", "起初神创造天地。",
    "الرجل العجوز يقرأ كتابا عند النهر اليوم.", "في البدء خلق الله السماوات والأرض.",
    "बूढ़ा आदमी आज नदी के किनारे किताब पढ़ता है।", "आदि में परमेश्वर ने आकाश और पृथ्वी की सृष्टि की।",
    "Ο γέρος διαβάζει ένα βιβλίο δίπλα στο ποτάμι.",
]
SAMPLES = [  # what the models are compared on: seen and unseen words, every script, different lengths
    "The old man reads.", "Le livre de Dieu, au bord de la terre !", "Старик читает книгу.", "老人读书。",
    "الرجل يقرأ", "आदमी किताब पढ़ता है।", "Ο γέρος", "A river of unseen words: xylophone, 東京, Ωμέγα.",
]
LANGS = ["ar", "el", "en", "fr", "hi", "ru", "zh"]


def _bert_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer, wp.pre_tokenizer, wp.decoder = (normalizers.BertNormalizer(), pre_tokenizers.BertPreTokenizer(),
                                                   decoders.WordPiece())
    wp.train_from_iterator(TEXTS * 3, trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    return wp


def _xlmr_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    ug = Tokenizer(models.Unigram())
    ug.normalizer, ug.pre_tokenizer, ug.decoder = normalizers.NFKC(), pre_tokenizers.Metaspace(), decoders.Metaspace()
    ug.train_from_iterator(TEXTS * 3, trainers.UnigramTrainer(
        vocab_size=250, unk_token="<unk>", special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    return ug


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """family -> a tiny Hugging Face masked-LM directory (weights, config, tokenizer files)."""
    from transformers import (BertConfig, BertForMaskedLM, BertTokenizerFast, XLMRobertaConfig,
                              XLMRobertaForMaskedLM, XLMRobertaTokenizerFast)

    d = tmp_path_factory.mktemp("hf_in")
    torch.manual_seed(0)
    wp = _bert_tokenizer()
    BertForMaskedLM(BertConfig(vocab_size=wp.get_vocab_size() + 3, max_position_embeddings=64, type_vocab_size=2,
                               **SIZES)).save_pretrained(d / "bert")  # 3 rows more than tokens (padded tables)
    BertTokenizerFast(tokenizer_object=wp).save_pretrained(d / "bert")
    ug = _xlmr_tokenizer()
    XLMRobertaForMaskedLM(XLMRobertaConfig(vocab_size=ug.get_vocab_size(), max_position_embeddings=50, pad_token_id=1,
                                           **SIZES)).save_pretrained(d / "xlmr")
    XLMRobertaTokenizerFast(tokenizer_object=ug).save_pretrained(d / "xlmr")
    rec = write_xlm_model(d / "xlm_orig", kind="mlm", d_model=32, layers=2, seed=3, legacy_format=False)
    ckpt = torch.load(rec["checkpoint"], weights_only=False)
    ref = hf_xlm(ckpt["model"], ckpt["params"])
    ref.config.id2lang, ref.config.lang2id = ckpt["params"]["id2lang"], ckpt["params"]["lang2id"]
    ref.save_pretrained(d / "xlm")
    hf_xlm_tokenizer(rec["words"], rec["codes"], ckpt["params"], True, d / "xlm").save_pretrained(d / "xlm")
    return {"bert": d / "bert", "xlmr": d / "xlmr", "xlm": d / "xlm"}


@pytest.fixture(scope="module")
def imported(hf_dirs, tmp_path_factory):
    """family -> the xling directory ``xling convert hf`` wrote."""
    d = tmp_path_factory.mktemp("hf_out")
    for name, src in hf_dirs.items():
        langs = [] if name == "xlm" else ["--langs", ",".join(LANGS)]
        assert main(["convert", "hf", "--input", str(src), "--out", str(d / name), *langs]) == 0
    return {name: d / name for name in hf_dirs}


def hf_batch(tokenizer, texts):
    """(HF ids, attention mask) of ``texts`` as the tokenizer feeds them (padded right)."""
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"].bool()


def xling_batch(vocab, rows, texts, lang=None):
    """(xling ids ``<s> x </s>`` padded with 0, the same sentences in the original ids, real mask)."""
    ids = [[vocab.bos_id, *vocab.encode(t, lang), vocab.eos_id] for t in texts]
    T = max(map(len, ids))
    xl = torch.zeros(len(ids), T, dtype=torch.long)
    for b, x in enumerate(ids):
        xl[b, :len(x)] = torch.tensor(x)
    real = xl != 0
    orig = torch.tensor(rows)[xl]
    return xl, orig, real


def max_logprob_diff(xl_logits, ref_logits, rows, real, skip=()) -> float:
    """Max |difference| of log-probabilities over every original row (under its xling id) at real positions."""
    a = F.log_softmax(xl_logits.double(), -1)[real]
    b = F.log_softmax(ref_logits.double(), -1)[real]
    keep = [i for i in range(len(rows)) if i not in skip]
    return float((a[:, keep] - b[:, [rows[i] for i in keep]]).abs().max())


@pytest.mark.parametrize("family", ["bert", "xlmr"])
def test_import_matches_transformers(hf_dirs, imported, family, one_thread):
    """Hidden states and MLM log-probabilities of the imported model equal the transformers model's on
    the tokenizer's own padded batch ([CLS] x [SEP] / <s> x </s>), token by token."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = TransformerEncoder.from_pretrained(imported[family]).eval()
    vocab = Vocab.load(imported[family])
    ref = AutoModelForMaskedLM.from_pretrained(hf_dirs[family]).eval()
    ids, real = hf_batch(AutoTokenizer.from_pretrained(hf_dirs[family]), SAMPLES)
    xl, orig, xl_real = xling_batch(vocab, vocab.rows, SAMPLES)
    assert torch.equal(orig[xl_real], ids[real]) and torch.equal(xl_real, real)  # same ids, mapped
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=real.long(), output_hidden_states=True)
        hidden = model(xl)
        logits = model.lm_logits(hidden)
    h = float((hidden - out.hidden_states[-1])[real].abs().max())
    lp = max_logprob_diff(logits, out.logits, vocab.rows, real)
    print(f"{family} import: hidden max|diff| {h:.2e}, log-prob max|diff| {lp:.2e}")
    assert h < TOL and lp < TOL
    assert json.loads((imported[family] / "config.json").read_text())["extra"]["converted"]["lm_head"] == "converted"


def test_import_xlm_matches_transformers(hf_dirs, imported, one_thread):
    """XLMWithLMHeadModel with two languages: XLM's ids (``</s> x </s>``, as XLM fed them) and
    language ids on both sides."""
    from transformers import XLMWithLMHeadModel

    from xling.convert.xlm import vocab_rows

    model = TransformerEncoder.from_pretrained(imported["xlm"]).eval()
    vocab = Vocab.load(imported["xlm"])
    assert vocab.languages == ["en", "fr"] and model.config.use_lang_embeddings
    ref = XLMWithLMHeadModel.from_pretrained(hf_dirs["xlm"]).eval()
    words = json.loads((hf_dirs["xlm"] / "vocab.json").read_text())
    rows = vocab_rows([w for w, _ in sorted(words.items(), key=lambda x: x[1])])[1]
    texts = [("en", SAMPLES[0]), ("fr", SAMPLES[1]), ("en", "the earth and the heaven")]
    xl = [xling_batch(vocab, rows, [t], lang) for lang, t in texts]
    T = max(x[0].shape[1] for x in xl)
    tokens = torch.stack([F.pad(x[0][0], (0, T - x[0].shape[1])) for x in xl])
    real = tokens != 0
    orig = torch.tensor(rows)[tokens].masked_fill(~real, 2)
    langs = torch.tensor([[vocab.lang_id(lang)] * T for lang, _ in texts])
    with torch.no_grad():
        out = ref(input_ids=orig, langs=langs, attention_mask=real.long(), output_hidden_states=True)
        hidden = model(tokens, langs=langs)
        logits = model.lm_logits(hidden)
    h = float((hidden - out.hidden_states[-1])[real].abs().max())
    lp = max_logprob_diff(logits, out.logits, rows, real, skip=(2,))  # xling's <s>: XLM's </s> row, input only
    print(f"xlm import: hidden max|diff| {h:.2e}, log-prob max|diff| {lp:.2e}")
    assert h < TOL and lp < TOL


def test_imported_model_initialises_training(imported):
    """The imported directory is an ordinary xling encoder: an init for model_type seq2seq (XLM init)."""
    from xling.models.seq2seq import TransformerSeq2Seq

    enc = TransformerEncoder.from_pretrained(imported["xlmr"])
    s2s = TransformerSeq2Seq.from_encoder(enc, 1)
    assert torch.equal(s2s.encoder.tok_emb.weight, enc.tok_emb.weight)


# ----------------------------------------------------------------------------- bad input


def test_import_refuses_bad_input(hf_dirs, tmp_path):
    from xling.convert.hf import convert

    def fails(src, match, **kw):
        with pytest.raises(XlingError, match=match) as e:
            convert(src, tmp_path / "out", **kw)
        assert "\n" not in str(e.value)
        assert not (tmp_path / "out").exists()

    fails(tmp_path / "nope", "no such directory")
    gpt = tmp_path / "gpt2"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    fails(gpt, r"'gpt2' is not supported \(supported: bert, roberta, xlm-roberta")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((hf_dirs["bert"] / "config.json").read_text())
    (bare / "pytorch_model.bin").write_bytes(b"pickle")
    fails(bare, "no model.safetensors .*pickled")
    fails(hf_dirs["bert"], "name the languages")
    dec = tmp_path / "dec"
    dec.mkdir()
    for f in hf_dirs["bert"].iterdir():
        (dec / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((dec / "config.json").read_text())
    (dec / "config.json").write_text(json.dumps({**cfg, "is_decoder": True, "hidden_act": "gelu_new"}))
    fails(dec, "not supported: a decoder .*; hidden_act 'gelu_new'", langs=["en"])
    (dec / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 1}))
    fails(dec, "encoder.layer.1.* config.json does not announce", langs=["en"])
    (dec / "config.json").write_text(json.dumps(cfg))
    (dec / "tokenizer.json").unlink()
    fails(dec, "tokenizer.json: no such file", langs=["en"])


# ----------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def xling_vocab(tmp_path_factory):
    """A native xling vocabulary (SentencePiece unigram, byte fallback) over English, French and TEXTS."""
    from helpers import bible_texts

    from xling.tokenization.vocab import train_vocab

    bible = bible_texts(tmp_path_factory.mktemp("bible") / "corpus")
    texts = {**bible, **{lang: [t] * 5 for lang, t in zip(["ru", "zh", "ar", "hi", "el"], TEXTS[4::2] + TEXTS[-1:])}}
    return train_vocab(texts, tmp_path_factory.mktemp("vocab"), vocab_size=500)


EXPORTS = {  # xling encoder settings -> the Hugging Face model_type they export to
    "roberta-prelayernorm": dict(),  # xling's defaults
    "xlm-roberta-xl": dict(emb_norm=False, positions="sinusoidal", tie_embeddings=False),
    "bert": dict(pre_norm=False, position_offset=2, layer_norm_eps=1e-12),
    "xlm": dict(pre_norm=False, lm_transform=False, activation="relu", d_ff=128),
}


@pytest.fixture(scope="module")
def exported(xling_vocab, tmp_path_factory):
    """model_type -> (the xling directory, the exported Hugging Face directory)."""
    from xling.models.config import EncoderConfig

    d = tmp_path_factory.mktemp("to_hf")
    out = {}
    for seed, (name, options) in enumerate(EXPORTS.items()):
        torch.manual_seed(seed)
        cfg = dict(vocab_size=len(xling_vocab), n_langs=len(xling_vocab.languages), d_model=32, n_layers=2, n_heads=4,
                   d_ff=64, max_positions=48, dropout=0.0, attn_dropout=0.0)
        model = TransformerEncoder(EncoderConfig(**{**cfg, **options}))
        with torch.no_grad():  # norms and biases away from 1 / 0: a misplaced one shows
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        model.save_pretrained(d / name, vocab=xling_vocab)
        assert main(["convert", "to-hf", "--input", str(d / name), "--out", str(d / f"{name}_hf")]) == 0
        out[name] = (d / name, d / f"{name}_hf")
    return out


@pytest.mark.parametrize("name", list(EXPORTS))
def test_export_matches_xling(exported, name, one_thread):
    """AutoModel / AutoModelForMaskedLM of the export equal xling (language ids given as the README says),
    and AutoTokenizer gives xling's ids, ``<s> x </s>``, on text in seven scripts."""
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

    src, dst = exported[name]
    assert AutoConfig.from_pretrained(dst).model_type == name
    model = TransformerEncoder.from_pretrained(src).eval()
    vocab = Vocab.load(src)
    texts = SAMPLES + ["  two  spaces ", "ŋ unseen ✓ bytes"]
    ids, real = hf_batch(AutoTokenizer.from_pretrained(dst), texts)
    xl, _, xl_real = xling_batch(vocab, list(range(len(vocab))), texts)
    assert torch.equal(ids.masked_fill(~real, 0), xl) and torch.equal(real, xl_real)
    assert AutoTokenizer.from_pretrained(dst).decode(ids[1], skip_special_tokens=True) == texts[1]
    langs = torch.tensor([[i % len(vocab.languages)] * xl.shape[1] for i in range(len(texts))])
    key = "langs" if name == "xlm" else "token_type_ids"
    with torch.no_grad():
        hidden = model(xl, langs=langs)
        logits = model.lm_logits(hidden)
        base = AutoModel.from_pretrained(dst).eval()(input_ids=ids, attention_mask=real.long(), **{key: langs})
        mlm = AutoModelForMaskedLM.from_pretrained(dst).eval()(input_ids=ids, attention_mask=real.long(),
                                                               **{key: langs})
    h = float((hidden - base.last_hidden_state)[real].abs().max())
    lg = float((logits - mlm.logits)[real].abs().max())
    print(f"export {name}: hidden max|diff| {h:.2e}, logits max|diff| {lg:.2e}")
    assert h < TOL and lg < TOL


@pytest.mark.parametrize("family", ["bert", "xlmr"])
def test_import_export_round_trip(hf_dirs, imported, tmp_path, family, one_thread):
    """An imported model exported again: its own tokenizer and ids, the original model's MLM logits."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    assert main(["convert", "to-hf", "--input", str(imported[family]), "--out", str(tmp_path / "back")]) == 0
    ids, real = hf_batch(AutoTokenizer.from_pretrained(hf_dirs[family]), SAMPLES)
    again, _ = hf_batch(AutoTokenizer.from_pretrained(tmp_path / "back"), SAMPLES)
    assert torch.equal(ids, again)
    with torch.no_grad():
        a = AutoModelForMaskedLM.from_pretrained(hf_dirs[family]).eval()(input_ids=ids, attention_mask=real.long())
        b = AutoModelForMaskedLM.from_pretrained(tmp_path / "back").eval()(input_ids=ids, attention_mask=real.long())
    n = a.logits.shape[-1]
    assert b.logits.shape[-1] == n
    assert float((a.logits - b.logits)[real].abs().max()) < TOL


def test_xlm_round_trip(hf_dirs, imported, tmp_path, one_thread):
    """A converted XLM goes back to XLMWithLMHeadModel with XLMTokenizer's files and ids."""
    from transformers import AutoTokenizer, XLMWithLMHeadModel

    assert main(["convert", "to-hf", "--input", str(imported["xlm"]), "--out", str(tmp_path / "back")]) == 0
    texts = [SAMPLES[0], "the earth and the heaven"]
    a_tok, b_tok = AutoTokenizer.from_pretrained(hf_dirs["xlm"]), AutoTokenizer.from_pretrained(tmp_path / "back")
    ids = [a_tok._tokenize(t, lang="en") for t in texts]
    assert ids == [b_tok._tokenize(t, lang="en") for t in texts]
    enc = a_tok(texts, padding=True, return_tensors="pt")
    assert torch.equal(enc["input_ids"], b_tok(texts, padding=True, return_tensors="pt")["input_ids"])
    langs = torch.ones_like(enc["input_ids"])
    with torch.no_grad():
        a = XLMWithLMHeadModel.from_pretrained(hf_dirs["xlm"]).eval()(**enc, langs=langs)
        b = XLMWithLMHeadModel.from_pretrained(tmp_path / "back").eval()(**enc, langs=langs)
    real = enc["attention_mask"].bool()
    assert float((a.logits - b.logits)[real].abs().max()) < TOL


def test_export_refuses_bad_input(imported, xling_vocab, tmp_path):
    from xling.convert.to_hf import export
    from xling.models.config import EncoderConfig, Seq2SeqConfig
    from xling.models.seq2seq import TransformerSeq2Seq

    def fails(src, match):
        with pytest.raises(XlingError, match=match) as e:
            export(src, tmp_path / "out")
        assert "\n" not in str(e.value)
        assert not (tmp_path / "out").exists()

    sizes = dict(vocab_size=len(xling_vocab), n_langs=len(xling_vocab.languages), d_model=16, n_layers=1, n_heads=2,
                 d_ff=32, max_positions=16)
    TransformerSeq2Seq(Seq2SeqConfig(**sizes, n_dec_layers=1)).save_pretrained(tmp_path / "s2s", vocab=xling_vocab)
    fails(tmp_path / "s2s", "a transformer_seq2seq cannot be exported to Hugging Face")
    TransformerEncoder(EncoderConfig(**sizes, embed_scale=True, pre_norm=False, emb_norm=False)).save_pretrained(
        tmp_path / "scaled", vocab=xling_vocab)
    fails(tmp_path / "scaled", "no Hugging Face encoder computes this model: embed_scale .*; emb_norm: false")
    plain = TransformerEncoder(EncoderConfig(**sizes, lm_transform=False))
    plain.save_pretrained(tmp_path / "plain", vocab=xling_vocab)
    fails(tmp_path / "plain", "lm_transform: false with pre_norm")
    fails(tmp_path / "nothing", "no such model directory")


def test_xling_export_comes_back(exported, tmp_path, one_thread):
    """to-hf then hf: a pre-norm xling encoder with language embeddings computes what it computed, on xling's ids."""
    src, dst = exported["roberta-prelayernorm"]
    assert main(["convert", "hf", "--input", str(dst), "--out", str(tmp_path / "back")]) == 0
    a, b = TransformerEncoder.from_pretrained(src).eval(), TransformerEncoder.from_pretrained(tmp_path / "back").eval()
    va, vb = Vocab.load(src), Vocab.load(tmp_path / "back")
    assert vb.languages == va.languages and b.config.use_lang_embeddings
    assert [vb.encode(t) for t in SAMPLES] == [va.encode(t) for t in SAMPLES]
    xl, _, real = xling_batch(va, list(range(len(va))), SAMPLES)
    langs = torch.full_like(xl, 3)
    with torch.no_grad():
        ha, hb = a(xl, langs=langs), b(xl, langs=langs)
        assert float((ha - hb)[real].abs().max()) < TOL
        assert float((a.lm_logits(ha) - b.lm_logits(hb))[real].abs().max()) < TOL
