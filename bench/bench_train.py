"""Training step throughput: ours vs transformers' GPT2LMHeadModel (and nanoGPT), same config.

One step = forward with loss + backward + AdamW step + zero_grad, on identical random batches. The
models take turns step by step (so background load hits all alike) and the median step time of
each is compared. MFU = achieved training FLOP/s (6N + 12*L*H*hd*T per token, as in nanoGPT)
divided by the matmul rate measured in the same run on the same device and dtype.

Each model trains with the optimizer its own code builds: ours with `modeling.optim.make_optimizer`
(what `modeling.train` uses), nanoGPT with its `configure_optimizers`, transformers with a plain
`torch.optim.AdamW` (fused on CUDA); `--same-optimizer` gives all three the plain one instead, which
isolates the models' forward and backward. nanoGPT joins when `--nanogpt DIR` names a folder
holding its `model.py` (fetch karpathy/nanoGPT into a temporary folder; it is never part of this
repository); it gets our initial weights.

    .venv/bin/python bench/bench_train.py                           # CPU fp32, 2 threads
    .venv/bin/python bench/bench_train.py --nanogpt /tmp/nanogpt    # + nanoGPT's model.py
    .venv/bin/python bench/bench_train.py --device cuda --dtype bf16  # ~124M GPT-2 on a GPU

Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.model import ModelConfig, Transformer  # noqa: E402
from modeling.optim import make_optimizer  # noqa: E402
from modeling.train_config import TrainConfig  # noqa: E402

LR, WEIGHT_DECAY, BETAS = 1e-4, 0.1, (0.9, 0.95)

PRESETS = {
    # small enough for 2 CPU cores, large enough that matmuls dominate
    "cpu": dict(n_layer=4, n_head=4, n_embd=256, vocab_size=4096, seq_len=128, batch_size=8),
    # GPT-2 small (124M) as nanoGPT trains it (vocab padded to a multiple of 64)
    "gpu": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304, seq_len=1024, batch_size=16),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_matmul(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 1.0) -> float:
    """Best sustained n x n matmul rate in GFLOP/s on this device and dtype."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        reps = 10
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def build_models(p: dict, device: torch.device):
    """Our GPT-2 family model and transformers' GPT2LMHeadModel with the same config and weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = ModelConfig(
        family="gpt2",
        vocab_size=p["vocab_size"],
        block_size=p["seq_len"],
        n_layer=p["n_layer"],
        n_head=p["n_head"],
        n_embd=p["n_embd"],
        bias=True,
        tie_embeddings=True,
        dropout=0.0,
    )
    torch.manual_seed(0)
    ours = Transformer(cfg).to(device)
    hf_cfg = GPT2Config(
        vocab_size=p["vocab_size"],
        n_positions=p["seq_len"],
        n_embd=p["n_embd"],
        n_layer=p["n_layer"],
        n_head=p["n_head"],
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
    )
    hf = GPT2LMHeadModel(hf_cfg).to(device)
    hf.config.use_cache = False
    return ours, hf


def build_nanogpt(folder: Path, p: dict, ours: Transformer, device: torch.device):
    """nanoGPT's GPT from `folder`/model.py with our config and our initial weights."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", folder / "model.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"--nanogpt: no model.py in {folder}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.GPTConfig(
        block_size=p["seq_len"],
        vocab_size=p["vocab_size"],
        n_layer=p["n_layer"],
        n_head=p["n_head"],
        n_embd=p["n_embd"],
        dropout=0.0,
        bias=True,
    )
    with contextlib.redirect_stdout(None):  # it prints its parameter count
        model = mod.GPT(cfg).to(device)
    missing, unexpected = model.load_state_dict(ours.state_dict(), strict=False)
    if unexpected or any(not k.endswith(".attn.bias") for k in missing):
        raise SystemExit(f"nanoGPT weights do not match ours: {missing} {unexpected}")
    return model


def make_optimizer_for(model, kind: str, device: torch.device, same: bool):
    """The optimizer each codebase builds for itself (or, with `same`, one plain AdamW for all)."""
    if same or kind == "hf":
        fused = {"fused": True} if device.type == "cuda" else {}
        return torch.optim.AdamW(
            model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS, **fused
        )
    if kind == "nanogpt":
        with contextlib.redirect_stdout(None):
            return model.configure_optimizers(WEIGHT_DECAY, LR, BETAS, device.type)
    cfg = TrainConfig(lr=LR, weight_decay=WEIGHT_DECAY, beta1=BETAS[0], beta2=BETAS[1])
    return make_optimizer(model, cfg, device)


