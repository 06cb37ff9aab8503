"""Sampling parameters and logits processors: validation, and parity with transformers'
processors row by row and for batches with per-row settings."""

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from modeling.sampling import SamplingParams, process_logits, select_tokens

# ----------------------------------------------------------------------------------------------
# SamplingParams validation


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.5, "temperature must be >= 0"),
        ("temperature", float("nan"), "temperature must be finite"),
        ("top_p", 0.0, r"top_p must be in \(0, 1\]"),
        ("top_p", 1.5, r"top_p must be in \(0, 1\]"),
        ("top_k", -1, "top_k must be >= 0"),
        ("top_k", 2.5, "top_k must be an integer"),
        ("repetition_penalty", 0.0, "repetition_penalty must be > 0"),
        ("num_beams", 0, "num_beams must be >= 1"),
        ("max_new_tokens", 0, "max_new_tokens must be between 1 and"),
        ("max_new_tokens", 10**9, "max_new_tokens must be between 1 and"),
        ("max_new_tokens", True, "max_new_tokens must be an integer"),
        ("early_stopping", "sometimes", "early_stopping must be"),
        ("stop_token_ids", ("7",), "stop_token_ids must be non-negative ints"),
        ("stop_token_ids", (-3,), "stop_token_ids must be non-negative ints"),
        ("stop_strings", ("",), "must not contain an empty string"),
        ("stop_strings", "###", "wrap a single string in a list"),
        ("stop_strings", (5,), "stop_strings must contain strings"),
        ("seed", -1, "seed must be in"),
        ("do_sample", "yes", "do_sample must be true or false"),
    ],
)
def test_invalid_sampling_params_raise_a_clear_value_error(field, value, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**{field: value}).validate()


def test_beam_search_with_sampling_is_rejected_as_unsupported():
    with pytest.raises(ValueError, match="beam search with sampling .* not supported"):
        SamplingParams(num_beams=4, do_sample=True).validate()


def test_sampling_params_from_dict_rejects_unknown_keys_and_round_trips():
    with pytest.raises(ValueError, match="unknown sampling parameter.*temprature"):
        SamplingParams.from_dict({"temprature": 0.7})
    p = SamplingParams.from_dict({"temperature": 0.7, "stop_strings": ["\n\n"], "seed": 3})
    assert p.stop_strings == ("\n\n",)
    assert SamplingParams.from_dict(p.to_dict()) == p


# ----------------------------------------------------------------------------------------------
# Logits processors against transformers


def hf_processors(p: SamplingParams) -> LogitsProcessorList:
    procs = LogitsProcessorList()
    if p.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(p.repetition_penalty))
    if p.temperature != 1.0:
        procs.append(TemperatureLogitsWarper(p.temperature))
    if p.top_k:
        procs.append(TopKLogitsWarper(p.top_k))
    if p.top_p < 1.0:
        procs.append(TopPLogitsWarper(p.top_p))
    return procs


PROCESSOR_CASES = [
    SamplingParams(do_sample=True, repetition_penalty=1.3),
    SamplingParams(do_sample=True, repetition_penalty=0.7),
    SamplingParams(do_sample=True, temperature=0.6),
    SamplingParams(do_sample=True, top_k=5),
    SamplingParams(do_sample=True, top_p=0.8),
    SamplingParams(do_sample=True, top_p=0.05),
    SamplingParams(do_sample=True, temperature=1.7, top_k=12, top_p=0.9, repetition_penalty=1.2),
    SamplingParams(do_sample=True, temperature=0.5, top_k=80, top_p=0.6, repetition_penalty=2.0),
]


@pytest.mark.parametrize("params", PROCESSOR_CASES, ids=lambda p: repr(p)[15:80])
def test_process_logits_matches_transformers_processors(params):
    torch.manual_seed(0)
    logits = torch.randn(4, 64) * 4  # (B, V)
    ids = torch.randint(0, 64, (4, 12))  # (B, L) prompt + generated so far
    expected = hf_processors(params)(ids, logits.clone())
    got = process_logits(logits, ids, params)
    assert torch.equal(got.isinf(), expected.isinf())
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_per_row_params_match_one_row_at_a_time_and_transformers():
    torch.manual_seed(1)
    logits = torch.randn(len(PROCESSOR_CASES) + 1, 64) * 4
    rows = [*PROCESSOR_CASES, SamplingParams(repetition_penalty=1.5)]  # last row is greedy
    ids = [torch.randint(0, 64, (n,)).tolist() for n in range(3, 3 + len(rows))]  # ragged
    batched = process_logits(logits, ids, rows)
    for b, p in enumerate(rows):
        alone = process_logits(logits[b : b + 1], [ids[b]], p)[0]
        torch.testing.assert_close(batched[b], alone, rtol=0, atol=1e-6)
        procs = (
            hf_processors(p)
            if p.do_sample
            else hf_processors(SamplingParams(**{"repetition_penalty": p.repetition_penalty}))
        )
        expected = procs(torch.tensor([ids[b]]), logits[b : b + 1].clone())[0]
        assert torch.equal(batched[b].isinf(), expected.isinf())
        torch.testing.assert_close(batched[b], expected, rtol=0, atol=1e-6)


def test_greedy_rows_get_no_warpers_and_pick_the_argmax():
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0]])
    p = SamplingParams(temperature=0.3, top_k=1, top_p=0.1)  # do_sample False: warpers off
    assert torch.equal(process_logits(logits, None, p), logits)
    assert select_tokens(logits, p).tolist() == [1]
