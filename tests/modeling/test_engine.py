"""Continuous-batching engine: batching must not change outputs, and rows join/leave correctly.

The reference for every request is `modeling.generate.generate` on the same prompt alone (batch 1,
no padding). The tiny random model has its weights scaled up so its greedy output is varied text
(not one repeated token) and its top-2 logit gaps are far above fp32 batching noise.
"""

import threading

import pytest
import torch

from modeling import engine as engine_mod
from modeling.engine import Delta, Engine, Finished, Request
from modeling.generate import generate
from modeling.model import ModelConfig, Transformer
from modeling.sampling import SamplingParams
from modeling.tokenizer import Tokenizer

TEXTS = [
    f"the quick brown fox {i} jumps over the lazy dog, héllo wörld 😀 {i * 7}" for i in range(100)
]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Tiny matmuls on a shared 2-core machine: a second OpenMP thread only spins and waits
    # (20x slower under load), so these tests run single-threaded.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(TEXTS, vocab_size=320)


def make_model(tokenizer, seed=0, block_size=96):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        family="llama",
        vocab_size=tokenizer.vocab_size,
        block_size=block_size,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        n_embd=64,
    )
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)  # varied greedy text; see module docstring
    return model


@pytest.fixture(scope="module")
def model(tokenizer):
    return make_model(tokenizer)


def prompt(tokenizer, i, n):
    """Prompt i, cut to n tokens (prompts of different lengths for ragged batches)."""
    return tokenizer.encode(TEXTS[i])[:n]


def drain(handle):
    """All events of a handle (drives the engine in sync mode)."""
    events = list(handle)
    assert isinstance(events[-1], Finished)
    assert all(isinstance(e, Delta) for e in events[:-1])
    return events[:-1], events[-1]


@pytest.mark.parametrize("prefill_chunk", [None, 4])
def test_greedy_output_is_identical_alone_and_in_a_batch_with_joins_and_leaves(
    model, tokenizer, prefill_chunk
):
    engine = Engine(model, tokenizer, max_batch_size=3, prefill_chunk=prefill_chunk)
    specs = [(0, 3, 12), (1, 9, 5), (2, 5, 20), (3, 14, 9), (4, 2, 15), (5, 11, 7), (6, 7, 18)]
    handles = []
    for i, (idx, n, max_new) in enumerate(specs):
        p = SamplingParams(max_new_tokens=max_new)
        handles.append(
            (prompt(tokenizer, idx, n), p, engine.submit(Request(prompt(tokenizer, idx, n), p)))
        )
        if i % 2:  # requests arrive while others are mid-decode
            engine.step()
            engine.step()
    moved = 0
    while engine.num_running or engine.num_waiting or engine.num_prefilling:
        slots = {id(s): s.slot for s in engine._rows}
        engine.step()
        moved += sum(1 for s in engine._rows if id(s) in slots and slots[id(s)] != s.slot)
    assert moved > 0, "no row was compacted: the test did not exercise leaving mid-batch"
    for p_ids, p, h in handles:
        deltas, fin = drain(h)
        assert list(fin.token_ids) == generate(model, p_ids, p)
        assert fin.finish_reason == "length"
        assert fin.completion_tokens == p.max_new_tokens
        assert "".join(d.text for d in deltas) == fin.text


def test_long_prompt_is_prefilled_in_chunks_while_running_rows_keep_decoding(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=4, prefill_chunk=4)
    p = SamplingParams(max_new_tokens=30)
    running = engine.submit(Request(prompt(tokenizer, 0, 3), p))
    engine.step()
    long_prompt = prompt(tokenizer, 1, 14)
    late = engine.submit(Request(long_prompt, p))
    tokens_before = running._seq.token_ids.copy()
    for i in range(3):  # 14 tokens in chunks of 4: three steps without a token for `late`
        stats = engine.step()
        assert stats.prefilling == 1
        assert stats.decoded == 1
        assert late._seq.token_ids == []
        assert late.queue_position() == 0
        assert len(running._seq.token_ids) == len(tokens_before) + i + 1
    stats = engine.step()  # last chunk: `late` samples its first token and decodes with the batch
    assert stats.joined == 1
    assert stats.decoded == 2
    assert len(late._seq.token_ids) == 2
    engine.run_until_idle()
    assert list(late.result().token_ids) == generate(model, long_prompt, p)
    assert list(running.result().token_ids) == generate(model, prompt(tokenizer, 0, 3), p)


