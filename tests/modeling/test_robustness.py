"""Robustness metrics: PDR, consistency, per-family accuracy, replayed and adaptive ASR."""

from types import SimpleNamespace

import pytest

import modeling.robustness as rob
from modeling import skills
from modeling.attack import AttackResult
from tests.modeling.test_attack import tiny_memorising_model


def test_pdr_and_inv_failure_rate_on_a_hand_made_case():
    assert rob.pdr(0.8, 0.6) == pytest.approx(0.25)
    assert rob.pdr(0.5, 0.6) == pytest.approx(-0.2)  # a perturbation that helps
    assert rob.pdr(0.0, 0.3) is None
    clean = ["Madrid.", "7.", "Tuesday", "x"]
    pert = ["madrid", "8.", "Tuesday.", "y"]  # case/punctuation differences are not changes
    assert rob.changed_share(clean, pert) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="differ in length"):
        rob.changed_share(clean, pert[:2])


def fake_predict(original_turns: set[str]):
    """A 'model' that answers right exactly when the last user turn is untouched."""

    def predict(model, fmt, prompts, **kwargs):
        out = []
        for p in prompts:
            text = p[-1]["content"]
            out.append(ANSWERS.get(text, "wrong") if text in original_turns else "wrong")
        return out

    return predict


ANSWERS: dict[str, str] = {}
# only the reply caps are computed from the format when predict is faked
FAKE_FORMAT = SimpleNamespace(tokenizer=SimpleNamespace(encode=lambda text: list(text)))


def test_evaluate_robustness_numbers_on_a_hand_made_model(monkeypatch):
    dialogues = [d for d in skills.generate_dialogues("test", 50, seed=2) if len(d.messages) == 2]
    dialogues = dialogues[:20]
    assert len(dialogues) == 20
    for d in dialogues[:15]:  # the model knows 15 of 20 answers
        ANSWERS[d.messages[0]["content"]] = d.answer
    originals = {d.messages[0]["content"] for d in dialogues}
    monkeypatch.setattr(rob, "predict", fake_predict(originals))
    out = rob.evaluate_robustness(
        None, FAKE_FORMAT, dialogues, {"typo": [0.2], "distractor": [1.0]}, seed=0
    )
    monkeypatch.undo()
    assert out["n"] == 20
    assert out["clean"]["accuracy"] == pytest.approx(0.75)
    for key in ("typo@0.2", "distractor@1"):
        entry = out["perturbed"][key]
        share = entry["perturbed_share"]
        assert share > 0.5
        # every perturbed turn is answered wrong, every untouched one as before
        perturbed_prompts, n_pert = rob.perturb_prompts(
            [d.prompt for d in dialogues], key.split("@")[0], float(key.split("@")[1])
        )
        still_right = sum(
            p[-1]["content"] == d.prompt[-1]["content"] and i < 15
            for i, (p, d) in enumerate(zip(perturbed_prompts, dialogues))
        )
        assert n_pert / 20 == pytest.approx(share)
        assert entry["accuracy"] == pytest.approx(still_right / 20)
        assert entry["pdr"] == pytest.approx(1 - entry["accuracy"] / 0.75)
        # answers change exactly for perturbed turns of known dialogues ("wrong" stays "wrong")
        changed = sum(
            p[-1]["content"] != d.prompt[-1]["content"] and i < 15
            for i, (p, d) in enumerate(zip(perturbed_prompts, dialogues))
        )
        assert entry["inv_failure_rate"] == pytest.approx(changed / 20)
        assert entry["consistency"] == pytest.approx(1 - changed / 20)


def test_replayed_asr_counts_only_samples_answered_right_when_clean(monkeypatch):
    ANSWERS.update({"Capital of Spain?": "Madrid.", "Day after Monday?": "Tuesday."})
    monkeypatch.setattr(rob, "predict", fake_predict({"Capital of Spain?", "Day after Monday?"}))
    samples = [
        AttackResult("successful", "Capital of Spain?", "Capitl of Spain?", "Madrid.", "x", 5),
        {"original": "Day after Monday?", "perturbed": "Day aftr Monday?", "target": "Tuesday."},
        {"original": "Unknown turn?", "perturbed": "Unknwn turn?", "target": "Paris."},
    ]
    out = rob.replay(None, FAKE_FORMAT, samples)
    assert out == {
        "n": 3, "successful": 2, "failed": 0, "skipped": 1, "asr": 1.0,
        "statuses": ["successful", "successful", "skipped"], "clean_correct": 2, "fooled": 2,
    }  # fmt: skip
    assert rob.replay(None, FAKE_FORMAT, [])["asr"] is None


@pytest.fixture(scope="module")
def tiny():
    return tiny_memorising_model(n_dialogues=8, steps=100)


def test_evaluate_robustness_end_to_end_on_a_tiny_model(tiny):
    model, fmt, dialogues = tiny
    out = rob.evaluate_robustness(
        model, fmt, dialogues, {"typo": [0.2], "ocr": [0.2]}, seed=1, attack_n=4, attack_budget=30
    )
    assert out["clean"]["accuracy"] > 0.5
    assert set(out["perturbed"]) == {"typo@0.2", "ocr@0.2"}
    adaptive = out["adaptive"]
    assert adaptive["n"] == 4
    assert adaptive["successful"] == len(adaptive["examples"])
    # samples mined against this model, replayed on it, fool it every time
    if adaptive["examples"]:
        assert rob.replay(model, fmt, adaptive["examples"])["asr"] == 1.0
