"""Continuous-batching engine vs serving the same requests one at a time, plus cancel latency.

For N concurrent streams (default 1, 2, 4, 8, 16) every request has a 128-token prompt and makes
exactly 128 new tokens (no stop ids, so lengths are fixed). "batched": all N are submitted at once
to one `Engine` (max_batch_size 16) running its background loop. "serial": the same N requests
through an identical engine with max_batch_size 1, each submitted when the previous one finished,
which is what one-at-a-time serving gives (the serial run of the first N of 16 requests gives the
serial figure for N). Each cell is the best of `--rounds` runs (default 3, alternating batched and
serial, the order flipped every round), because load from other processes on a shared machine only
ever slows a run. Aggregate tokens/s = generated tokens / wall time from the first submit to the
last finish. Time to first
token (TTFT) is from submit to the first sampled token (queueing included: under serial serving the
k-th request waits for k-1 others); inter-token latency (ITL) is the gap between consecutive tokens
of one request, from the engine's own timestamps.

Cancel latency: 16 streams run with 512 new tokens; a timer stops each at a random moment after its
first token, while all 16 decode together (half through `RequestHandle.cancel()`, half through a
`should_cancel` flag, the way a Redis stop flag is polled). Reported: milliseconds from the stop to
the `Finished` event (the row is free at that point) and decode steps between the two (the engine's
step counter: 0 = freed within the step that was running, 1 = at the start of the next step).

Model: Llama-style, 6 layers, n_embd 384, 6 heads (2 KV heads), SwiGLU 1024, vocabulary 2048
(~10M parameters, random weights; speed does not depend on the values). CPU, fp32.

    .venv/bin/python bench/bench_engine.py                 # full run (~1-2 min on a quiet CPU)
    .venv/bin/python bench/bench_engine.py --quick         # smaller model and streams, smoke test
    .venv/bin/python bench/bench_engine.py --threads 2     # torch intra-op threads (default 1)

Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import threading
import time

import torch

from modeling.engine import Delta, Engine, Finished, Request
from modeling.model import ModelConfig, Transformer
from modeling.sampling import SamplingParams
from modeling.tokenizer import Tokenizer

CONFIGS = {
    "default": dict(n_layer=6, n_embd=384, n_head=6, n_kv_head=2, vocab=2048),
    "quick": dict(n_layer=2, n_embd=128, n_head=4, n_kv_head=2, vocab=512),
}
SYLLABLE_TEXT = "ka to ri men sa lo pu ne vi da che gor lin tha es ur bo qui fen yal dro mi sk zu"
SYLLABLES = SYLLABLE_TEXT.split()


def pct(values: list[float], q: float) -> float:
    """q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def build(spec: dict, device: str):
    """A tokenizer trained on random pseudo-word text and a random model of the given shape."""
    rng = random.Random(0)  # noqa: S311 -- a seeded workload, not security
    words = ["".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(3000)]
    texts = [" ".join(rng.choice(words) for _ in range(200)) for _ in range(300)]
    tokenizer = Tokenizer.train(texts, vocab_size=spec["vocab"])
    torch.manual_seed(0)
    cfg = ModelConfig(
        family="llama",
        vocab_size=tokenizer.vocab_size,
        block_size=1024,
        n_layer=spec["n_layer"],
        n_embd=spec["n_embd"],
        n_head=spec["n_head"],
        n_kv_head=spec["n_kv_head"],
    )
    model = Transformer(cfg).to(device).eval()
    return model, tokenizer, texts


def make_prompts(tokenizer, texts, n: int, length: int) -> list[list[int]]:
    """n prompts of exactly `length` tokens (different for every stream)."""
    prompts = []
    for i in range(n):
        ids = tokenizer.encode(texts[i % len(texts)] + " " + texts[(i + 1) % len(texts)])
        prompts.append(ids[:length])
    return prompts


def collect(handle) -> tuple[list[Delta], Finished]:
    """Consume a handle; return its token deltas and final event."""
    events = list(handle)
    return [e for e in events if isinstance(e, Delta) and e.token_id is not None], events[-1]


def run_batched(engine: Engine, prompts, params) -> tuple[float, list]:
    """Submit everything at once; wall time and per-request (deltas, finished)."""
    t0 = time.perf_counter()
    handles = [engine.submit(Request(p, params)) for p in prompts]
    results = [collect(h) for h in handles]
    return max(f.time for _, f in results) - t0, results


