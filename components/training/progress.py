"""A progress bar over training epochs, drawn on the driver while ``TorchTrainer.fit()`` blocks.

The workers train in other processes; rank 0 logs each epoch's metrics to the MLflow run (``train_loss`` and,
when evaluated, ``dev_acer``, at step = epoch). :class:`EpochProgress` polls that run's metric history every few
seconds and advances the bar, with the latest loss and dev ACER beside it. Usage::

    with EpochProgress(tracking_uri, cfg.epochs) as progress:
        result = fit(..., tracking_uri=tracking_uri, on_start=progress.start)

Without a tracking URI (MLflow off) nothing is drawn. A failing poll is ignored: the bar never fails training.
"""
from __future__ import annotations

import sys
from typing import Any

from components.runtime import Poller, progress_bar


class EpochProgress:
    def __init__(self, tracking_uri: str | None, epochs: int, every: float = 2.0, desc: str = "train",
                 enabled: bool = True) -> None:
        self.tracking_uri, self.epochs, self.every, self.desc = tracking_uri, int(epochs), every, desc
        self.enabled = enabled and bool(tracking_uri)
        self.bar: Any = None
        self._client: Any = None
        self._run_id: str | None = None
        self._poller: Poller | None = None
        self._tty = False

    def start(self, run_id: str) -> None:
        """``fit``'s ``on_start``: the MLflow run exists, the workers are about to start."""
        if not self.enabled or self._poller is not None:
            return
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        self._run_id = run_id
        self.bar = progress_bar(self.epochs, self.desc, unit="epoch")
        self._tty = sys.stderr.isatty()
        self._poller = Poller(self.poll, every=self.every)
        self._poller.__enter__()

    def poll(self) -> None:
        if self.bar is None:
            return
        loss = self._client.get_metric_history(self._run_id, "train_loss")
        done = min(self.epochs, max((int(m.step) for m in loss), default=0))
        if loss:
            parts = [f"loss {max(loss, key=lambda m: m.step).value:.4f}"]
            acer = self._client.get_metric_history(self._run_id, "dev_acer")
            if acer:
                parts.append(f"dev ACER {100 * max(acer, key=lambda m: m.step).value:.1f}%")
            self.bar.set_postfix_str(", ".join(parts), refresh=False)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)  # redraws (at most every mininterval)
        elif self._tty:
            self.bar.refresh()  # keep the elapsed time ticking on a terminal; a piped log gets no extra copies

    def __enter__(self) -> "EpochProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._poller is not None:
            self._poller.__exit__(*exc)  # stops the thread, polls once more
        if self.bar is not None:
            self.bar.close()
