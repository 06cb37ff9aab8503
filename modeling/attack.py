"""Black-box greedy attack on a chat model's answer to one user turn (TextAttack's greedy-WIR).

Given a dialogue whose last message is the user turn to attack and the correct reply:

1. Score the clean turn: the log-probability of the correct reply under teacher forcing. If greedy
   decoding does not give the correct reply, the example is *skipped* (already wrong).
2. Word importance: delete each editable word in turn and score all deletions in one padded batch;
   importance = how much the deletion lowers the reply's log-probability.
3. Greedy search, most important word first: propose edits of that word (modeling.augment's
   training families: typos, synonyms, case, deletion, a filler before it), keep the candidates the
   constraints accept (protected words: digits and the word to spell; maximum share of words
   changed; the validity oracle, which accepts a misspelled entity only when it still names it),
   score them in one batch and keep the one that lowers the reply's log-probability most.
4. Stop when greedy decoding no longer gives the correct reply (*successful*) or the query budget is
   spent (*failed*). Every scored candidate and every greedy decode is one query.

Teacher forcing also tells, for free, whether greedy decoding would reproduce the reply token for
token: it does exactly when the reply's token is the argmax at every reply position ("intact"). An
intact candidate cannot fool the model, so a real greedy decode (one query) is spent only on
candidates whose argmax chain broke; its output is compared with ``skills.is_correct`` (case and
trailing punctuation do not matter, so a broken chain may still be a correct answer).

Numbers (:func:`attack_summary`) are TextAttack's: attack success rate = successful / (successful +
failed), accuracy under attack = failed / N, skipped, average queries (over attacked examples) and
average share of words changed (over successful attacks).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from modeling import augment, skills

Constraint = augment.Constraint


@dataclass
class AttackResult:
    """The outcome of attacking one user turn.

    status: "skipped" (wrong on the clean turn), "failed" (budget spent, still correct) or
    "successful" (greedy reply no longer correct). perturbed: the final text (the original when
    skipped or when no edit helped). output: the model's greedy reply to ``perturbed``.
    queries: model queries spent (scored candidates + greedy decodes). words_changed: share of the
    original's words changed (0..1); n_words_changed: their count. logprob_*: the correct reply's
    log-probability on the original and the perturbed turn. context: the messages before the turn.
    """

    status: str
    original: str
    perturbed: str
    target: str
    output: str
    queries: int
    words_changed: float = 0.0
    n_words_changed: int = 0
    logprob_original: float = 0.0
    logprob_perturbed: float = 0.0
    context: list[dict] = field(default_factory=list)

    @property
    def fooled(self) -> bool:
        """Whether the attack made the model's greedy reply wrong."""
        return self.status == "successful"

    def to_dict(self) -> dict:
        """The result as a JSON-serialisable dict."""
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# Teacher-forced scoring


def _reply_tokens(chat_format: Any, prompt: list[dict], reply: str, block: int):
    """(prompt ids, reply ids) where the reply ids include the end-of-turn token."""
    prompt_ids = chat_format.render_prompt(prompt, max_tokens=block)
    try:
        ids, mask = chat_format.render(
            list(prompt) + [{"role": "assistant", "content": reply}], max_tokens=block + 64
        )
        if ids[: len(prompt_ids)] == prompt_ids:
            tail = [t for t, m in zip(ids[len(prompt_ids) :], mask[len(prompt_ids) :]) if m]
            if tail:
                return prompt_ids, tail
    except ValueError:
        pass
    return prompt_ids, chat_format.tokenizer.encode(reply) + list(chat_format.stop_token_ids[:1])