def run_serial(engine: Engine, prompts, params) -> tuple[float, list]:
    """One request at a time, each submitted when the previous one finished.

    Returns:
        (t0, [(deltas, finished, wait)]): wait = seconds request k waited for the ones before it
        (as if all had arrived at t0), so the first N entries are the serial run of N requests.
    """
    t0 = time.perf_counter()
    results = []
    for p in prompts:
        deltas, fin = collect(engine.submit(Request(p, params)))
        results.append((deltas, fin, fin.time - fin.duration - t0))
    return t0, results


def latency_stats(results, waits=None) -> dict:
    """p50/p95 TTFT and inter-token latency in ms."""
    ttft, itl = [], []
    for i, (deltas, fin) in enumerate(results):
        wait = waits[i] if waits else 0.0
        ttft.append((fin.time_to_first_token + wait) * 1e3)
        times = [d.time for d in deltas]
        itl += [(b - a) * 1e3 for a, b in zip(times, times[1:])]
    return dict(
        ttft_p50_ms=pct(ttft, 50),
        ttft_p95_ms=pct(ttft, 95),
        itl_p50_ms=pct(itl, 50),
        itl_p95_ms=pct(itl, 95),
    )


def throughput(args, model, tokenizer, texts) -> list[dict]:
    params = SamplingParams(max_new_tokens=args.new_tokens)  # greedy, no stop ids: fixed lengths
    seq_len = args.prompt_tokens + args.new_tokens
    batched = Engine(model, tokenizer, max_batch_size=max(args.streams), max_seq_len=seq_len)
    serial = Engine(model, tokenizer, max_batch_size=1, max_seq_len=seq_len)
    batched.start(), serial.start()
    warm = make_prompts(tokenizer, texts, 2, args.prompt_tokens)
    run_batched(batched, warm, SamplingParams(max_new_tokens=8))
    run_serial(serial, warm[:1], SamplingParams(max_new_tokens=8))
    n_max = max(args.streams)
    prompts = make_prompts(tokenizer, texts, n_max, args.prompt_tokens)
    best_b: dict[int, tuple[float, list]] = {}
    best_s: dict[int, tuple[float, list]] = {}

    def batched_round() -> None:
        for n in args.streams:
            wall, res = run_batched(batched, prompts[:n], params)
            if not all(f.completion_tokens == args.new_tokens for _, f in res):
                raise RuntimeError("a batched request ended before its max_new_tokens")
            if n not in best_b or wall < best_b[n][0]:
                best_b[n] = (wall, res)

    def serial_round() -> None:
        t0, res = run_serial(serial, prompts, params)
        for n in args.streams:
            wall = res[n - 1][1].time - t0
            if n not in best_s or wall < best_s[n][0]:
                best_s[n] = (wall, res[:n])

    for r in range(args.rounds):  # best of rounds: load from other processes only slows things
        # A, B, B, A, ...: neither side always runs first after the other
        for run in (batched_round, serial_round) if r % 2 == 0 else (serial_round, batched_round):
            run()
    rows = []
    for n in args.streams:
        (b_wall, b_res), (s_wall, s_res) = best_b[n], best_s[n]
        tokens = n * args.new_tokens
        row = dict(
            streams=n,
            batched_tok_s=tokens / b_wall,
            serial_tok_s=tokens / s_wall,
            speedup=s_wall / b_wall,
            batched=latency_stats(b_res),
            serial=latency_stats([(d, f) for d, f, _ in s_res], [w for _, _, w in s_res]),
        )
        rows.append(row)
        print(
            f"{n:>7} | {row['batched_tok_s']:>9.1f} {row['serial_tok_s']:>9.1f} "
            f"{row['speedup']:>6.2f}x | "
            f"{row['batched']['ttft_p50_ms']:>7.0f} {row['batched']['ttft_p95_ms']:>7.0f} "
            f"{row['batched']['itl_p50_ms']:>6.1f} {row['batched']['itl_p95_ms']:>6.1f} | "
            f"{row['serial']['ttft_p50_ms']:>7.0f} {row['serial']['ttft_p95_ms']:>7.0f} "
            f"{row['serial']['itl_p50_ms']:>6.1f} {row['serial']['itl_p95_ms']:>6.1f}",
            flush=True,
        )
    batched.stop(), serial.stop()
    return rows


