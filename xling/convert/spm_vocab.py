"""An xling vocabulary from another toolkit's SentencePiece model and token list.

xling's ids are fixed (``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3, ``<mask>`` 4, then the
pieces); fairseq's dictionary orders its tokens by frequency after ``<s> <pad> </s> <unk>``.
:func:`rebuild` rewrites the SentencePiece model with xling's specials first and every other
piece after them in its original order, with its score and type, so text segments exactly as
before; tokens of the foreign list that the SentencePiece model lacks (fairseq's
``madeupword`` padding) are appended as control pieces, never produced by segmentation. It
returns, for every xling id, the row of the foreign embedding table to take, and which ids
the foreign model could not emit (SentencePiece pieces missing from its list: fairseq maps
them to ``<unk>``), so a converter can give those a large negative output bias.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from xling.errors import XlingError
from xling.tokenization.vocab import SPECIAL_TOKENS, Vocab


@dataclass
class VocabMapping:
    vocab: Vocab  # the xling vocabulary
    rows: list[int]  # rows[xling id] = the foreign table row holding its embedding
    absent: list[int]  # xling ids the foreign model has no row of its own for (their rows: the foreign <unk>)


def _proto():
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError as e:  # protobuf missing
        raise XlingError(f"converting a SentencePiece model needs the protobuf package ({e})") from None
    return pb


def rebuild(spm_bytes: bytes, tokens: Sequence[str], specials: Mapping[str, int], languages: Sequence[str],
            where: str = "spm.model") -> VocabMapping:
    """``tokens``: the foreign token list (index = row); ``specials``: the foreign row of each
    xling special (``<pad> <unk> <s> </s>``; ``<mask>`` may be absent and maps to ``<unk>``)."""
    pb = _proto()
    src = pb.ModelProto()
    try:
        src.ParseFromString(spm_bytes)
    except Exception:  # protobuf's DecodeError and friends
        raise XlingError(f"{where}: not a SentencePiece model (corrupt or another format)") from None
    if not len(src.pieces):
        raise XlingError(f"{where}: a SentencePiece model without pieces")
    plain = [p for p in src.pieces if p.type not in (p.CONTROL, p.UNKNOWN)]
    out = pb.ModelProto()
    out.CopyFrom(src)
    del out.pieces[:]
    for name in SPECIAL_TOKENS:
        piece = out.pieces.add()
        piece.piece, piece.score = name, 0.0
        piece.type = piece.UNKNOWN if name == "<unk>" else piece.CONTROL
    for p in plain:
        out.pieces.add().CopyFrom(p)
    have = {p.piece for p in out.pieces}
    for tok in tokens:  # foreign-only tokens: kept (their rows count in the softmax), never segmented to
        if tok not in have:
            piece = out.pieces.add()
            piece.piece, piece.score, piece.type = tok, 0.0, piece.CONTROL
            have.add(tok)
    t = out.trainer_spec
    t.pad_id, t.unk_id, t.bos_id, t.eos_id = 0, 1, 2, 3
    t.pad_piece, t.unk_piece, t.bos_piece, t.eos_piece = SPECIAL_TOKENS[:4]
    t.vocab_size = len(out.pieces)
    index = {tok: i for i, tok in enumerate(tokens)}
    unk = specials["<unk>"]
    rows, absent = [], []
    for i, p in enumerate(out.pieces):
        if p.piece in SPECIAL_TOKENS:
            rows.append(specials.get(p.piece, unk))
            if p.piece not in specials:
                absent.append(i)
        elif p.piece in index:
            rows.append(index[p.piece])
        else:
            rows.append(unk)
            absent.append(i)
    vocab = Vocab(out.SerializeToString(), list(languages), {"converted_from": where}, source=where)
    return VocabMapping(vocab, rows, absent)
