"""The README.md of an exported directory (:mod:`xling.export.onnx`): what goes in, what comes
out, how texts become ``tokens``, and a Python example that needs only onnxruntime, numpy and
sentencepiece (for a plain SentencePiece vocabulary; others name xling's tokenizer)."""

from __future__ import annotations

from typing import Any

_TOKENS = '''

def tokens(texts):
    """<s> x </s> rows (x: the pieces of a text, cut to max_len), right-padded: (B, S) int64."""
    rows = [[cfg["bos_id"], *sp.encode(t)[: cfg["max_len"]], cfg["eos_id"]] for t in texts]
    out = np.full((len(rows), max(map(len, rows))), cfg["pad_id"], dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
'''


def _example(cfg: dict[str, Any], name: str) -> str:
    """The Python example: ``embed(texts, lang)`` or ``classify(texts, lang[, texts_b])``."""
    names = [i["name"] for i in cfg["inputs"]]
    lang = cfg["languages"][0]
    head = (f'import json\nfrom pathlib import Path\n\nimport numpy as np\nimport onnxruntime as ort\n'
            f'import sentencepiece as spm\n\nMODEL = Path("{name}")  # this directory\n'
            'cfg = json.loads((MODEL / "onnx_config.json").read_text(encoding="utf-8"))\n'
            'sp = spm.SentencePieceProcessor(model_file=str(MODEL / "spm.model"))\n'
            'session = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])\n')
    feeds = ['    if lang not in cfg["languages"]:', '        raise ValueError(f"{lang}: not one of {cfg[\'languages\']}")',
             '    feeds = {"tokens": tokens(texts)}']
    if "tokens_b" in names:
        feeds.append('    feeds["tokens_b"] = tokens(texts_b)')
    if "lang_ids" in names:
        feeds.append('    feeds["lang_ids"] = np.full(len(texts), cfg["lang_ids"][lang], dtype=np.int64)')
    if cfg["kind"] == "sentence_encoder":
        body = ["", "", "def embed(texts, lang):", '    """Unit-length sentence embeddings (B, D) float32."""', *feeds,
                '    x = session.run(["embeddings"], feeds)[0]  # (B, D)',
                "    return x / np.linalg.norm(x, axis=1, keepdims=True)", "", "",
                f'x = embed(["Hello world.", "Good morning."], "{lang}")', "print(x.shape, x @ x.T)  # cosine similarities"]
    else:
        args = "texts, texts_b, lang" if "tokens_b" in names else "texts, lang"
        demo = '["A sentence."], ["Another one."]' if "tokens_b" in names else '["A sentence."]'
        body = ["", "", f"def classify({args}):", '    """The label of each text (pair) and the probabilities (B, C)."""',
                *feeds, '    logits = session.run(["logits"], feeds)[0]  # (B, C)',
                "    p = np.exp(logits - logits.max(1, keepdims=True))",
                "    p /= p.sum(1, keepdims=True)",
                '    return [cfg["labels"][i] for i in p.argmax(1)], p', "", "",
                f'print(classify({demo}, "{lang}"))']
    return head + _TOKENS + "\n".join(body) + "\n"


def _table(items: list[dict[str, Any]]) -> list[str]:
    lines = ["| name | dtype | shape | meaning |", "|---|---|---|---|"]
    for i in items:
        shape = "(" + ", ".join(map(str, i["shape"])) + ")"
        lines.append(f"| `{i['name']}` | {i['dtype']} | {shape} | {i['what']} |")
    return lines


def readme(cfg: dict[str, Any], name: str) -> str:
    """README.md for the export record ``cfg`` of a directory called ``name``."""
    encoder = "a sentence encoder" if cfg["kind"] == "sentence_encoder" else "a frozen-embedding classifier"
    what = f"{cfg['encoder']} encoder, {cfg['pooling']} pooling, {cfg['dim']}-d embeddings"
    tok = cfg["tokenizer"]
    lines = [
        f"# {name}: {encoder} exported to ONNX by xling", "",
        f"{what}; weights {cfg['weights']}. Exported from `{cfg['source']}` with xling "
        f"{cfg['exported_by']['xling']} (torch {cfg['exported_by']['torch']}, ONNX opset {cfg['opset']}); on the "
        f"check batches onnxruntime differed from PyTorch by at most {cfg['check']['max_abs_diff']:.2g}.", "",
        "## Files", "",
        "- `model.onnx`: the graph (dynamic batch and sequence axes).",
        "- `spm.model`, `vocab.json`: the xling vocabulary (SentencePiece model; the language-id table).",
        "- `onnx_config.json`: what this README says, for programs: inputs, outputs, special ids, `max_len`, "
        "languages, `lang_ids`, labels, and the sha256 of every file (xling checks them when it loads the directory).",
        "", "## Inputs", "", *_table(cfg["inputs"]), "",
        "## Outputs", "", *_table(cfg["outputs"]), "",
        "## From text to `tokens`", "",
        f"1. Split the text into pieces with `spm.model` (SentencePiece ids{', after the normalize steps ' + str(tok['normalize']) if tok['normalize'] else ''}).",
        f"2. Keep the first `max_len` = {cfg['max_len']} pieces.",
        f"3. Add `<s>` (`bos_id` = {cfg['bos_id']}) first and `</s>` (`eos_id` = {cfg['eos_id']}) last.",
        f"4. Right-pad the rows of a batch with `<pad>` (`pad_id` = {cfg['pad_id']}). Padding never changes a "
        "row's output, so any batching gives the same vectors.", "",
        f"Languages it was trained on: {', '.join(cfg['languages'])}. "
        + ("The graph takes the language of each row (`lang_ids`, from the `lang_ids` table). " if any(
            i["name"] == "lang_ids" for i in cfg["inputs"]) else "The graph takes no language id. ")
        + "xling gives an empty or whitespace-only text a zero vector without running the graph.", "",
    ]
    if cfg["kind"] == "frozen_classifier":
        lines += [f"Labels (logit columns, in order): {', '.join(cfg['labels'])}. "
                  + ("Inputs are (premise, hypothesis) pairs. " if cfg["pair"] else "")
                  + ("The embeddings are L2-normalised inside the graph, as the head was trained." if cfg["normalize"]
                     else ""), ""]
    lines += ["## Python, with onnxruntime and sentencepiece only", ""]
    if tok["backend"] == "spm" and not tok["normalize"]:
        lines += ["```python", _example(cfg, name).rstrip("\n"), "```", ""]
    else:
        lines += [f"This vocabulary is {tok['backend']} with normalize steps {tok['normalize']}: tokenize with "
                  "xling's `Vocab.load(dir).encode(text, lang)`, then build the rows as above.", ""]
    if cfg["kind"] == "sentence_encoder":
        lines += ["## With xling", "", "The directory is an encoder backend: `--model` takes it.", "", "```bash",
                  f"xling embed --model {name} --lang {cfg['languages'][0]} --input sentences.txt --out x.npy",
                  "```", "", "```python", "from xling.embeddings.backends import load_encoder",
                  f'x = load_encoder("{name}").encode(["Hello world."], "{cfg["languages"][0]}", normalize=True)',
                  "```", ""]
    return "\n".join(lines)
