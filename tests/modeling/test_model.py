"""The Transformer and its KV cache: cached decoding must equal recomputing from scratch."""

import math

import pytest
import torch
import torch.nn.functional as F

from modeling.model import ModelConfig, Transformer

TOL = 1e-5


def tiny(family: str, **kw) -> Transformer:
    torch.manual_seed(0)
    base = dict(family=family, vocab_size=97, block_size=64, n_layer=2, n_head=4, n_embd=32)
    if family == "llama":
        base.update(n_kv_head=2, qkv_bias=True)
    model = Transformer(ModelConfig(**{**base, **kw})).eval()
    with torch.no_grad():  # non-trivial biases and norm weights
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


FAMILIES = pytest.mark.parametrize("family", ["gpt2", "llama"])


def full_logits(model, ids: list[int]) -> torch.Tensor:
    """Logits of the last token of `ids`, computed without a cache. (V,)"""
    with torch.no_grad():
        return model(torch.tensor([ids]))[0][0, -1]


@FAMILIES
def test_kv_cache_decoding_matches_full_recompute(family):
    model = tiny(family)
    seq = [3, 14, 15, 92, 65, 35, 8]
    cache = model.new_cache(1, 32)
    with torch.no_grad():
        logits, _ = model(torch.tensor([seq]), cache=cache)
        for _ in range(6):
            assert torch.allclose(logits[0, -1], full_logits(model, seq), atol=TOL)
            seq.append(int(logits[0, -1].argmax()))
            logits, _ = model(torch.tensor([seq[-1:]]), cache=cache)
        # a multi-token chunk appended to a non-empty cache (causal within the chunk)
        chunk = [21, 22, 23]
        logits, _ = model(torch.tensor([chunk]), cache=cache)
        for t in range(3):
            assert torch.allclose(logits[0, t], full_logits(model, seq + chunk[: t + 1]), atol=TOL)
    assert cache.lengths.tolist() == [len(seq) + 3]


@FAMILIES
def test_ragged_batch_with_right_padding_matches_each_row_alone(family):
    model = tiny(family)
    rows = [[5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18], [19, 20, 21]]
    T = max(map(len, rows))
    idx = torch.tensor([r + [0] * (T - len(r)) for r in rows])
    valid = torch.tensor([len(r) for r in rows])
    cache = model.new_cache(3, 40)
    with torch.no_grad():
        logits, _ = model(idx, cache=cache, valid_lengths=valid)
        for b, r in enumerate(rows):
            assert torch.allclose(logits[b, len(r) - 1], full_logits(model, r), atol=TOL)
        last, _ = model(idx, cache=model.new_cache(3, 40), valid_lengths=valid, last_only=True)
        assert torch.allclose(last[:, 0], logits[torch.arange(3), valid - 1], atol=TOL)
        assert cache.lengths.tolist() == valid.tolist()

        # one decode step, every row at its own position
        step = [[30], [31], [32]]
        logits, _ = model(torch.tensor(step), cache=cache)
        rows = [r + s for r, s in zip(rows, step)]
        for b, r in enumerate(rows):
            assert torch.allclose(logits[b, 0], full_logits(model, r), atol=TOL)

        # append a ragged chunk of several tokens (e.g. the next user turn)
        chunk = [[40, 41, 42], [43, 0, 0], [44, 45, 0]]
        logits, _ = model(torch.tensor(chunk), cache=cache, valid_lengths=torch.tensor([3, 1, 2]))
        for b, (r, c, n) in enumerate(zip(rows, chunk, [3, 1, 2])):
            for t in range(n):
                assert torch.allclose(logits[b, t], full_logits(model, r + c[: t + 1]), atol=TOL)
    assert cache.lengths.tolist() == [9, 11, 6]


@FAMILIES
def test_copy_row_from_inserts_a_prefilled_row_into_a_running_batch(family):
    model = tiny(family)
    batch = model.new_cache(3, 32)
    a, b = [1, 2, 3, 4], [9, 8, 7, 6, 5, 4]
    with torch.no_grad():
        model(
            torch.tensor([a + [0, 0], b, [0] * 6]),
            cache=batch,
            valid_lengths=torch.tensor([4, 6, 1]),
        )
        single = model.new_cache(1, 16)
        c = [11, 12, 13, 14, 15, 16, 17]
        model(torch.tensor([c]), cache=single)
        batch.copy_row_from(2, single, 0)
        batch.reset_row(1)  # row 1 leaves; a fresh one-token row takes its place
        logits, _ = model(torch.tensor([[50], [51], [52]]), cache=batch)
    for i, ids in enumerate([a + [50], [51], c + [52]]):
        assert torch.allclose(logits[i, 0], full_logits(model, ids), atol=TOL)
    assert batch.lengths.tolist() == [5, 1, 8]


