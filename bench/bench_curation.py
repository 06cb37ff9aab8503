"""Curation pages at size: the recurring-failure triage and the dataset exports, through the
admin's own views, against the pages beside them in the same run.

A fresh SQLite database gets N flagged replies in consented conversations (skills test
dialogues, recurring beyond the split's ~800, follow-ups included, each with a wrong reply, plus
one in five free-text turns), and a frozen dataset version of N approved correction samples.
Measured with Django's test client as an admin, each view a few times (median):

- triage page (`Flagged replies > Recurring failures`, groups the newest 5,000) against the
  flagged list's first page (100 rows) and against reading the same rows alone;
- chat JSONL and preference-pair exports against the raw download of the frozen file.

    .venv/bin/python bench/bench_curation.py [--flagged 5000] [--repeat 3]

Prints a table and a final JSON line.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def populate(n: int) -> int:
    """N flagged replies and a frozen version of N approved samples; returns the dataset id."""
    from django.contrib.auth.models import User

    from modeling.skills import dialogues
    from webchat.chat.models import Conversation, Feedback, Message
    from webchat.curation.models import AdversarialSample
    from webchat.curation.services import dataset_build, samples_from_corrections

    owner = User.objects.create_superuser("bench", password="x")  # noqa: S106 - a bench account
    # The test split holds ~800 distinct dialogues: beyond that the same questions recur, as
    # failures do on a real site.
    items = dialogues("test", min(n, 800), seed=0)
    feedback_ids = []
    for i in range(n):
        dialogue = items[i % len(items)]
        conversation = Conversation.objects.create(owner=owner, training_consent=True)
        parent = None
        turns = dialogue.to_json()["messages"]
        if i % 5 == 4:  # a turn the oracle does not parse
            turns = [
                {"role": "user", "content": f"Tell me a joke about {i % 40}!"},
                {"role": "assistant", "content": "No."},
            ]
        for message in turns:
            parent = Message.objects.create(
                conversation=conversation,
                parent=parent,
                role=message["role"],
                content=message["content"],
            )
        parent.content = "Paris."  # the flagged, wrong reply
        parent.save(update_fields=["content"])
        fb = Feedback.objects.create(
            message=parent,
            user=owner,
            rating=-1,
            reason="wrong",
            corrected_reply=turns[-1]["content"],
        )
        feedback_ids.append(fb.pk)
    samples_from_corrections(feedback_ids=feedback_ids, kinds=("correction",))
    AdversarialSample.objects.update(status="approved")
    return dataset_build(name="bench", clean_records=[], user=owner).pk


def timed(client, url: str, repeat: int) -> tuple[float, int]:
    """Median milliseconds of GET url, and the response size."""
    times, size = [], 0
    client.get(url)  # warm: templates, URL resolver, the page's first queries
    for _ in range(repeat):
        t = time.perf_counter()
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        times.append((time.perf_counter() - t) * 1e3)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        size = len(body)
    return statistics.median(times), size


def measure(n: int, repeat: int) -> list[dict]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from webchat.curation.selectors import flagged_feedback

    call_command("migrate", verbosity=0)
    dataset_id = populate(n)
    client = Client(HTTP_HOST="localhost")
    client.login(username="bench", password="x")  # noqa: S106 - the bench account

    t = time.perf_counter()
    for _ in range(repeat):
        list(flagged_feedback().values("id", "message__content", "message__parent__content"))
    read_ms = (time.perf_counter() - t) * 1e3 / repeat
    urls = {
        "flagged list (100 rows)": reverse("admin:curation_flaggedturn_changelist"),
        "triage page": reverse("admin:curation_flaggedturn_triage"),
        "raw download": reverse("admin:curation_dataset_download", args=[dataset_id]),
        "chat JSONL export": reverse("admin:curation_dataset_export", args=[dataset_id, "chat"]),
        "preference export": reverse(
            "admin:curation_dataset_export", args=[dataset_id, "preference"]
        ),
    }
    rows = [{"view": "read the flagged rows alone", "ms": round(read_ms, 1), "bytes": 0}]
    for name, url in urls.items():
        ms, size = timed(client, url, repeat)
        rows.append({"view": name, "ms": round(ms, 1), "bytes": size})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flagged", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    workdir = ROOT / "var" / "bench-curation"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    os.environ.update(
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        WEBCHAT_VAR_DIR=str(workdir),
        DJANGO_SETTINGS_MODULE="webchat.settings",
        WEBCHAT_START_EMBEDDED_WORKER="0",
        WEBCHAT_AUTO_DEFAULT_MODEL="0",
    )
    rows = measure(args.flagged, args.repeat)
    ms = {r["view"]: r["ms"] for r in rows}
    ratios = {
        "triage_vs_flagged_list": round(ms["triage page"] / ms["flagged list (100 rows)"], 2),
        "triage_vs_read": round(ms["triage page"] / ms["read the flagged rows alone"], 2),
        "chat_export_vs_raw": round(ms["chat JSONL export"] / ms["raw download"], 2),
        "preference_export_vs_raw": round(ms["preference export"] / ms["raw download"], 2),
    }
    print(f"{args.flagged} flagged replies, a version of as many samples; median of {args.repeat}")
    print(f"{'view':32} {'ms':>9} {'bytes':>10}")
    for r in rows:
        print(f"{r['view']:32} {r['ms']:9.1f} {r['bytes']:10d}")
    for k, v in ratios.items():
        print(f"{k:32} {v:9.2f}x")
    print(json.dumps({"bench": "curation", "flagged": args.flagged, "rows": rows, **ratios}))


if __name__ == "__main__":
    main()
