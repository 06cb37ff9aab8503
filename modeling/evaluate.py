"""Exact-match evaluation of a chat model on dialogues with one checkable answer each.

A dialogue is a conversation whose last message is the reference assistant reply (the skills
dialogues of modeling.skills, or any ``{"messages": [...], "family": ...}`` dict). The model sees
everything before that reply and decodes greedily; the prediction is correct when it equals the
reference up to case, whitespace and trailing punctuation (``modeling.skills.is_correct``).

Decoding is batched (right-padded prefill with per-row valid lengths, then one decode step for
all rows through the KV cache, see modeling.generate.generate_batch) and gives the same tokens as
decoding each dialogue alone.

Robustness: ``perturb`` rewrites the last user turn before decoding (a function of the text and an
explicit ``random.Random``), and :func:`compare` turns a clean and a perturbed result into the
performance drop rate PDR = 1 - acc_perturbed / acc_clean (PromptBench) and consistency (the share
of dialogues whose answer did not change, CheckList INV).

CLI::

    python -m modeling.evaluate var/models/default/model --split test ood --n 500
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch

PerturbFn = Callable[[str, random.Random], str]


def _as_dialogue(d: Any) -> dict:
    if isinstance(d, dict):
        family = d.get("family") or (d.get("meta") or {}).get("family")
        return {"messages": d["messages"], "family": family}
    if isinstance(d, list | tuple):
        return {"messages": list(d), "family": None}
    return {"messages": list(d.messages), "family": getattr(d, "family", None)}


def split_dialogue(dialogue: Any) -> tuple[list[dict], str, str]:
    """Split a dialogue into the prompt messages, the reference reply and its family.

    Args:
        dialogue: a dict (or dataclass) with "messages" ending in an assistant turn and optionally
            "family"; or a plain list of messages.

    Returns:
        (prompt_messages, reference_reply, family); family is "all" when the dialogue has none.
    """
    d = _as_dialogue(dialogue)
    messages = list(d["messages"])
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("an evaluation dialogue must end with the reference assistant reply")
    return messages[:-1], messages[-1]["content"], str(d.get("family") or "all")


def _resolve_chat_format(chat_format_or_tokenizer: Any):
    from modeling.chat import ChatFormat

    if isinstance(chat_format_or_tokenizer, ChatFormat):
        return chat_format_or_tokenizer
    return ChatFormat.for_model(chat_format_or_tokenizer)


def perturb_last_user(messages: list[dict], perturb: PerturbFn, rng: random.Random) -> list[dict]:
    """Return a copy of messages whose last user turn went through ``perturb``.

    Args:
        messages: the prompt messages (ending with a user turn).
        perturb: (text, rng) -> perturbed text.
        rng: the random source for this dialogue.

    Returns:
        The new message list (the input is not modified).
    """
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "user":
            m["content"] = perturb(m["content"], rng)
            break
    return out


def _render_within(fmt, prompt: list[dict], block: int, caps: list[int], i: int) -> list[int]:
    """The prompt's ids leaving room for its reply; a prompt too long for that keeps its last
    exchange and gets a smaller budget (caps[i] shrinks), so it is decoded, not refused."""
    from modeling.chat import ContextTooLongError

    try:
        return fmt.render_prompt(prompt, max_tokens=block - caps[i])
    except ContextTooLongError:
        ids = fmt.render_prompt(prompt, max_tokens=block - 1)
        caps[i] = block - len(ids)
        return ids


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    chat_format: Any,
    prompts: Sequence[list[dict]],
    *,
    batch_size: int = 32,
    max_new_tokens: int | Sequence[int] = 32,
) -> list[str]:
    """Greedy replies to conversations that end with a user turn, decoded in batches.

    Args:
        model: a modeling.model.Transformer.
        chat_format: a ChatFormat (or a Tokenizer, for which the native format is used).
        prompts: conversations ending with a user turn.
        batch_size: rows decoded together.
        max_new_tokens: one cap for all, or one per prompt.

    Returns:
        The decoded reply of each prompt (special tokens dropped, text after a stop string cut).
    """
    from modeling.generate import SamplingParams, generate_batch

    fmt = _resolve_chat_format(chat_format)
    caps = (
        [int(max_new_tokens)] * len(prompts)
        if isinstance(max_new_tokens, int)
        else [int(c) for c in max_new_tokens]
    )
    block = model.config.block_size
    # a reply gets at most half the context (as the chat serves it), so a prompt always has room
    caps = [min(c, block // 2) for c in caps]
    stop = tuple(fmt.stop_token_ids)
    was_training = model.training
    model.eval()
    replies: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(range(start, min(len(prompts), start + batch_size)))
            ids = {i: _render_within(fmt, prompts[i], block, caps, i) for i in chunk}
            params = {
                i: SamplingParams(max_new_tokens=caps[i], temperature=0.0, stop_token_ids=stop)
                for i in chunk
            }
            # every row of a batch takes as many positions as the longest budget asks, so a row
            # whose prompt leaves less room than that is decoded alone (same tokens either way)
            longest = max(caps[i] for i in chunk)
            together = [i for i in chunk if len(ids[i]) + longest <= block]
            groups = [together] * bool(together) + [[i] for i in chunk if i not in together]
            decoded = {}
            for group in groups:
                outs = generate_batch(model, [ids[i] for i in group], [params[i] for i in group])
                decoded.update(zip(group, outs))
            for out in (decoded[i] for i in chunk):
                if out and out[-1] in stop:
                    out = out[:-1]
                text = fmt.tokenizer.decode(out)
                for s in fmt.stop_strings:
                    text = text.split(s, 1)[0]
                replies.append(text)
    finally:
        model.train(was_training)
    return replies


def evaluate(
    model: torch.nn.Module,
    chat_format: Any,
    dialogues: Sequence[Any],
    *,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    perturb: PerturbFn | None = None,
    seed: int = 0,
    match: Callable[[str, str], bool] | None = None,
    return_predictions: bool = False,
) -> dict:
    """Exact-match accuracy, overall and per family, with greedy batched decoding.

    Args:
        model: a modeling.model.Transformer.
        chat_format: a ChatFormat (or a Tokenizer: native format).
        dialogues: dialogues ending with the reference reply (see split_dialogue).
        batch_size: rows decoded together (results do not depend on it).
        max_new_tokens: decoding cap; None -> each reference's token length + 4 (a longer reply
            cannot match anyway, so this only saves time).
        perturb: optional (text, rng) -> text applied to the last user turn of every dialogue, with
            ``random.Random(seed * 1_000_003 + i)`` for dialogue i.
        seed: seeds the perturbation.
        match: (output, reference) -> correct; None -> modeling.skills.is_correct (equality after
            lowercasing, collapsing whitespace and dropping trailing punctuation).
        return_predictions: include one record per dialogue under "predictions".

    Returns:
        {"accuracy", "correct", "n", "per_family": {family: {"accuracy", "correct", "n"}}} plus
        "predictions" (list of {"family", "prompt", "reference", "output", "correct"}) on request.
    """
    if match is None:
        from modeling.skills import is_correct as match
    fmt = _resolve_chat_format(chat_format)
    prompts, refs, families = [], [], []
    for i, d in enumerate(dialogues):
        msgs, ref, fam = split_dialogue(d)
        if perturb is not None:
            msgs = perturb_last_user(msgs, perturb, random.Random(seed * 1_000_003 + i))  # noqa: S311 (seeded: a perturbation must be reproducible)
        prompts.append(msgs)
        refs.append(ref)
        families.append(fam)
    if max_new_tokens is None:
        caps: int | list[int] = [len(fmt.tokenizer.encode(r)) + 4 for r in refs]
    else:
        caps = max_new_tokens
    outputs = predict(model, fmt, prompts, batch_size=batch_size, max_new_tokens=caps)
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    records = []
    for msgs, ref, fam, out in zip(prompts, refs, families, outputs):
        ok = bool(match(out, ref))
        per[fam][0] += int(ok)
        per[fam][1] += 1
        if return_predictions:
            last_user = next(m["content"] for m in reversed(msgs) if m["role"] == "user")
            records.append(
                {"family": fam, "prompt": last_user, "reference": ref, "output": out, "correct": ok}
            )
    correct = sum(c for c, _ in per.values())
    n = len(outputs)
    result = {
        "accuracy": correct / n if n else 0.0,
        "correct": correct,
        "n": n,
        "per_family": {
            fam: {"accuracy": c / k, "correct": c, "n": k} for fam, (c, k) in sorted(per.items())
        },
    }
    if return_predictions:
        result["predictions"] = records
    return result


def compare(clean: dict, perturbed: dict) -> dict:
    """Robustness numbers from a clean and a perturbed evaluation of the same dialogues.

    Both results must come from evaluate(..., return_predictions=True) on the same dialogue list.

    Args:
        clean: the clean result.
        perturbed: the result with a perturbation applied.

    Returns:
        {"acc_clean", "acc_perturbed", "pdr", "consistency", "per_family": {family: {...}}}:
        pdr = 1 - acc_perturbed / acc_clean (None when acc_clean is 0), consistency = share of
        dialogues whose output is unchanged by the perturbation.
    """
    a, b = clean["predictions"], perturbed["predictions"]
    if len(a) != len(b):
        raise ValueError("clean and perturbed results cover different numbers of dialogues")

    def numbers(pairs: list[tuple[dict, dict]]) -> dict:
        n = len(pairs)
        acc_c = sum(p["correct"] for p, _ in pairs) / n
        acc_p = sum(q["correct"] for _, q in pairs) / n
        same = sum(p["output"].strip() == q["output"].strip() for p, q in pairs) / n
        pdr = 1.0 - acc_p / acc_c if acc_c > 0 else None
        return {"acc_clean": acc_c, "acc_perturbed": acc_p, "pdr": pdr, "consistency": same, "n": n}

    by_family: dict[str, list] = defaultdict(list)
    for p, q in zip(a, b):
        by_family[p["family"]].append((p, q))
    out = numbers(list(zip(a, b))) if a else {}
    out["per_family"] = {f: numbers(pairs) for f, pairs in sorted(by_family.items())}
    return out


def format_table(results: dict[str, dict]) -> str:
    """A text table: one row per family, one column per evaluated split.

    Args:
        results: split name -> evaluate() result.

    Returns:
        The table.
    """
    splits = list(results)
    families = sorted({f for r in results.values() for f in r["per_family"]})
    head = f"{'family':<18}" + "".join(f"{s:>16}" for s in splits)
    lines = [head, "-" * len(head)]

    def cell(entry: dict | None) -> str:
        if not entry:
            return f"{'-':>16}"
        return f"{100 * entry['accuracy']:6.1f}% ({entry['correct']}/{entry['n']})".rjust(16)

    for fam in families:
        lines.append(
            f"{fam:<18}" + "".join(cell(results[s]["per_family"].get(fam)) for s in splits)
        )
    lines.append("-" * len(head))
    lines.append(f"{'overall':<18}" + "".join(cell(results[s]) for s in splits))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate a model directory on skills splits and print a per-family table.

    Args:
        argv: command-line arguments (default sys.argv[1:]); see --help.

    Returns:
        Process exit status.
    """
    from modeling import skills
    from modeling.chat import ChatFormat
    from modeling.checkpoint import load_model

    parser = argparse.ArgumentParser(prog="python -m modeling.evaluate", description=main.__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("--split", nargs="+", default=["test", "ood"])
    parser.add_argument("--n", type=int, default=0, help="dialogues per split (0 = all)")
    parser.add_argument("--seed", type=int, default=0, help="skills generator seed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer, _ = load_model(args.model_dir)
    fmt = ChatFormat.for_model(tokenizer, args.model_dir)
    results = {}
    for split in args.split:
        dialogues = list(skills.dialogues(split, seed=args.seed))
        if args.n:
            dialogues = dialogues[: args.n]
        results[split] = evaluate(model, fmt, dialogues, batch_size=args.batch_size)
    print(format_table(results))
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
