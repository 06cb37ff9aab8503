"""Forward (prefill) throughput: our Transformer vs transformers' GPT2LMHeadModel, same weights.

Both models get the identical GPT-2 config and weights (a random HF model is written with
save_pretrained and brought in through modeling.checkpoint.import_hf). CPU, fp32,
torch.inference_mode, full logits for every position, HF with use_cache=False (we build no cache
either). Runs are interleaved (ours, HF, ours, HF, ...) so that load from other processes hits both
alike; each cell reports the median over repetitions. The machine's matmul speed (a 2048^3 sgemm,
best of several tries spread over the run) is the peak we compare our achieved FLOP/s against.

Forward FLOPs per token counted as 2 * N + 2 * n_layer * n_embd * T: N = parameters doing matmul
work (tied output head included, position table excluded) and causal attention, which on average
looks at T/2 keys for QK^T and again for AV.

    .venv/bin/python bench/bench_model.py            # GPT-2 style 6L/512d/8h, vocab 8192 (~24M)
    .venv/bin/python bench/bench_model.py --quick    # 4L/256d/4h, vocab 4096
    .venv/bin/python bench/bench_model.py --config gpt2-124m   # the real GPT-2 small shape
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from modeling.checkpoint import import_hf, load_model
from modeling.tokenizer import Tokenizer

CONFIGS = {
    "quick": dict(n_layer=4, n_embd=256, n_head=4, vocab_size=4096),
    "default": dict(n_layer=6, n_embd=512, n_head=8, vocab_size=8192),
    "gpt2-124m": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257),
}
ROOT = Path(__file__).resolve().parent.parent


def matmul_gflops(n: int = 2048, tries: int = 3) -> float:
    """Best-of-`tries` fp32 matmul speed in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(tries):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def build_models(spec: dict, workdir: Path):
    """A random HF GPT-2 and our import of the very same weights."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_positions=1024, **spec)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(workdir / "hf")
    Tokenizer.train(["bench"], vocab_size=300).save(workdir / "hf")  # import_hf wants a tokenizer
    ours, _, _ = load_model(import_hf(workdir / "hf", workdir / "ours"))
    idx = torch.randint(0, spec["vocab_size"], (2, 32))
    with torch.inference_mode():
        diff = (ours(idx)[0] - hf(idx, use_cache=False).logits).abs().max().item()
    if not diff < 1e-4:
        raise RuntimeError(f"models disagree (max logit diff {diff})")
    return ours, hf


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small config, fewer repetitions")
    ap.add_argument("--config", choices=sorted(CONFIGS), default=None)
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per cell")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    name = args.config or ("quick" if args.quick else "default")
    reps = args.reps or (3 if args.quick else 5)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]  # other processes on the machine; they skew absolute numbers

    workdir = Path(tempfile.mkdtemp(prefix="bench_model_", dir=ROOT / "var"))
    try:
        ours, hf = build_models(CONFIGS[name], workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cfg = ours.config
    n_matmul = ours.num_params(non_embedding=True)
    peak = matmul_gflops()
    print(
        f"config {name}: {cfg.n_layer}L {cfg.n_embd}d {cfg.n_head}h vocab {cfg.vocab_size}, "
        f"{ours.num_params() / 1e6:.1f}M params, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {args.threads} threads"
    )

    rows = []
    with torch.inference_mode():
        for B in (1, 8):
            for T in (64, 256, 1024):
                idx = torch.randint(
                    0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(T)
                )
                run_ours = lambda idx=idx: ours(idx)
                run_hf = lambda idx=idx: hf(idx, use_cache=False)
                if B * T <= 2048:  # warm-up; the big cells are long enough to amortise it
                    run_ours(), run_hf()
                t_ours, t_hf = [], []
                for r in range(reps):
                    # alternate who goes first so a load spike does not always land on one side
                    pair = [(t_ours, run_ours), (t_hf, run_hf)]
                    for times, fn in pair if r % 2 == 0 else pair[::-1]:
                        times.append(timed(fn))
                peak = max(peak, matmul_gflops(tries=1))
                to, th = statistics.median(t_ours), statistics.median(t_hf)
                flops = B * T * (2 * n_matmul + 2 * cfg.n_layer * cfg.n_embd * T)
                r = dict(B=B, T=T, ours_tok_s=B * T / to, hf_tok_s=B * T / th, ratio=th / to)
                r.update(ours_gflops=flops / to / 1e9, hf_gflops=flops / th / 1e9)
                rows.append(r)
                print(
                    f"B={B} T={T:5d}  ours {r['ours_tok_s']:9.0f} tok/s  hf {r['hf_tok_s']:9.0f} "
                    f"tok/s  ratio {r['ratio']:.2f}  ours {r['ours_gflops']:.1f} GFLOP/s",
                    flush=True,
                )

    print(f"\nmatmul peak (2048^3 sgemm, best over the run): {peak:.1f} GFLOP/s\n")
    print(
        f"{'B':>2} {'T':>5} {'ours tok/s':>11} {'HF tok/s':>10} {'ours/HF':>8} "
        f"{'ours GFLOP/s':>13} {'% of matmul':>12}"
    )
    for r in rows:
        r["pct_of_matmul"] = 100 * r["ours_gflops"] / peak
        print(
            f"{r['B']:>2} {r['T']:>5} {r['ours_tok_s']:>11.0f} {r['hf_tok_s']:>10.0f} "
            f"{r['ratio']:>8.2f} {r['ours_gflops']:>13.1f} {r['pct_of_matmul']:>11.0f}%"
        )
    big = [r for r in rows if r["T"] >= 256]
    summary = {
        "bench": "model_forward",
        "config": name,
        "params": ours.num_params(),
        "threads": args.threads,
        "reps": reps,
        "matmul_peak_gflops": round(peak, 1),
        "min_ratio": round(min(r["ratio"] for r in rows), 3),
        "min_pct_of_matmul_T256plus": round(min(r["pct_of_matmul"] for r in big), 1),
        "loadavg_start_end": [load_start, os.getloadavg()[0]],
        "rows": [{k: round(v, 3) for k, v in r.items()} for r in rows],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
