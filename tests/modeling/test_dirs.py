"""Publishing model directories: never over an existing one, also when two writers race for
one name, and a refused writer removes only its own staged copy."""

import threading

import pytest

from modeling.checkpoint import CheckpointError, load_model, publish_dir, save_model
from modeling.dirs import write_dir_atomically


def staged_dir(parent, name, text):
    d = parent / name
    d.mkdir()
    (d / "weights.bin").write_text(text)
    return d


def test_publish_refuses_an_existing_directory_and_moves_nothing(tmp_path):
    final = staged_dir(tmp_path, "v1", "the original")
    newer = staged_dir(tmp_path, ".v1.staged", "a newcomer")
    with pytest.raises(CheckpointError, match="v1 already exists .* never overwritten"):
        publish_dir(newer, final)
    assert (final / "weights.bin").read_text() == "the original"
    assert (newer / "weights.bin").read_text() == "a newcomer"  # left to its writer


def test_publish_refuses_even_an_empty_directory_that_a_rename_would_replace(tmp_path):
    (tmp_path / "v1").mkdir()
    with pytest.raises(CheckpointError):
        publish_dir(staged_dir(tmp_path, ".staged", "x"), tmp_path / "v1")
    assert list((tmp_path / "v1").iterdir()) == []


def test_two_writers_racing_for_one_name_one_wins_and_the_winner_is_intact(tmp_path):
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def writer(i: int) -> None:
        def write(tmp):
            (tmp / "weights.bin").write_text(f"writer {i}")
            barrier.wait(timeout=10)  # every writer has its copy staged before any publishes

        try:
            write_dir_atomically(tmp_path / "v1", write, exclusive=True)
            outcomes.append(f"won {i}")
        except CheckpointError:
            outcomes.append("refused")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1
    assert outcomes.count("refused") == 7
    assert (tmp_path / "v1" / "weights.bin").read_text() == f"writer {winners[0].split()[1]}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".publish.lock", "v1"]  # no leftovers


def test_an_exclusive_save_refuses_to_replace_a_model(tmp_path, tiny_model_factory):
    model, tokenizer, _ = load_model(tiny_model_factory(0))
    other, _, _ = load_model(tiny_model_factory(1))
    path = save_model(model, tokenizer, tmp_path / "m", exclusive=True)
    with pytest.raises(CheckpointError, match="already exists"):
        save_model(other, tokenizer, path, exclusive=True)
    reloaded, _, _ = load_model(path)
    assert all(
        (a == b).all() for a, b in zip(reloaded.state_dict().values(), model.state_dict().values())
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".publish.lock", "m"]
