"""Progress of a training run: the callback type, and the CLI's tqdm bar that consumes it."""

from __future__ import annotations

from collections.abc import Callable

# Called on rank 0 with {step, total, loss, lr, tokens_per_s, eta_s, phase} (see train()).
ProgressFn = Callable[[dict], None]


class ProgressBar:
    """tqdm bar fed by the progress callback: step/total, loss, tokens/s, ETA."""

    def __init__(self, desc: str = "train"):
        from tqdm import tqdm

        self.bar = tqdm(total=0, desc=desc, unit="step", dynamic_ncols=True)
        self.phase_total: tuple[str, int] | None = None

    def __call__(self, info: dict) -> None:
        """Show one progress dict: train steps move the bar, evaluations print a line.

        Args:
            info: the dict train() (or build_default_model) reports.
        """
        phase = str(info.get("phase", "train"))
        total = int(info.get("total") or 0)
        if (phase, total) != self.phase_total and phase != "eval":
            self.phase_total = (phase, total)
            self.bar.reset(total=total)
            self.bar.set_description(phase)
        if phase == "eval":
            shown = {k: v for k, v in info.items() if k.startswith(("dev_", "test"))}
            if not shown:
                return
            self.bar.write(
                f"step {info['step']}: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items())
            )
            return
        self.bar.n = int(info.get("step", 0))
        post = {}
        if info.get("loss") is not None:
            post["loss"] = f"{info['loss']:.4f}"
        if info.get("tokens_per_s"):
            post["tok/s"] = f"{info['tokens_per_s']:.0f}"
        if info.get("eta_s") is not None:
            post["eta"] = f"{info['eta_s']:.0f}s"
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        """Close the bar (leaves the last state on the terminal)."""
        self.bar.close()