def test_cancel_during_prefill_frees_the_request(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=2, prefill_chunk=2)
    a = engine.submit(Request(prompt(tokenizer, 2, 12), SamplingParams(max_new_tokens=5)))
    b = engine.submit(Request(prompt(tokenizer, 3, 12), SamplingParams(max_new_tokens=5)))
    c = engine.submit(Request(prompt(tokenizer, 4, 6), SamplingParams(max_new_tokens=5)))
    engine.step()
    assert engine.num_prefilling == 2
    assert c.queue_position() == 1
    a.cancel()
    stats = engine.step()
    assert stats.prefilling == 1
    assert a.result().finish_reason == "cancelled"
    engine.run_until_idle()
    assert list(b.result().token_ids) == generate(model, b._seq.prompt_ids, b._seq.params)
    assert list(c.result().token_ids) == generate(model, c._seq.prompt_ids, c._seq.params)


def test_sampled_output_with_a_seed_is_identical_alone_and_batched(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=8)
    params = [
        SamplingParams(max_new_tokens=16, do_sample=True, temperature=0.8, seed=1),
        SamplingParams(max_new_tokens=12, do_sample=True, top_k=20, seed=2),
        SamplingParams(max_new_tokens=16, do_sample=True, top_p=0.8, temperature=1.3, seed=3),
        SamplingParams(max_new_tokens=10, repetition_penalty=1.5),  # greedy with penalty
        SamplingParams(max_new_tokens=14, do_sample=True, repetition_penalty=1.3, seed=4),
        SamplingParams(max_new_tokens=16),  # plain greedy in the same batch
    ]
    prompts = [prompt(tokenizer, i, 4 + 2 * i) for i in range(len(params))]
    handles = [engine.submit(Request(pr, p)) for pr, p in zip(prompts, params)]
    for pr, p, h in zip(prompts, params, handles):
        assert list(h.result().token_ids) == generate(model, pr, p)
    # and the seed really matters: another seed gives another continuation
    other = engine.submit(Request(prompts[0], SamplingParams(**{**params[0].to_dict(), "seed": 9})))
    assert other.result().token_ids != handles[0].result().token_ids


def test_stop_token_ends_the_request_and_is_not_rendered(model, tokenizer):
    p_ids = prompt(tokenizer, 7, 6)
    ref = generate(model, p_ids, SamplingParams(max_new_tokens=20))
    stop = ref[6]
    first = ref.index(stop)
    engine = Engine(model, tokenizer)
    deltas, fin = drain(
        engine.submit(Request(p_ids, SamplingParams(max_new_tokens=20, stop_token_ids=(stop,))))
    )
    assert fin.finish_reason == "stop"
    assert list(fin.token_ids) == ref[: first + 1]  # the stop token is counted, as HF does
    assert fin.text == tokenizer.decode(ref[:first]).rstrip("\ufffd")  # no half character
    assert "".join(d.text for d in deltas) == fin.text


def test_stop_string_truncates_the_text_and_no_delta_shows_any_of_it(model, tokenizer):
    p_ids = prompt(tokenizer, 8, 5)
    full = tokenizer.decode(generate(model, p_ids, SamplingParams(max_new_tokens=30)))
    stop = full[12:16]
    cut = full.find(stop)
    engine = Engine(model, tokenizer)
    params = SamplingParams(max_new_tokens=30, stop_strings=(stop, "never-appears"))
    deltas, fin = drain(engine.submit(Request(p_ids, params)))
    assert fin.finish_reason == "stop"
    assert fin.text == full[:cut]
    assert "".join(d.text for d in deltas) == fin.text
    assert list(fin.token_ids) == generate(model, p_ids, params, tokenizer=tokenizer)


def test_max_new_tokens_is_clamped_to_the_engine_context(model, tokenizer):
    engine = Engine(model, tokenizer, max_seq_len=20)
    p_ids = prompt(tokenizer, 9, 15)
    fin = engine.submit(Request(p_ids, SamplingParams(max_new_tokens=50))).result()
    assert fin.finish_reason == "length"
    assert fin.completion_tokens == 5
    with pytest.raises(ValueError, match="at most 19"):
        engine.submit(Request(list(range(10, 30))))
    with pytest.raises(ValueError, match="temperature"):
        engine.submit(Request(p_ids, SamplingParams(temperature=-1.0)))


