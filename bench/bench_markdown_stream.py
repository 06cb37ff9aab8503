"""Streaming a reply's HTML to one watcher: block by block (webchat.chat.markdown_stream, what
the chat consumer runs for every delta) vs re-rendering the whole reply for every delta (what it
did before; the reference, measured in the same run on the same deltas).

A reply is realistic Markdown (paragraphs, a list, a fenced code block, a table) repeated to the
length; deltas are 4 characters (about one token). Reported per reply: server time spent on
HTML, and HTML characters sent, for each way; ratio = reference / ours.

    .venv/bin/python bench/bench_markdown_stream.py            # 1k to 8k characters (minutes:
                                                                # the reference is quadratic)
    .venv/bin/python bench/bench_markdown_stream.py --quick    # smoke test

Prints a table and a final JSON line.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's webchat
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")

import django  # noqa: E402

django.setup()

from webchat.chat.markdown import render_markdown  # noqa: E402
from webchat.chat.markdown_stream import MarkdownStream  # noqa: E402

BLOCK = (
    "Here is **how** it works, step by step, with `code` in the text.\n\n"
    "1. First item\n2. Second item\n\n"
    "```python\ndef answer(x):\n    return x * 2\n```\n\n"
    "| city | country |\n|---|---|\n| Paris | France |\n\n"
)
DELTA = 4


def reply_of(chars: int) -> str:
    return (BLOCK * (chars // len(BLOCK) + 1))[:chars]


def ours(text: str) -> tuple[float, int]:
    started, sent = time.perf_counter(), 0
    render = MarkdownStream("", client_has_whole_render=False)
    for i in range(0, len(text), DELTA):
        sent += len(render.update(text[i : i + DELTA]).get("html_tail", ""))
    return time.perf_counter() - started, sent


def reference(text: str) -> tuple[float, int]:
    started, sent = time.perf_counter(), 0
    for i in range(DELTA, len(text) + DELTA, DELTA):
        sent += len(render_markdown(text[:i]))
    return time.perf_counter() - started, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    lengths = [500, 1000] if args.quick else [1000, 2000, 4000, 8000]
    rows = []
    print(f"{'chars':>7} {'ours ms':>9} {'ref ms':>9} {'ratio':>7} {'ours KB':>9} {'ref KB':>9}")
    for chars in lengths:
        text = reply_of(chars)
        t_ours, b_ours = ours(text)
        t_ref, b_ref = reference(text)
        row = dict(
            chars=chars,
            ours_ms=round(t_ours * 1e3, 1),
            reference_ms=round(t_ref * 1e3, 1),
            time_ratio=round(t_ref / t_ours, 1),
            ours_kb=round(b_ours / 1e3, 1),
            reference_kb=round(b_ref / 1e3, 1),
        )
        rows.append(row)
        print(
            f"{chars:>7} {row['ours_ms']:>9} {row['reference_ms']:>9} {row['time_ratio']:>7} "
            f"{row['ours_kb']:>9} {row['reference_kb']:>9}"
        )
    print(
        json.dumps(
            dict(
                bench="markdown_stream",
                delta_chars=DELTA,
                machine=platform.machine(),
                load_avg=round(os.getloadavg()[0], 2),
                rows=rows,
                time_ratio_at_longest=rows[-1]["time_ratio"],
            )
        )
    )


if __name__ == "__main__":
    main()