def make_step(model, kind: str, device: torch.device, dtype: str, args: argparse.Namespace):
    """A closure running one training step on (x, y) with the optimizer `kind` builds."""
    opt = make_optimizer_for(model, kind, device, args.same_optimizer)
    fwd = torch.compile(model) if args.compile else model

    def autocast():
        if dtype == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        with autocast():
            if kind in ("ours", "nanogpt"):
                _, loss = fwd(x, y)
            else:
                # transformers shifts labels itself: pass the inputs as labels (same CE work)
                loss = fwd(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch.compile every model")
    ap.add_argument("--nanogpt", type=Path, default=None, help="folder with nanoGPT's model.py")
    ap.add_argument("--same-optimizer", action="store_true", help="one plain AdamW for every model")
    for k in PRESETS["cpu"]:
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None)
    return ap.parse_args()


def _setup(args: argparse.Namespace) -> tuple[torch.device, str, dict]:
    """The device (threads, TF32), the dtype name and the model preset with the flags applied."""
    device = torch.device(args.device)
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    p = dict(PRESETS["gpu" if device.type == "cuda" else "cpu"])
    for k in p:
        if getattr(args, k) is not None:
            p[k] = getattr(args, k)
    return device, dtype, p


def time_steps(steps: dict, batches: list, args: argparse.Namespace, device) -> dict:
    """Warm each step up, then time the steps in alternation; returns seconds per step by name."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for step in steps.values():
        for i in range(args.warmup):
            b = batches[i % len(batches)]
            step(b[:, :-1].contiguous(), b[:, 1:].contiguous())
        _sync(device)
    # step by step alternation: a burst of background load lands on both models alike
    for _ in range(args.rounds):
        for i in range(args.steps):
            for name, step in steps.items():
                b = batches[i % len(batches)]
                x, y = b[:, :-1].contiguous(), b[:, 1:].contiguous()
                _sync(device)
                t = time.perf_counter()
                step(x, y)
                _sync(device)
                times[name].append(time.perf_counter() - t)
    return times


def main() -> None:
    args = _parse_args()
    device, dtype, p = _setup(args)
    mm_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    mm_n = 8192 if device.type == "cuda" else 1024
    peak = measure_matmul(device, mm_dtype, mm_n)

    ours, hf = build_models(p, device)
    B, T = p["batch_size"], p["seq_len"]
    g = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(0, p["vocab_size"], (B, T + 1), generator=g).to(device) for _ in range(4)
    ]
    steps = {"ours": make_step(ours, "ours", device, dtype, args)}
    if args.nanogpt is not None:
        nano = build_nanogpt(args.nanogpt, p, ours, device)
        steps["nanogpt"] = make_step(nano, "nanogpt", device, dtype, args)
    steps["transformers"] = make_step(hf, "hf", device, dtype, args)
    times = time_steps(steps, batches, args, device)

    flops_per_token = ours.flops_per_token(T)
    rows = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        tok_s = B * T / med
        rows[name] = {
            "step_ms": med * 1e3,
            "tokens_per_s": tok_s,
            "mfu": tok_s * flops_per_token / (peak * 1e9),
        }
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(
        f"device={device} ({dev_name}) dtype={dtype} threads={torch.get_num_threads()} "
        f"compile={args.compile}"
    )
    print(
        f"config: gpt2 L={p['n_layer']} H={p['n_head']} C={p['n_embd']} V={p['vocab_size']} "
        f"T={T} B={B}, params={ours.num_params() / 1e6:.2f}M, "
        f"train FLOPs/token={flops_per_token / 1e6:.2f}M"
    )
    print(f"measured {mm_n}x{mm_n} matmul: {peak:.1f} GFLOP/s ({dtype})")
    setup = {
        "bench": "train_step",
        "device": str(device),
        "device_name": dev_name,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "compile": args.compile,
        "same_optimizer": args.same_optimizer,
        "config": p,
        "params": ours.num_params(),
        "matmul_gflops": peak,
    }
    _report(rows, setup)


def _report(rows: dict, result: dict) -> None:
    """Print the table rows, the ratio and the final JSON line."""
    ratio = rows["ours"]["tokens_per_s"] / rows["transformers"]["tokens_per_s"]
    print(f"{'model':<14}{'step ms':>10}{'tokens/s':>12}{'MFU':>8}")
    for name, r in rows.items():
        print(f"{name:<14}{r['step_ms']:>10.1f}{r['tokens_per_s']:>12.0f}{100 * r['mfu']:>7.1f}%")
    print(f"ratio ours/transformers: {ratio:.3f}")
    extra = {}
    if "nanogpt" in rows:
        extra["nanogpt"] = rows["nanogpt"]
        extra["ratio_vs_nanogpt"] = rows["ours"]["tokens_per_s"] / rows["nanogpt"]["tokens_per_s"]
        print(f"ratio ours/nanogpt: {extra['ratio_vs_nanogpt']:.3f}")
    result = {
        **result,
        "ours": rows["ours"],
        "transformers": rows["transformers"],
        "ratio": ratio,
        **extra,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