@torch.no_grad()
def score_replies(
    model: torch.nn.Module,
    chat_format: Any,
    prompts: Sequence[list[dict]],
    replies: Sequence[str],
    *,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced log-probability of each reply after its prompt, batched.

    Rows are right-padded into one batch per ``batch_size``; causal attention means padding after a
    row's last token never changes that row's logits.

    Args:
        model: a modeling.model.Transformer.
        chat_format: the model's ChatFormat.
        prompts: conversations ending with a user turn.
        replies: one assistant reply per prompt.
        batch_size: rows per forward pass.
    Returns:
        (logprob (N,) float: sum over the reply tokens and the end-of-turn token,
         intact (N,) bool: greedy decoding would reproduce the reply token for token).
    """
    block = model.config.block_size
    rows = []
    for prompt, reply in zip(prompts, replies):
        p, r = _reply_tokens(chat_format, prompt, reply, block)
        keep = max(0, len(p) + len(r) - block)  # over the context: drop the oldest prompt tokens
        rows.append((p[keep:], r))
    device = next(model.parameters()).device
    pad = chat_format.tokenizer.pad_id or 0
    was_training = model.training
    model.eval()
    logprobs, intact = [], []
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            width = max(len(p) + len(r) for p, r in chunk) - 1
            idx = torch.full((len(chunk), width), pad, dtype=torch.long)  # (B, T) right-padded
            tgt = torch.full(
                (len(chunk), width), -100, dtype=torch.long
            )  # (B, T) reply tokens only
            for b, (p, r) in enumerate(chunk):
                seq = p + r
                idx[b, : len(seq) - 1] = torch.tensor(seq[:-1])
                tgt[b, len(p) - 1 : len(seq) - 1] = torch.tensor(r)
            idx, tgt = idx.to(device), tgt.to(device)
            logits, _ = model(idx)  # (B, T, V)
            logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
            on = tgt != -100  # (B, T)
            safe = tgt.clamp(min=0)
            token_lp = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
            logprobs.append((token_lp * on).sum(dim=1).cpu())
            hit = (logp.argmax(dim=-1) == safe) | ~on  # (B, T)
            intact.append(hit.all(dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(logprobs), torch.cat(intact)


def greedy_replies(
    model: torch.nn.Module,
    chat_format: Any,
    prompts: Sequence[list[dict]],
    max_new_tokens: int | Sequence[int] = 32,
    batch_size: int = 64,
) -> list[str]:
    """Greedy replies, batched (modeling.evaluate.predict).

    Args:
        model: the model.
        chat_format: its ChatFormat.
        prompts: conversations ending with a user turn.
        max_new_tokens: one cap or one per prompt.
        batch_size: rows decoded together.
    Returns:
        the decoded replies.
    """
    from modeling.evaluate import predict

    return predict(
        model, chat_format, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens
    )


# ------------------------------------------------------------------------------------------------
# The attack


def _join(seps: list[str], words: list[str]) -> str:
    """Rebuild a text from separators (len n+1) and words (len n); "" words vanish cleanly."""
    out = seps[0]
    for w, sep in zip(words, seps[1:]):
        if w:
            out += w + sep
        elif sep.startswith(" ") and (out.endswith(" ") or not out):
            out += sep[1:]  # a deleted word leaves no double or leading space
        else:
            out += sep
    return out


def _split(text: str) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    spans = augment.word_spans(text)
    seps, prev = [], 0
    for s, e in spans:
        seps.append(text[prev:s])
        prev = e
    seps.append(text[prev:])
    return seps, [text[s:e] for s, e in spans], spans


@dataclass
class _Attack:
    """One attack's fixed inputs and its queries so far (each scored text or decode is one)."""

    model: torch.nn.Module
    chat_format: Any
    context: list[dict]
    original: str
    target: str
    budget: int
    rng: random.Random
    constraints: list[Constraint]
    edits_per_word: int
    batch_size: int
    cap: int  # greedy decoding cap
    match: Callable[[str, str], bool]
    queries: int = 0
    lp0: float = 0.0  # the correct reply's log-probability on the clean turn

    @property
    def room(self) -> int:
        return self.budget - self.queries - 1  # keep one query for a greedy check

    def prompt(self, text: str) -> list[dict]:
        return self.context + [{"role": "user", "content": text}]

    def score(self, texts: list[str]) -> tuple[list[float], list[bool]]:
        self.queries += len(texts)
        lp, ok = score_replies(
            self.model, self.chat_format, [self.prompt(t) for t in texts],
            [self.target] * len(texts), batch_size=self.batch_size,
        )  # fmt: skip
        return lp.tolist(), ok.tolist()

    def greedy(self, text: str) -> str:
        self.queries += 1
        return greedy_replies(self.model, self.chat_format, [self.prompt(text)], self.cap)[0]

    def result(self, status: str, text: str, output: str, lp: float) -> AttackResult:
        n_changed = augment.words_changed(self.original, text)
        share = n_changed / max(1, len(augment.words_of(self.original)))
        return AttackResult(
            status, self.original, text, self.target, output, self.queries, share, n_changed,
            self.lp0, lp, self.context,
        )  # fmt: skip

    def by_importance(self, seps: list[str], words: list[str], editable: list[int]) -> list[int]:
        """Editable word positions, the one whose deletion lowers the reply's score most first."""
        room = self.room
        deletions = [
            _join(seps, [w if j != i else "" for j, w in enumerate(words)]) for i in editable
        ]
        importance = [0.0] * len(editable)
        if room > 0 and deletions:
            lps, _ = self.score(deletions[:room])
            importance[: len(lps)] = [self.lp0 - lp for lp in lps]
        return [editable[k] for k in sorted(range(len(editable)), key=lambda k: -importance[k])]

    def candidates(
        self, seps: list[str], words: list[str], i: int, current: str
    ) -> list[tuple[str, str]]:
        """(text, replacement) for the edits of word i that pass every constraint."""
        seen = {current}
        out: list[tuple[str, str]] = []
        for replacement in augment.word_edits(words[i], self.rng, self.edits_per_word):
            text = _join(seps, words[:i] + [replacement] + words[i + 1 :])
            if text in seen or not text.strip():
                continue
            seen.add(text)
            if all(c(self.original, text, self.context) for c in self.constraints):
                out.append((text, replacement))
        return out

    def search(
        self, seps: list[str], words: list[str], order: list[int], passes: int, output: str,
        intact: bool,
    ) -> AttackResult:  # fmt: skip
        """Greedy search, most important word first; further passes (fresh random edits on the
        already edited text) while budget is left and the previous pass still helped."""
        current, words, lp = self.original, list(words), self.lp0
        for _ in range(passes):
            improved = False
            for i in order:
                if self.room <= 0:
                    break
                candidates = self.candidates(seps, words, i, current)[: self.room]
                if not candidates:
                    continue
                lps, oks = self.score([t for t, _ in candidates])
                broken = [j for j, ok in enumerate(oks) if not ok]
                j = min(broken or range(len(candidates)), key=lambda j: lps[j])
                if oks[j] and lps[j] >= lp:
                    continue  # no candidate for this word helps
                improved = True
                (current, words[i]), lp, intact = candidates[j], lps[j], oks[j]
                if not intact:
                    output = self.greedy(current)  # room >= 1 was kept for this
                    if not self.match(output, self.target):
                        return self.result("successful", current, output, lp)
            if not improved or self.room <= 0:
                break
        if intact:
            output = self.target  # an intact argmax chain is exactly the greedy reply
        return self.result("failed", current, output, lp)


def attack(
    model: torch.nn.Module,
    chat_format: Any,
    messages: Sequence[dict],
    target: str,
    *,
    budget: int = 200,
    rng: random.Random | None = None,
    constraints: Sequence[Constraint] | None = None,
    protect_slots: bool = True,
    edits_per_word: int = 8,
    max_passes: int = 3,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    match: Callable[[str, str], bool] = skills.is_correct,
) -> AttackResult:
    """Greedy word-importance attack on the last user turn of a dialogue.

    Args:
        model: a modeling.model.Transformer.
        chat_format: the model's ChatFormat.
        messages: the dialogue; its last message is the user turn to attack.
        target: the correct reply.
        budget: most model queries (scored candidates + greedy decodes); never exceeded.
        rng: random source for the candidate edits (default random.Random(0)).
        constraints: what a candidate must pass, each ``c(original, perturbed, context)``; None
            -> augment.default_constraints(); [] -> no check at all (the unverified ablation).
        protect_slots: never edit the protected words (augment.protected_spans: digits and the
            word to spell). False with constraints=[] gives a fully unverified attack.
        edits_per_word: typo variants proposed per word (plus synonyms, case, deletion, filler).
        max_passes: sweeps over the words (another sweep only while the last one helped).
        batch_size: candidates scored per forward pass.
        max_new_tokens: greedy decoding cap (default: reply tokens + 4).
        match: (output, target) -> correct.
    Returns:
        the AttackResult.
    """
    messages = [dict(m) for m in messages]
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("attack needs a dialogue whose last message is the user turn to attack")
    context, original = messages[:-1], messages[-1]["content"]
    run = _Attack(
        model, chat_format, context, original, target, budget,
        rng or random.Random(0),  # noqa: S311 (seeded search, not security)
        augment.default_constraints() if constraints is None else list(constraints),
        edits_per_word, batch_size,
        max_new_tokens or len(chat_format.tokenizer.encode(target)) + 4, match,
    )  # fmt: skip

    # 1. the clean turn
    [run.lp0], [intact] = run.score([original])
    output = target
    if not intact:
        output = run.greedy(original)
        if not match(output, target):
            return run.result("skipped", original, output, run.lp0)

    # 2. word importance by deletion (protected words are never edited, so never ranked; entity
    # names are editable, the validity oracle keeps only edits that still name the same entity)
    seps, words, spans = _split(original)
    protected = augment.protected_spans(original, context) if protect_slots else []
    editable = [i for i, sp in enumerate(spans) if not augment.overlaps(sp, protected)]
    order = run.by_importance(seps, words, editable)

    # 3. greedy search over the words in that order
    return run.search(seps, words, order, max_passes, output, intact)


def attack_dialogues(
    model: torch.nn.Module,
    chat_format: Any,
    dialogues: Sequence[Any],
    *,
    budget: int = 200,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> list[AttackResult]:
    """Attack the last user turn of every dialogue (each ends with its correct reply).

    Args:
        model: the model.
        chat_format: its ChatFormat.
        dialogues: skills.Dialogue objects, or dicts/lists whose messages end with the reply.
        budget: queries per dialogue.
        seed: dialogue i uses random.Random(f"attack:{seed}:{i}").
        progress: called with (done, total) after each dialogue.
        **kwargs: passed to attack() (constraints, protect_slots, edits_per_word, ...).
    Returns:
        one AttackResult per dialogue.
    """
    from modeling.evaluate import split_dialogue

    results = []
    for i, d in enumerate(dialogues):
        prompt, reply, _ = split_dialogue(d)
        rng = random.Random(f"attack:{seed}:{i}")  # noqa: S311 (seeded search, not security)
        results.append(attack(model, chat_format, prompt, reply, budget=budget, rng=rng, **kwargs))
        if progress is not None:
            progress(i + 1, len(dialogues))
    return results


def attack_summary(results: Sequence[AttackResult]) -> dict:
    """TextAttack's numbers for a list of attack results.

    Args:
        results: AttackResults.
    Returns:
        {"n", "successful", "failed", "skipped", "attack_success_rate" (successful / (successful
        + failed), None when nothing was attacked), "accuracy_under_attack" (failed / n),
        "original_accuracy" ((successful + failed) / n), "avg_queries" (over attacked examples),
        "avg_words_changed" (mean share of words changed over successful attacks)}.
    """
    n = len(results)
    succ = [r for r in results if r.status == "successful"]
    fail = [r for r in results if r.status == "failed"]
    attacked = succ + fail
    return {
        "n": n,
        "successful": len(succ),
        "failed": len(fail),
        "skipped": n - len(attacked),
        "attack_success_rate": len(succ) / len(attacked) if attacked else None,
        "accuracy_under_attack": len(fail) / n if n else None,
        "original_accuracy": len(attacked) / n if n else None,
        "avg_queries": sum(r.queries for r in attacked) / len(attacked) if attacked else None,
        "avg_words_changed": sum(r.words_changed for r in succ) / len(succ) if succ else None,
    }