def test_cancel_frees_the_row_at_the_next_step(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=4)
    flag = threading.Event()
    handles = [
        engine.submit(Request(prompt(tokenizer, i, 5), SamplingParams(max_new_tokens=40)))
        for i in range(2)
    ]
    polled = engine.submit(
        Request(
            prompt(tokenizer, 2, 5), SamplingParams(max_new_tokens=40), should_cancel=flag.is_set
        )
    )
    for _ in range(3):
        engine.step()
    assert engine.num_running == 3
    streamed = list(iter(lambda: handles[0].get(timeout=0), None))
    seen = "".join(e.text for e in streamed)
    handles[0].cancel()
    stats = engine.step()
    assert stats.running == 2
    assert engine.num_running == 2
    fin = handles[0].result()
    assert fin.finish_reason == "cancelled"
    assert fin.step == engine.step_count
    assert fin.text == seen  # the saved text is exactly what was streamed
    assert fin.completion_tokens == len(streamed) == 4  # step 1 prefills and decodes

    flag.set()  # the should_cancel callable is polled every step as well
    assert engine.step().running == 1
    assert polled.result().finish_reason == "cancelled"
    assert handles[1].done is False


def test_cancelling_a_waiting_request_removes_it_from_the_queue(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=1)
    hs = [
        engine.submit(Request(prompt(tokenizer, i, 4), SamplingParams(max_new_tokens=8)))
        for i in range(4)
    ]
    engine.step()
    assert [h.queue_position() for h in hs] == [0, 1, 2, 3]
    hs[1].cancel()
    engine.step()
    assert [h.queue_position() for h in hs] == [0, 0, 1, 2]
    assert hs[1].result().finish_reason == "cancelled"
    assert hs[1].result().time_to_first_token is None
    assert hs[1].result().completion_tokens == 0


def test_batch_size_and_token_budget_admit_in_fifo_order(model, tokenizer):
    # budget 60: the 40-token request at the head must wait for room even though the
    # 15-token ones behind it would fit; strict FIFO means nobody overtakes it.
    engine = Engine(model, tokenizer, max_batch_size=3, max_tokens=60)
    small = SamplingParams(max_new_tokens=10)
    a = engine.submit(Request(prompt(tokenizer, 0, 5), small))  # cost 15
    b = engine.submit(Request(prompt(tokenizer, 1, 5), SamplingParams(max_new_tokens=25)))  # 30
    big = engine.submit(Request(prompt(tokenizer, 2, 10), SamplingParams(max_new_tokens=30)))  # 40
    c = engine.submit(Request(prompt(tokenizer, 3, 5), small))  # 15
    assert [h.queue_position() for h in (a, b, big, c)] == [1, 2, 3, 4]
    engine.step()
    assert engine.num_running == 2
    assert engine.tokens_in_use == 45
    assert [h.queue_position() for h in (a, b, big, c)] == [0, 0, 1, 2]
    while not a.done:  # a finishes: 30 in use, big (40) still does not fit
        engine.step()
    engine.step()
    assert big.queue_position() == 1
    assert c.queue_position() == 2
    while not b.done:
        engine.step()
    engine.step()  # b's row is free: big and c are admitted together (40 + 15 <= 60)
    assert big.queue_position() == 0
    assert c.queue_position() == 0
    assert engine.num_running == 2
    engine.run_until_idle()
    assert big.result().time_to_first_token > b.result().time_to_first_token
    with pytest.raises(ValueError, match="budget"):
        engine.submit(Request(list(range(10, 50)), SamplingParams(max_new_tokens=30)))


def test_a_draining_engine_refuses_new_requests_and_finishes_the_ones_it_accepted(tokenizer):
    model = make_model(tokenizer, seed=0)
    engine = Engine(model, tokenizer, version="v1", max_batch_size=2)
    p = SamplingParams(max_new_tokens=12)
    p1, p2, p3 = (prompt(tokenizer, i, 6) for i in range(3))
    accepted = [(engine.submit(Request(pr, p)), pr) for pr in (p1, p2, p2)]  # the third waits
    engine.step()
    assert engine.num_waiting == 1
    engine.stop(drain=True, wait=False)
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(Request(p3, p))
    engine.run_until_idle()
    assert engine.is_idle()
    for h, pr in accepted:
        fin = h.result()
        assert fin.model_version == "v1"
        assert list(fin.token_ids) == generate(model, pr, p)


def test_a_background_engine_stopped_with_drain_finishes_in_flight_requests_then_exits(tokenizer):
    model = make_model(tokenizer, seed=0)
    engine = Engine(model, tokenizer, version="v1").start()
    p = SamplingParams(max_new_tokens=30)
    p1 = prompt(tokenizer, 4, 6)
    in_flight = engine.submit(Request(p1, p))
    assert isinstance(in_flight.get(timeout=10), Delta)
    engine.stop(drain=True, wait=False)
    assert list(in_flight.result(timeout=30).token_ids) == generate(model, p1, p)
    engine._thread.join(timeout=10)
    assert not engine._thread.is_alive()  # the loop exits once drained


