"""Mask builders against hand-worked matrices (1 = may attend)."""

import torch

from xling.models import masks


def M(rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_key_padding():
    tokens = torch.tensor([[7, 8, 9, 0], [5, 0, 0, 0]])
    assert torch.equal(masks.key_padding(tokens, 0), M([[1, 1, 1, 0], [1, 0, 0, 0]]))


def test_bidirectional_causal_right_to_left():
    assert torch.equal(masks.bidirectional(3), M([[1, 1, 1], [1, 1, 1], [1, 1, 1]]))
    assert torch.equal(
        masks.causal(4),
        M([[1, 0, 0, 0],
           [1, 1, 0, 0],
           [1, 1, 1, 0],
           [1, 1, 1, 1]]),
    )
    assert torch.equal(
        masks.right_to_left(4),
        M([[1, 1, 1, 1],
           [0, 1, 1, 1],
           [0, 0, 1, 1],
           [0, 0, 0, 1]]),
    )


def test_causal_with_cache_offset():
    # 2 new queries after 3 cached positions: query 0 is position 3, query 1 is position 4.
    assert torch.equal(masks.causal(2, past=3), M([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]))


def test_seq2seq():
    out = masks.seq2seq(torch.tensor([2, 4]), 5)
    expected0 = M([[1, 1, 0, 0, 0],   # source sees source only
                   [1, 1, 0, 0, 0],
                   [1, 1, 1, 0, 0],   # target sees source + target up to itself
                   [1, 1, 1, 1, 0],
                   [1, 1, 1, 1, 1]])
    expected1 = M([[1, 1, 1, 1, 0],
                   [1, 1, 1, 1, 0],
                   [1, 1, 1, 1, 0],
                   [1, 1, 1, 1, 0],
                   [1, 1, 1, 1, 1]])
    assert out.shape == (2, 5, 5)
    assert torch.equal(out[0], expected0)
    assert torch.equal(out[1], expected1)


def test_combine_padding_and_empty_rows():
    key_pad = M([[1, 1, 1, 0], [0, 1, 1, 1]])  # last token padded; first token padded
    out = masks.combine(masks.causal(4), key_pad)
    expected0 = M([[1, 0, 0, 0],
                   [1, 1, 0, 0],
                   [1, 1, 1, 0],
                   [0, 0, 0, 1]])  # padded query attends only to itself
    expected1 = M([[1, 0, 0, 0],   # padded query: itself
                   [0, 1, 0, 0],   # padded key 0 removed
                   [0, 1, 1, 0],
                   [0, 1, 1, 1]])
    assert torch.equal(out[0], expected0)
    assert torch.equal(out[1], expected1)
    # None = bidirectional
    out = masks.combine(None, M([[1, 1, 0]]))
    assert torch.equal(out[0], M([[1, 1, 0], [1, 1, 0], [0, 0, 1]]))
    # a (B, T, T) mask with an empty row for a real query falls back to itself
    custom = torch.zeros(1, 3, 3, dtype=torch.bool)
    custom[0, 0, 1] = True
    out = masks.combine(custom, M([[1, 1, 1]]))
    assert torch.equal(out[0], M([[0, 1, 0], [0, 1, 0], [0, 0, 1]]))


def test_combine_with_cache_queries_are_last_keys():
    key_pad = M([[1, 1, 1, 0]])  # 2 cached + 2 new positions, the last one padded
    out = masks.combine(masks.causal(2, past=2), key_pad)
    assert torch.equal(out[0], M([[1, 1, 1, 0], [0, 0, 0, 1]]))


def test_cross():
    src_pad = M([[1, 1, 0], [0, 0, 0]])
    out = masks.cross(2, src_pad)
    assert torch.equal(out[0], M([[1, 1, 0], [1, 1, 0]]))
    assert torch.equal(out[1], M([[1, 0, 0], [1, 0, 0]]))  # all-padding source: position 0
    assert torch.equal(src_pad, M([[1, 1, 0], [0, 0, 0]]))  # input untouched


def test_no_nan_with_combined_masks():
    q = torch.randn(2, 1, 4, 8)
    key_pad = M([[1, 1, 0, 0], [0, 0, 0, 0]])  # second sequence entirely padding
    for base in (None, masks.causal(4), masks.right_to_left(4), masks.seq2seq(torch.tensor([1, 2]), 4)):
        mask = masks.combine(base, key_pad)[:, None]
        assert mask.any(-1).all()
        y = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)
        assert not y.isnan().any()
