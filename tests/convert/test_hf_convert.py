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


def hf_batch(tokenizer, texts, xlm_rows=None):
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

    model = TransformerEncoder.from_pretrained(imported["xlm"]).eval()
    vocab = Vocab.load(imported["xlm"])
    assert vocab.languages == ["en", "fr"] and model.config.use_lang_embeddings
    ref = XLMWithLMHeadModel.from_pretrained(hf_dirs["xlm"]).eval()
    from xling.convert.xlm import vocab_rows
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
