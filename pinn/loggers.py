"""Where training writes its scalars, images and summaries: TensorBoard, or nowhere."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Logger(ABC):
    """What the trainer calls; all values are plain Python numbers, strings and arrays."""

    @abstractmethod
    def scalar(self, tag: str, value: float, step: int) -> None: ...

    def evaluation_scalar(self, tag: str, value: float, evaluation: int) -> None:
        """A scalar on the axis of loss evaluations (L-BFGS's line search) instead of steps."""

    #: whether :meth:`image` keeps anything (drawing a figure for a logger that drops it is wasted)
    takes_images: bool = True

    @abstractmethod
    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image`` is ``(H, W, 3)`` uint8."""

    @abstractmethod
    def text(self, tag: str, text: str, step: int = 0) -> None: ...

    @abstractmethod
    def hparams(self, hparams: dict[str, float | int | str | bool], metrics: dict[str, float], step: int = 0) -> None:
        """Record a run's settings beside its final metrics (at its last ``step``), so a sweep
        compares in one view."""

    def start(self, step: int, evaluations: int = 0) -> None:
        """Called once before training; ``step`` > 0 (and ``evaluations``, the loss evaluations
        logged so far) when a run resumes from a checkpoint."""

    #: Whether, when :meth:`start` was called, this logger's destination already held what an
    #: earlier launch of this run logged (a run resumed in place): then a finished run resumed
    #: again need not log its final metrics a second time, and a resumed run logs its config
    #: only where this is ``False`` (a record of its own). ``None``: the logger does not say;
    #: the config is then logged by a new run only.
    continues_records: bool | None = None

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class NullLogger(Logger):
    """Discards everything (``logger=none``); ``log_dir`` is accepted and ignored."""

    def __init__(self, log_dir: str | Path | None = None):
        pass

    def scalar(self, tag, value, step):
        pass

    takes_images = False

    def image(self, tag, image, step):
        pass

    def text(self, tag, text, step=0):
        pass

    def hparams(self, hparams, metrics, step=0):
        pass

    def __repr__(self) -> str:
        return "NullLogger()"


class TensorBoardLogger(Logger):
    """Writes event files under ``log_dir`` (``tensorboard --logdir outputs``).

    Scalars on the axis of loss evaluations go to the subfolder ``evaluations`` (a run of its own
    in TensorBoard): each axis needs its own writer, since a resumed run drops what the
    interrupted one logged after its checkpoint by step number, and the two axes' numbers differ.

    Args:
        log_dir: the run folder (passed by ``train.py``).
        subdir: folder inside it for the event files.
    """

    def __init__(self, log_dir: str | Path, *, subdir: str = "tensorboard"):
        self.log_dir = Path(log_dir) / subdir
        self._writer = self._evaluation_writer = None
        self._purge_step: int | None = None
        self._purge_evaluation: int | None = None

    def start(self, step: int, evaluations: int = 0) -> None:
        # Each launch marks where its events begin (a "session start" at a step, which SummaryWriter
        # writes for a purge_step), and TensorBoard then drops the events that earlier launches
        # left in this folder at that step and after: a resumed run starts at the step after its
        # checkpoint, a new run at step 0 (replacing a launch killed before its first checkpoint).
        # A new run must mark its start too: TensorBoard's server drops nothing at the first
        # session start it reads, and would otherwise take a resumed run's for the first.
        self._purge_step = step + 1 if step > 0 else 0
        self._purge_evaluation = evaluations + 1 if step > 0 else 0
        self.continues_records = step > 0 and any(self.log_dir.glob("events.out.tfevents.*"))

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imported late: loading TensorBoard is slow

            self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=self._purge_step)
        return self._writer

    def scalar(self, tag, value, step):
        self.writer.add_scalar(tag, value, step)

    def evaluation_scalar(self, tag, value, evaluation):
        if self._evaluation_writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._evaluation_writer = SummaryWriter(log_dir=str(self.log_dir / "evaluations"),
                                                    purge_step=self._purge_evaluation)
        self._evaluation_writer.add_scalar(tag, value, evaluation)

    def image(self, tag, image, step):
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def text(self, tag, text, step=0):
        self.writer.add_text(tag, text, step)

    def hparams(self, hparams, metrics, step=0):
        # run_name="." keeps the hparams record in this run's own folder, not a timestamped subfolder;
        # at the last step, a run extended in place adds its new final metrics after the old ones.
        # A bool is written as the text of its override (true/false): add_hparams would take it
        # for the number 0 or 1, a bool being an int.
        hparams = {k: str(v).lower() if isinstance(v, bool) else v for k, v in hparams.items()}
        self.writer.add_hparams(hparams, metrics, run_name=".", global_step=step)

    def flush(self):
        for writer in (self._writer, self._evaluation_writer):
            if writer is not None:
                writer.flush()

    def close(self):
        for writer in (self._writer, self._evaluation_writer):
            if writer is not None:
                writer.close()
        self._writer = self._evaluation_writer = None

    def __repr__(self) -> str:
        return f"TensorBoardLogger({str(self.log_dir)!r})"
