"""Greedy and beam-search decoding speed: ours (`modeling.generate`) vs transformers `generate`.

Both run the same weights: a random `GPT2LMHeadModel` is saved and imported with
`modeling.checkpoint.import_hf`, and every measured run's tokens are checked to be identical.

Greedy: prompts of 32 and 512 tokens, 128 new tokens (no stop token, so lengths are fixed),
batch 1 and batch 8 (8 different prompts of equal length). Tokens/s = B * 128 / wall time of the
whole call (prefill included). Time to first token (TTFT) = wall time of the same call with
max_new_tokens=1. Beam search: 4 beams, prompt 32, 128 new tokens, no stop token.

Ours and HF alternate run by run (the order flips each repeat) so background load on shared cores
hits both alike; the median of the repeats is reported.

Model: GPT-2 family, 6 layers, n_embd 384, 6 heads, GPT-2's vocabulary size 50257, context 1024
(~30M parameters with tied embeddings; random weights, speed does not depend on the values).
CPU, fp32, torch.set_num_threads(2) by default.

    .venv/bin/python bench/bench_generate.py             # full run (a few minutes on 2 cores)
    .venv/bin/python bench/bench_generate.py --quick     # tiny model, few tokens: smoke test
    .venv/bin/python bench/bench_generate.py --config small   # 4 layers, 256 wide, vocab 8192
    .venv/bin/python bench/bench_generate.py --repeats 5 --threads 2

Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models
from transformers import GPT2Config, GPT2LMHeadModel

from modeling.checkpoint import import_hf, load_model
from modeling.generate import generate, generate_batch
from modeling.sampling import SamplingParams

CONFIGS = {
    "default": dict(n_layer=6, n_embd=384, n_head=6, vocab=50257, new=128, prompts=(32, 512)),
    # per-step framework overhead matters more than matmuls here
    "small": dict(n_layer=4, n_embd=256, n_head=4, vocab=8192, new=128, prompts=(32, 512)),
    "quick": dict(n_layer=2, n_embd=64, n_head=2, vocab=1024, new=16, prompts=(8, 64)),
}


def build(spec: dict, workdir: Path):
    """A random HF GPT-2 and the same weights imported as our Transformer."""
    torch.manual_seed(0)
    hf_cfg = GPT2Config(
        vocab_size=spec["vocab"],
        n_positions=1024,
        n_embd=spec["n_embd"],
        n_layer=spec["n_layer"],
        n_head=spec["n_head"],
        bos_token_id=0,
        eos_token_id=0,
    )
    hf = GPT2LMHeadModel(hf_cfg).eval()
    src = workdir / "hf"
    hf.save_pretrained(src)
    # import_hf wants a tokenizer next to the weights; decoding speed never touches it
    HFTokenizer(models.BPE()).save(str(src / "tokenizer.json"))
    ours, _tok, _meta = load_model(import_hf(src, workdir / "ours"))
    return hf, ours.eval()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def ours_greedy(model, prompts, new):
    params = SamplingParams(max_new_tokens=new)
    if len(prompts) == 1:
        return [generate(model, prompts[0], params)]
    return generate_batch(model, prompts, params)


def hf_greedy(hf, prompts, new, num_beams=1):
    idx = torch.tensor(prompts)
    with torch.inference_mode():
        out = hf.generate(
            idx,
            attention_mask=torch.ones_like(idx),
            do_sample=False,
            num_beams=num_beams,
            max_new_tokens=new,
            eos_token_id=None,
            pad_token_id=0,
        )
    return out[:, idx.shape[1] :].tolist()


def ours_beam(model, prompts, new):
    return [generate(model, prompts[0], SamplingParams(max_new_tokens=new, num_beams=4))]


def compare(name, ours_fn, hf_fn, repeats):
    """Alternate ours/HF runs; return medians and check the tokens agree."""
    times = {"ours": [], "hf": []}
    outs = {}
    for r in range(repeats):
        order = [("ours", ours_fn), ("hf", hf_fn)]
        for key, fn in order if r % 2 == 0 else order[::-1]:
            dt, out = timed(fn)
            times[key].append(dt)
            outs[key] = out
    if outs["ours"] != outs["hf"]:
        raise SystemExit(f"{name}: our tokens differ from transformers' -- not a fair comparison")
    return {k: statistics.median(v) for k, v in times.items()}


def measure_greedy(ours, hf, spec: dict, gen: torch.Generator, repeats: int) -> list[dict]:
    """Greedy tokens/s and time to first token, ours vs HF, per prompt length and batch size."""
    new = spec["new"]
    rows = []
    for plen in spec["prompts"]:
        for batch in (1, 8):
            prompts = torch.randint(0, spec["vocab"], (batch, plen), generator=gen).tolist()
            t = compare(
                f"greedy p{plen} b{batch}",
                lambda p=prompts: ours_greedy(ours, p, new),
                lambda p=prompts: hf_greedy(hf, p, new),
                repeats,
            )
            ttft = compare(
                f"ttft p{plen} b{batch}",
                lambda p=prompts: ours_greedy(ours, p, 1),
                lambda p=prompts: hf_greedy(hf, p, 1),
                repeats,
            )
            rows.append(
                dict(
                    mode="greedy",
                    prompt=plen,
                    batch=batch,
                    new_tokens=new,
                    ours_tok_s=batch * new / t["ours"],
                    hf_tok_s=batch * new / t["hf"],
                    ratio=t["hf"] / t["ours"],
                    ours_ttft_ms=1000 * ttft["ours"],
                    hf_ttft_ms=1000 * ttft["hf"],
                )
            )
            print(f"done greedy prompt={plen} batch={batch}", flush=True)
    return rows


def measure_beam(ours, hf, spec: dict, gen: torch.Generator, repeats: int) -> list[dict]:
    """4-beam tokens/s, ours vs HF, at the shortest prompt length."""
    new = spec["new"]
    rows = []
    for plen in spec["prompts"][:1]:
        prompts = torch.randint(0, spec["vocab"], (1, plen), generator=gen).tolist()
        t = compare(
            f"beam p{plen}",
            lambda p=prompts: ours_beam(ours, p, new),
            lambda p=prompts: hf_greedy(hf, p, new, num_beams=4),
            repeats,
        )
        rows.append(
            dict(
                mode="beam4",
                prompt=plen,
                batch=1,
                new_tokens=new,
                ours_tok_s=new / t["ours"],
                hf_tok_s=new / t["hf"],
                ratio=t["hf"] / t["ours"],
                ours_ttft_ms=None,
                hf_ttft_ms=None,
            )
        )
    return rows


def print_table(rows: list[dict]) -> None:
    """The markdown table of docs/benchmarks.md."""
    header = "| mode | prompt | batch | ours tok/s | HF tok/s | ratio | ours TTFT ms | HF TTFT ms |"
    print(header)
    print("|" + "---|" * 8)
    for r in rows:
        ttft = (
            f"{r['ours_ttft_ms']:.1f} | {r['hf_ttft_ms']:.1f}"
            if r["ours_ttft_ms"] is not None
            else "- | -"
        )
        print(
            f"| {r['mode']} | {r['prompt']} | {r['batch']} | {r['ours_tok_s']:.1f} | "
            f"{r['hf_tok_s']:.1f} | {r['ratio']:.2f}x | {ttft} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model and lengths (smoke test)")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="default", help="model size")
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = "quick" if args.quick else args.config
    spec = CONFIGS[config]

    with tempfile.TemporaryDirectory() as tmp:
        hf, ours = build(spec, Path(tmp))
    n_params = ours.num_params()
    gen = torch.Generator().manual_seed(1)
    rows = measure_greedy(ours, hf, spec, gen, args.repeats)
    rows += measure_beam(ours, hf, spec, gen, args.repeats)

    print()
    print(
        f"model: gpt2 family, {spec['n_layer']} layers, n_embd {spec['n_embd']}, "
        f"vocab {spec['vocab']}, {n_params / 1e6:.1f}M params; torch {torch.__version__}, "
        f"transformers {transformers.__version__}, threads {args.threads}, "
        f"{os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}"
    )
    print_table(rows)
    greedy = [r["ratio"] for r in rows if r["mode"] == "greedy"]
    beam = [r["ratio"] for r in rows if r["mode"] == "beam4"]
    summary = dict(
        bench="generate",
        config=config,
        params_m=round(n_params / 1e6, 2),
        threads=args.threads,
        repeats=args.repeats,
        machine=platform.machine(),
        load_avg=round(os.getloadavg()[0], 2),
        rows=[{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
        greedy_ratio_min=round(min(greedy), 3),
        greedy_ratio_geomean=round(statistics.geometric_mean(greedy), 3),
        beam_ratio=round(min(beam), 3),
        targets=dict(greedy_ratio=1.5, beam_ratio=1.0),
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
