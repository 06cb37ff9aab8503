"""What a fine-tune trains on besides its dataset, and how it picks its checkpoint.

Every fine-tune of a model version (from the admin's form, the learning loop or the registry's
API: they all become a `TrainingRun` with a base model) replays what the parent was trained on, so
it does not forget: `replay_share` of each batch's rows come from `replay_data` (the promotion
policy's share and sources unless the run's hyperparameters name their own; 0 turns it off).
For skills models the sources are the train dialogues and the world statements, the default
recipe's own mix. With the loop's default dataset (half approved samples, half clean dialogues) a
replay share of 0.5 gives batches that are a quarter adversarial samples: the mix of
docs/robustness.md's adversarial arm, the one that stayed within a point of clean accuracy.

It also selects on dev, never on test: the run evaluates on the skills dev split every
`eval_interval` steps (clean and under `dev_perturb_recipe`) and keeps the checkpoint with the
best robust dev accuracy among those within `clean_dev_tolerance_points` of the parent's clean
dev accuracy, stopping after `patience` evaluations without a better one.

Both are recorded: the run's hyperparameters (what the admin shows) and the model's lineage
(meta.json) carry the replay share and sources.
"""

import dataclasses

# Keys of the replay and dev-selection settings (modeling.train_config.TrainConfig fields).
REPLAY_KEYS = ("replay_data", "replay_share")
DEV_SELECTION_DEFAULTS = {
    "select_on_dev": True,
    "dev_data": ["skills:dev"],
    "eval_interval": 20,
    # 400 dev dialogues and a 1-point clean tolerance (4 dialogues): at 200 and 0.5 points one
    # flipped dev dialogue disqualified every checkpoint and a round kept the parent (measured,
    # docs/robustness.md)
    "eval_accuracy_n": 400,
    "dev_perturb_recipe": "mixed",
    "patience": 4,
    "clean_dev_tolerance_points": 1.0,
}


def train_config_fields() -> set[str]:
    """The names TrainConfig accepts (this modeling version's)."""
    from modeling.train_config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def finetune_hyperparameters(hp: dict, *, policy) -> dict:
    """A fine-tune's hyperparameters with replay and dev selection filled in where not given.

    Args:
        hp: the run's hyperparameters (form, loop settings or API); keys it names win.
        policy: the PromotionPolicy (replay share and sources).

    Returns:
        The completed hyperparameters, recorded on the run as they were used.
    """
    out = dict(hp)
    out.setdefault("replay_share", float(policy.replay_share))
    out.setdefault("replay_data", list(policy.replay_sources or []))
    if not out["replay_data"]:
        out["replay_share"] = 0.0
    if float(out["replay_share"]) <= 0.0:
        out["replay_share"] = 0.0
        out["replay_data"] = []
    if "select_on_dev" in train_config_fields():  # evaluating on dev pays only when it selects
        for key, value in DEV_SELECTION_DEFAULTS.items():
            out.setdefault(key, value)
    return out


def train_config_kwargs(hp: dict) -> dict:
    """The hyperparameters TrainConfig takes, adapting to a modeling version without replay: its
    sources then go into the data list (unweighted); any other unknown key still fails the run
    (a typo is an error). Dev selection is only filled in where TrainConfig has it.

    Args:
        hp: the completed hyperparameters (see finetune_hyperparameters), without "data".

    Returns:
        (kwargs for TrainConfig, replay sources to add to the data list).
    """
    known = train_config_fields()
    kwargs = dict(hp)
    extra_data: list[str] = []
    if "replay_data" not in known:
        extra_data = [s for s in kwargs.pop("replay_data", []) if s.startswith("skills:")]
        kwargs.pop("replay_share", None)
    return kwargs, extra_data


def replay_lineage(hp: dict) -> dict:
    """What the model's meta.json records about its replay."""
    share = float(hp.get("replay_share") or 0.0)
    return {"share": share, "sources": list(hp.get("replay_data", []))}
