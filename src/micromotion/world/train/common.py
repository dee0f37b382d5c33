"""What the three world trainers (`gan`, `clip`, `encoder`) share: the options every one of their command lines
takes (--out, --minutes, --batch, --resume, --export, --compact, --tiny, --device, --checkpoint-minutes,
--max-steps), its logging and one-line errors; the training loop of one invocation (wall-clock budget, stopping
cleanly on SIGTERM/SIGINT, log.jsonl, periodic checkpoints); and the checkpoint folder's state.json."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Callable

import torch

from ...devices import resolve_device
from ...errors import CheckpointError, InputError, MicromotionError

log = logging.getLogger(__name__)


def trainer_parser(prog: str, description: str, example: str, *, what: str, batch: int, export: str,
                   compact: str) -> argparse.ArgumentParser:
    """The parser of a trainer's `main()` with the common options; the trainer adds its own. `what`: the
    network --tiny makes; `batch`: the default batch size; `export`: what --export writes; `compact`: --compact's
    help."""
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=f"example: {example}")
    p.add_argument("--out", required=True, help="checkpoint folder")
    p.add_argument("--minutes", type=float, default=9.0, help="wall-clock training time of this invocation")
    p.add_argument("--batch", type=int, default=None, help=f"batch size (default {batch}; 4 with --tiny)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out (or start one)")
    p.add_argument("--export", default=None, help=f"afterwards, write {export} here")
    p.add_argument("--compact", action="store_true", help=compact)
    p.add_argument("--tiny", action="store_true", help=f"tiny 32px {what} (tests, CPU smoke runs)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--checkpoint-minutes", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=None, help="at most this many steps in this invocation")
    return p


def run_main(parser: argparse.ArgumentParser, argv, body: Callable[[argparse.Namespace, str], None],
             cudnn_benchmark: bool = True) -> None:
    """Parse `argv`, set up logging, resolve --device and call `body(args, device)`; a `MicromotionError`
    (bad input, checkpoint, missing weights) becomes a one-line `SystemExit("error: ...")`."""
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        device = _device(a.device)
        if device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            if cudnn_benchmark:
                torch.backends.cudnn.benchmark = True
        body(a, device)
    except MicromotionError as e:
        raise SystemExit(f"error: {e}") from None


def _device(name: str) -> str:
    # "auto" is CUDA or the CPU (the trainers are not tried on mps); anything else is checked by the one resolver
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(resolve_device(name))


def override(cfg, **values) -> None:
    """Set the fields of `cfg` given a value (not None): the command line's settings of a new run."""
    for k, v in values.items():
        if v is not None:
            setattr(cfg, k, v)


def existing_checkpoint(out: Path, resume: bool) -> bool:
    """Whether folder `out` holds a checkpoint to continue; `InputError` if it does and `resume` is off."""
    has_ckpt = (out / "state.json").is_file()
    if has_ckpt and not resume:
        raise InputError(f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out")
    return has_ckpt


class Clock:
    """A run's training time: `before` seconds of earlier invocations plus this one's, since `t0`."""

    def __init__(self, before: float = 0.0):
        self.before, self.t0 = before, time.time()

    def train_seconds(self) -> float:
        return round(self.before + time.time() - self.t0, 1)


def run_steps(step: Callable[[], dict[str, torch.Tensor]], log_path: Path, clock: Clock, *, desc: str,
              minutes: float, max_steps: int | None, checkpoint_minutes: float, log_every: int, progress: bool,
              record: Callable[[dict[str, float], int, float], tuple[dict, str]], save: Callable[[], None],
              more: Callable[[], bool] | None = None, digits: int = 5) -> int:
    """Call `step()` (-> statistics, tensors) until `minutes` after `clock.t0`, `max_steps` steps of this call,
    `more()` is false, or SIGTERM/SIGINT (the step in progress finishes; the caller then checkpoints). Every
    `log_every` steps (and at `max_steps`) the statistics' means (rounded to `digits`; one device sync) go to
    `record(means, steps, seconds)`, which returns the line appended to `log_path` and the progress bar's text;
    every `checkpoint_minutes`, `save()`. Returns the number of steps taken."""
    from tqdm import tqdm

    stop = StopOnSignals()  # finish the step, checkpoint, exit
    deadline = clock.t0 + minutes * 60
    last_ckpt = t_log = time.time()
    steps, acc = 0, {}
    bar = tqdm(total=max_steps, desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        with open(log_path, "a") as logf:
            while (not stop.requested and time.time() < deadline and (max_steps is None or steps < max_steps)
                   and (more is None or more())):
                for k, v in step().items():
                    acc.setdefault(k, []).append(v)
                steps += 1
                bar.update(1)
                if steps % log_every == 0 or steps == max_steps:
                    means = {k: round(float(torch.stack(v).float().mean()), digits) for k, v in acc.items()}
                    rec, description = record(means, len(next(iter(acc.values()))), time.time() - t_log)
                    logf.write(json.dumps(rec) + "\n")
                    logf.flush()
                    bar.set_description(description)
                    acc, t_log = {}, time.time()
                if time.time() - last_ckpt > checkpoint_minutes * 60:
                    save()
                    last_ckpt = time.time()
    finally:
        bar.close()
        stop.restore()
    return steps


def read_checkpoint_state(out: str | os.PathLike, fmt: str, version: int, what: str) -> dict:
    """The state.json of a checkpoint folder of format `fmt`; `CheckpointError` if missing or not that."""
    p = Path(out) / "state.json"
    if not p.is_file():
        raise CheckpointError(f"{out}: no checkpoint here (state.json missing)")
    try:
        state = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{p}: unreadable ({e})") from None
    if state.get("format") != fmt:
        raise CheckpointError(f"{p}: not a {what} checkpoint (format={state.get('format')!r})")
    if int(state.get("version", 0)) > version:
        raise CheckpointError(f"{p}: checkpoint version {state['version']} is newer than this micromotion supports")
    return state


class StopOnSignals:
    """SIGTERM/SIGINT set `requested` instead of killing the run, so a training loop can finish its step,
    checkpoint and exit cleanly (e.g. when a device's time limit ends a command). Handlers are installed on
    construction (from the main thread only; elsewhere signals are left alone) and put back by `restore()`."""

    def __init__(self):
        import threading

        self.requested = False
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handler(self, signum, frame):
        log.warning("signal %d: stopping after this step", signum)
        self.requested = True

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}



def adam_step(opt: torch.optim.Optimizer) -> int:
    """The step count of an Adam(W) optimizer (0 before its first step)."""
    for st in opt.state.values():
        return int(float(st["step"]))
    return 0