@FAMILIES
def test_reorder_keeps_and_duplicates_rows_for_beam_search(family):
    model = tiny(family)
    rows = [[1, 2, 3], [4, 5, 6, 7, 8]]
    cache = model.new_cache(2, 16)
    with torch.no_grad():
        model(
            torch.tensor([rows[0] + [0, 0], rows[1]]),
            cache=cache,
            valid_lengths=torch.tensor([3, 5]),
        )
        cache.reorder(torch.tensor([1, 1, 0]))
        logits, _ = model(torch.tensor([[20], [21], [22]]), cache=cache)
    for i, ids in enumerate([rows[1] + [20], rows[1] + [21], rows[0] + [22]]):
        assert torch.allclose(logits[i, 0], full_logits(model, ids), atol=TOL)


@FAMILIES
def test_right_padding_without_cache_leaves_real_positions_unchanged(family):
    model = tiny(family)
    ids = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(0))
    padded = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a, _ = model(ids)
        b, _ = model(padded)
    assert torch.allclose(a, b[:, :10], atol=TOL)


def test_loss_is_mean_cross_entropy_over_non_ignored_targets():
    model = tiny("llama")
    idx = torch.randint(0, 97, (2, 8), generator=torch.Generator().manual_seed(0))
    targets = idx.roll(-1, dims=1)
    targets[:, :3] = -100
    logits, loss = model(idx, targets)
    want = F.cross_entropy(logits[:, 3:].reshape(-1, 97), targets[:, 3:].reshape(-1))
    assert torch.allclose(loss, want)
    loss.backward()
    assert model.transformer.wte.weight.grad.abs().sum() > 0


def test_cache_overflow_and_too_long_sequences_raise():
    model = tiny("gpt2")
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))
    cache = model.new_cache(1, 4)
    with pytest.raises(ValueError, match="overflow"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_gpt2_124m_parameter_count_and_flops():
    with torch.device("meta"):
        model = Transformer(
            ModelConfig(family="gpt2", vocab_size=50257, n_layer=12, n_head=12, n_embd=768)
        )
    assert model.num_params() == 124_439_808  # the published GPT-2 small count
    assert model.num_params(non_embedding=True) == 124_439_808 - 1024 * 768
    assert model.flops_per_token(1024) == 6 * 123_653_376 + 12 * 12 * 768 * 1024


def test_llama_gqa_shapes_and_untied_head():
    cfg = ModelConfig(family="llama", n_embd=64, n_head=8, n_kv_head=2, tie_embeddings=False)
    model = Transformer(cfg)
    assert model.transformer.h[0].attn.c_attn.weight.shape == ((8 + 2 * 2) * 8, 64)
    assert model.transformer.h[0].mlp.c_fc.weight.shape == (2 * cfg.hidden_dim, 64)
    assert cfg.hidden_dim % 64 == 0
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert model.num_params(non_embedding=True) == model.num_params() - 512 * 64


def test_residual_projections_get_scaled_init():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(family="gpt2", n_layer=8, n_embd=256, n_head=4))
    want = 0.02 / math.sqrt(2 * 8)
    assert abs(model.transformer.h[0].mlp.c_proj.weight.std().item() - want) < 0.1 * want
    assert abs(model.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.002


def test_invalid_configs_are_rejected():
    with pytest.raises(ValueError, match="family"):
        ModelConfig(family="bert")
    with pytest.raises(ValueError, match="n_kv_head"):
        ModelConfig(n_head=4, n_kv_head=3)


def test_padding_of_a_nearly_full_row_does_not_overflow_the_cache():
    model = tiny("llama")
    cache = model.new_cache(2, 10)
    with torch.no_grad():
        model(
            torch.tensor([list(range(1, 10)), [1] + [0] * 8]),
            cache=cache,
            valid_lengths=torch.tensor([9, 1]),
        )
        # row 0 has one free slot; its two padding tokens must not need more
        logits, _ = model(
            torch.tensor([[5, 0, 0], [6, 7, 8]]), cache=cache, valid_lengths=torch.tensor([1, 3])
        )
    assert torch.allclose(logits[0, 0], full_logits(model, list(range(1, 10)) + [5]), atol=TOL)
    assert torch.allclose(logits[1, 2], full_logits(model, [1, 6, 7, 8]), atol=TOL)
    assert cache.lengths.tolist() == [10, 4]


def test_reorder_with_the_same_batch_size_permutes_rows_in_place():
    model = tiny("gpt2")
    rows = [[1, 2, 3], [4, 5, 6, 7, 8], [9, 10]]
    cache = model.new_cache(3, 16)
    with torch.no_grad():
        idx = torch.tensor([r + [0] * (5 - len(r)) for r in rows])
        model(idx, cache=cache, valid_lengths=torch.tensor([3, 5, 2]))
        cache.reorder([2, 0, 0])
        logits, _ = model(torch.tensor([[20], [21], [22]]), cache=cache)
    for i, ids in enumerate([rows[2] + [20], rows[0] + [21], rows[0] + [22]]):
        assert torch.allclose(logits[i, 0], full_logits(model, ids), atol=TOL)
    assert cache.lengths.tolist() == [3, 4, 4]
