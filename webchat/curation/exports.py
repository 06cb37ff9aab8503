"""Exports of a frozen dataset version for training elsewhere: Hugging Face chat JSONL
(`{"messages": [...]}` per line) and preference pairs (`{"prompt", "chosen", "rejected"}`, the
conversational format TRL's DPO trainer reads), each with a lineage sidecar.

An export reads the frozen file (its hash verified first), never the live samples, so it holds
exactly what the version holds, less the records of samples whose conversation's owner has since
withdrawn consent (or that are gone with their conversation): those are left out and counted.
"""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.utils import timezone

from webchat.curation.models import AdversarialSample, Dataset
from webchat.curation.services import dataset_verify

FORMATS = {
    "chat": 'Hugging Face chat JSONL: one {"messages": [{"role", "content"}]} per line '
    '(an error-repair dialogue\'s wrong reply carries "weight": 0)',
    "preference": 'preference pairs JSONL: one {"prompt": [messages], "chosen": [assistant], '
    '"rejected": [assistant]} per line; chosen is the user\'s correction (or the checked '
    "answer of an adversarial sample), rejected the model's reply",
}

Kind = AdversarialSample.Kind


class ExportError(Exception):
    """An export that cannot be made, with the reason for the curator."""


@dataclass
class Export:
    """One export of one dataset version: its lines and what it leaves out."""

    dataset: Dataset
    fmt: str
    records: list[dict] = field(default_factory=list)
    conversation_ids: set[int] = field(default_factory=set)
    left_out: Counter = field(default_factory=Counter)
    by_source: Counter = field(default_factory=Counter)
    replies_from: set[int] = field(default_factory=set)

    @property
    def filename(self) -> str:
        return f"{self.dataset.name}-v{self.dataset.version}.{self.fmt}.jsonl"

    def content(self) -> bytes:
        """The JSONL bytes (one sorted-key JSON object per line, so the same export is the same
        bytes)."""
        return b"".join(
            (json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode()
            for r in self.records
        )

    def lineage(self, *, user=None) -> dict:
        """The sidecar: the version (name, number, hash, filters, counts), this export (format,
        records, hash, what was left out and why) and the model versions involved."""
        from webchat.registry.models import ModelVersion

        dataset = self.dataset
        versions = ModelVersion.objects.filter(pk__in=self.replies_from).order_by("id")
        trained = ModelVersion.objects.filter(dataset=dataset).order_by("id")
        return {
            "dataset": {
                "id": dataset.pk,
                "name": dataset.name,
                "version": dataset.version,
                "sha256": dataset.sha256,
                "filters": dataset.filters,
                "counts": dataset.counts,
                "created_at": dataset.created_at.isoformat(),
                "created_by": dataset.created_by.get_username() if dataset.created_by else None,
            },
            "export": {
                "format": self.fmt,
                "description": FORMATS[self.fmt],
                "file": self.filename,
                "records": len(self.records),
                "sha256": hashlib.sha256(self.content()).hexdigest(),
                "left_out": dict(self.left_out),
                "by_source": dict(self.by_source),
                "exported_at": timezone.now().isoformat(),
                "exported_by": user.get_username() if user is not None else None,
            },
            "model_versions": {
                "replies_from": [{"id": v.pk, "name": v.name} for v in versions],
                "trained_on_this_dataset": [
                    {"id": v.pk, "name": v.name, "status": v.status} for v in trained
                ],
            },
        }


def _frozen_records(dataset: Dataset) -> list[dict]:
    ok, reason = dataset_verify(dataset)
    if not ok:
        raise ExportError(f"{dataset} cannot be exported: {reason}")
    with open(Path(dataset.path), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _samples_of(dataset: Dataset, records: list[dict]) -> dict[int, dict]:
    """The rows behind the records' sample ids that are still usable: still in this version and
    not from a conversation whose owner withdrew consent."""
    ids = {r["meta"]["sample_id"] for r in records if (r.get("meta") or {}).get("sample_id")}
    rows = dataset.samples.filter(pk__in=ids).values(
        "pk",
        "kind",
        "fooled",
        "model_output",
        "attacked_model_id",
        "source_message__conversation_id",
        "source_message__conversation__training_consent",
    )
    return {row["pk"]: row for row in rows}


def _consent_withdrawn(sample: dict) -> bool:
    # Samples from the skills split have no conversation, hence no owner to withdraw consent.
    conversation = sample["source_message__conversation_id"]
    return conversation is not None and not sample["source_message__conversation__training_consent"]


def _pair(record: dict, sample: dict) -> tuple[str, dict] | None:
    """(source, pair) for one sample's record, or None when it has no rejected reply."""
    messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if sample["kind"] == Kind.REPAIR:
        # user turn, the model's wrong reply, the complaint, the correction
        prompt, rejected, chosen = messages[:-3], messages[-3]["content"], messages[-1]["content"]
        source = "user-correction"
    else:
        prompt, chosen = messages[:-1], messages[-1]["content"]
        rejected = sample["model_output"]
        source = "user-correction" if sample["kind"] == Kind.CORRECTION else "adversarial"
        if sample["kind"] == Kind.ADVERSARIAL and not sample["fooled"]:
            return None  # the model answered right: nothing to prefer against
    if not rejected.strip() or rejected.strip() == chosen.strip():
        return None
    return source, {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def dataset_export(dataset: Dataset, *, fmt: str) -> Export:
    """Export a frozen dataset version as chat JSONL ("chat") or preference pairs ("preference").

    Args:
        dataset: a frozen Dataset whose file still matches its hash.
        fmt: a key of FORMATS.

    Returns:
        The Export (records, the conversations whose content it holds, what was left out).

    Raises:
        ExportError: an unknown format, or a version that was never frozen or whose file is
            missing or changed.
    """
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    records = _frozen_records(dataset)
    samples = _samples_of(dataset, records)
    export = Export(dataset=dataset, fmt=fmt)
    seen: set[str] = set()
    for record in records:
        sample_id = (record.get("meta") or {}).get("sample_id")
        sample = samples.get(sample_id) if sample_id else None
        if sample_id and sample is None:
            export.left_out["sample_gone"] += 1
            continue
        if sample and _consent_withdrawn(sample):
            export.left_out["consent_withdrawn"] += 1
            continue
        if fmt == "chat":
            line = {"messages": record["messages"]}
            source = sample["kind"] if sample else "clean"
        else:
            made = _pair(record, sample) if sample else None
            if made is None:
                export.left_out["no_rejected_reply" if sample else "clean_no_pair"] += 1
                continue
            source, line = made
            key = json.dumps(line, sort_keys=True)
            if key in seen:  # a correction and its repair dialogue make the same pair
                export.left_out["duplicate_pair"] += 1
                continue
            seen.add(key)
        export.records.append(line)
        export.by_source[source] += 1
        if sample:
            if sample["source_message__conversation_id"] is not None:
                export.conversation_ids.add(sample["source_message__conversation_id"])
            if sample["attacked_model_id"] is not None:
                export.replies_from.add(sample["attacked_model_id"])
    return export