def test_32_concurrent_requests_from_threads_all_complete_with_contiguous_text(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=8).start()
    results: dict[int, tuple[list, Finished]] = {}
    errors = []

    def client(i):
        try:
            pr = prompt(tokenizer, i, 3 + i % 9)
            h = engine.submit(
                Request(pr, SamplingParams(max_new_tokens=6 + i % 11), request_id=str(i))
            )
            events = list(h)
            results[i] = (pr, events)
        except Exception as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    engine.stop()
    assert not errors
    assert len(results) == 32
    for i, (pr, events) in results.items():
        *deltas, fin = events
        assert fin.request_id == str(i)
        assert all(d.request_id == str(i) for d in deltas)
        assert [d.index for d in deltas] == list(
            range(1, len(deltas) + 1)
        )  # nothing lost or doubled
        assert "".join(d.text for d in deltas) == fin.text
        assert list(fin.token_ids) == generate(model, pr, SamplingParams(max_new_tokens=6 + i % 11))


def test_an_error_in_one_request_does_not_affect_the_others(model, tokenizer, monkeypatch):
    real = engine_mod.process_logits

    def flaky(logits, seen, params):
        rows = params if isinstance(params, list) else [params]
        if any(r.seed == 666 for r in rows):
            raise RuntimeError("bad row")
        return real(logits, seen, params)

    monkeypatch.setattr(engine_mod, "process_logits", flaky)

    def broken_check():
        raise ConnectionError("redis down")

    engine = Engine(model, tokenizer, max_batch_size=8)
    good = SamplingParams(max_new_tokens=10, do_sample=True, seed=5)
    prompts = [prompt(tokenizer, i, 5 + i) for i in range(4)]
    ok = [engine.submit(Request(prompts[0], good)), engine.submit(Request(prompts[1]))]
    bad_sample = engine.submit(Request(prompts[2], SamplingParams(do_sample=True, seed=666)))
    bad_check = engine.submit(Request(prompts[3], should_cancel=broken_check))
    engine.run_until_idle()
    assert bad_sample.result().finish_reason == "error"
    assert "bad row" in bad_sample.result().error
    assert bad_check.result().finish_reason == "error"
    assert "redis down" in bad_check.result().error
    assert list(ok[0].result().token_ids) == generate(model, prompts[0], good)
    assert list(ok[1].result().token_ids) == generate(model, prompts[1], SamplingParams())


def test_a_failed_forward_fails_its_rows_and_the_engine_keeps_serving(tokenizer):
    model = make_model(tokenizer)
    engine = Engine(model, tokenizer, max_batch_size=4)
    p = SamplingParams(max_new_tokens=8)
    hs = [engine.submit(Request(prompt(tokenizer, i, 5), p)) for i in range(2)]
    engine.step()
    real_forward = model.forward

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    model.forward = broken
    stats = engine.step()
    model.forward = real_forward
    assert stats.running == 0
    assert [h.result().finish_reason for h in hs] == ["error", "error"]
    assert "out of memory" in hs[0].result().error
    later = engine.submit(Request(prompt(tokenizer, 3, 5), p))
    assert list(later.result().token_ids) == generate(model, prompt(tokenizer, 3, 5), p)


@pytest.mark.parametrize("background", [True, False])
def test_beam_search_is_served_outside_the_batch(model, tokenizer, background):
    engine = Engine(model, tokenizer, max_batch_size=4)
    if background:
        engine.start()
    p_ids = prompt(tokenizer, 5, 6)
    beam = SamplingParams(max_new_tokens=10, num_beams=3)
    h = engine.submit(Request(p_ids, beam))
    other = engine.submit(Request(p_ids, SamplingParams(max_new_tokens=10)))
    deltas, fin = drain(h)  # without a loop, waiting on the beam drives the batch meanwhile
    ref = generate(model, p_ids, beam)
    assert list(fin.token_ids) == ref
    # the decoder's documented rule: a trailing half character is dropped at the end
    assert fin.text == tokenizer.decode(ref).rstrip("\ufffd")
    assert "".join(d.text for d in deltas) == fin.text
    assert list(other.result(timeout=30).token_ids) == generate(model, p_ids, other._seq.params)
    engine.stop()


def test_stop_without_drain_cancels_everything(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=1)
    hs = [
        engine.submit(Request(prompt(tokenizer, i, 4), SamplingParams(max_new_tokens=50)))
        for i in range(3)
    ]
    engine.step()
    engine.stop(drain=False)
    assert [h.result().finish_reason for h in hs] == ["cancelled"] * 3
    assert engine.num_running == 0
    assert engine.num_waiting == 0
    with pytest.raises(RuntimeError):
        engine.submit(Request(prompt(tokenizer, 0, 4)))