def cancel_latency(args, model, tokenizer, texts, horizon: float) -> dict:
    """Stop each of `streams` requests at a random moment; measure until its row is free.

    Args:
        horizon: each stop comes uniformly within [0.05, 1] * horizon seconds after the request's
            first token (horizon: the decode time of the largest batched run), so stops land at
            any point of a decode step.
    """
    n = max(args.streams)
    new = 4 * args.new_tokens  # long enough that nobody finishes before its stop
    engine = Engine(model, tokenizer, max_batch_size=n, max_seq_len=args.prompt_tokens + new)
    engine.start()
    rng = random.Random(1)  # noqa: S311 -- a seeded workload, not security
    prompts = make_prompts(tokenizer, texts, n, args.prompt_tokens)
    delays = [rng.uniform(0.05, 1.0) * horizon for _ in range(n)]
    samples, errors = [], []

    def client(i: int) -> None:
        try:
            flag = threading.Event()
            via_flag = i % 2 == 1  # half like a polled Redis flag, half through the handle
            req = Request(prompts[i], SamplingParams(max_new_tokens=new))
            if via_flag:
                req.should_cancel = flag.is_set
            handle = engine.submit(req)
            stopped = []

            def stop() -> None:
                stopped.append((time.perf_counter(), engine.step_count))
                flag.set() if via_flag else handle.cancel()

            timer = threading.Timer(delays[i], stop)
            for event in handle:
                if isinstance(event, Delta) and event.index == 1:
                    timer.start()
                fin = event
            timer.join()
            if fin.finish_reason != "cancelled":
                raise RuntimeError(f"request was not cancelled: {fin}")
            t, step = stopped[0]
            samples.append(
                dict(
                    ms=(fin.time - t) * 1e3,
                    steps=fin.step - step,
                    via="should_cancel" if via_flag else "handle.cancel",
                )
            )
        except Exception as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.stop()
    if errors:
        raise errors[0]
    ms = [s["ms"] for s in samples]
    steps = [s["steps"] for s in samples]
    return dict(
        requests=len(samples),
        ms_p50=pct(ms, 50),
        ms_p95=pct(ms, 95),
        ms_max=max(ms),
        steps_histogram={str(k): steps.count(k) for k in sorted(set(steps))},
        steps_max=max(steps),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small model, streams 1,4")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--streams", default="1,2,4,8,16")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs per cell")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.prompt_tokens, args.new_tokens, args.rounds = "1,4", 32, 32, 1
    args.streams = [int(s) for s in args.streams.split(",")]
    torch.set_num_threads(args.threads)
    spec = CONFIGS["quick" if args.quick else "default"]
    model, tokenizer, texts = build(spec, args.device)
    n_params = model.num_params()
    load_before = os.getloadavg()[0]
    print(
        f"engine bench: llama {spec['n_layer']}L/{spec['n_embd']}d/{spec['n_head']}h "
        f"(kv {spec['n_kv_head']}), vocab {tokenizer.vocab_size}, {n_params / 1e6:.1f}M params, "
        f"{args.device}, fp32, torch {torch.__version__}, {args.threads} thread(s), "
        f"prompt {args.prompt_tokens}, new {args.new_tokens}, load avg {load_before:.1f}"
    )
    print(
        "streams |  batched    serial  ratio | batched: TTFT p50  p95 ms, ITL p50 p95 ms "
        "| serial: TTFT p50  p95, ITL p50 p95"
    )
    t0 = time.perf_counter()
    rows = throughput(args, model, tokenizer, texts)
    horizon = rows[-1]["batched"]["itl_p50_ms"] * args.new_tokens / 1e3
    cancel = cancel_latency(args, model, tokenizer, texts, horizon)
    print(
        f"cancel: {cancel['requests']} stops, stop -> row freed p50 {cancel['ms_p50']:.1f} ms, "
        f"p95 {cancel['ms_p95']:.1f} ms, max {cancel['ms_max']:.1f} ms; "
        f"decode steps {cancel['steps_histogram']} (max {cancel['steps_max']})"
    )
    result = dict(
        bench="engine",
        model=dict(family="llama", params=n_params, **spec),
        device=args.device,
        threads=args.threads,
        torch=torch.__version__,
        cpu=platform.processor() or platform.machine(),
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        rounds=args.rounds,
        load_avg_before=load_before,
        load_avg_after=os.getloadavg()[0],
        seconds=time.perf_counter() - t0,
        throughput=rows,
        cancel=cancel,
        speedup_at_max_streams=rows[-1]["speedup"],
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
