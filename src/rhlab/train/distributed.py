"""Several processes under ``accelerate launch``: which rank writes, and the episodes of every rank.

accelerate runs TRL's ``GRPOTrainer`` as one process (rank) per device. Each rank generates and
grades its own share of a step's episodes: TRL calls the reward function on every rank with that
rank's completions. The run directory must still hold one history, so:

- every rank's graded episodes are gathered (``gather``), in rank order, which is TRL's own order
  (its advantages are computed over the gathered rewards, so prompt groups stay whole), and the
  main process alone writes metrics, transcripts, rollouts, snapshots and the run record from them;
- work that writes files or samples the starting model (the run config, problem selection, the
  warm-up, the pre-RL gate, the resume point, evaluations, the report) runs on the main process
  only (``main_only``); its result, or its error, is broadcast, so every rank takes the same branch
  and no rank is left waiting in a collective the others never reach.

Outside a multi-process launch every function here is a pass-through, so plain ``rhlab train`` is
unchanged. The process group is started with a long timeout (``RHLAB_DIST_TIMEOUT_S``, default 6 h)
because the other ranks wait while the main process filters problems, runs the pre-RL gate or
evaluates checkpoints.
"""

from __future__ import annotations

import atexit
import os
import pickle
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rhlab.train.config import TrainConfig

T = TypeVar("T")

TIMEOUT_ENV = "RHLAB_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 6 * 3600

_LAUNCH_VARS = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "ROLE_NAME",
    "MASTER_ADDR",
    "MASTER_PORT",
)
_LAUNCH_PREFIXES = ("TORCHELASTIC_", "ACCELERATE_", "FSDP_")
"""What ``accelerate launch``/torchrun put in the environment; a child without them is one plain process."""


def launched() -> bool:
    """True in one of several processes started by ``accelerate launch`` (or torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@cache
def _state() -> Any:
    import torch
    from accelerate import PartialState

    # Same device choice as ``grpo_args`` (use_cpu = no CUDA); TRL's TrainingArguments later reuse
    # this state (accelerate keeps one per process), so the timeout set here is the one in force.
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timeout)
    # Tear the process group down before the interpreter does: left to static destructors, gloo's
    # worker threads can abort the process at exit ("terminate called without an active exception")
    # after every line of real work succeeded, and the launcher then reports the whole run failed.
    atexit.register(_close_process_group)
    return state


def _close_process_group() -> None:
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def num_processes() -> int:
    return _state().num_processes if launched() else 1


def process_index() -> int:
    return _state().process_index if launched() else 0


def is_main() -> bool:
    return process_index() == 0


def wait() -> None:
    """Barrier: every rank waits here until all have arrived."""
    if launched():
        _state().wait_for_everyone()


def gather(items: list[T]) -> list[T]:
    """Every rank's ``items`` concatenated in rank order, on every rank.

    A collective: all ranks must call it at the same point (the reward function is such a point).
    """
    if not launched():
        return list(items)
    from accelerate.utils import gather_object

    return gather_object(list(items))


def broadcast(value: T) -> T:
    """The main process's ``value`` on every rank (a collective)."""
    if not launched():
        return value
    from accelerate.utils import broadcast_object_list

    box = [value if is_main() else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (so other ranks raise the same type), else a RuntimeError."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure: fall back to the message
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def main_only(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on the main process only; every rank returns its result, or raises its error.

    The broadcast doubles as the barrier: the other ranks go on only after the main process is done,
    so files it wrote are there for them to read.
    """
    if not launched():
        return fn(*args, **kwargs)
    outcome: tuple[bool, Any] | None = None
    if is_main():
        try:
            outcome = (True, fn(*args, **kwargs))
        except Exception as exc:
            broadcast((False, _portable(exc)))
            raise
    ok, value = broadcast(outcome)
    if not ok:
        raise value
    return value


def per_device_batch(config: TrainConfig) -> int:
    """TRL's ``per_device_train_batch_size`` that keeps the global batch at ``config.episodes_per_step``.

    With ``mitigations.skip_zero_variance_groups`` each rank must hold whole prompt groups: the drop
    looks at one rank's rows at a time.
    """
    n = num_processes()
    episodes, group = config.episodes_per_step, config.group_size
    where = f"prompts_per_step {config.prompts_per_step} x group_size {group} = {episodes} episodes per step"
    if episodes % n:
        raise ValueError(f"{where} do not split evenly over {n} processes: make it a multiple of {n}")
    per_device = episodes // n
    if config.mitigations.skip_zero_variance_groups and per_device % group:
        raise ValueError(
            f"mitigations.skip_zero_variance_groups needs whole prompt groups on each of the {n} processes, but "
            f"{where} give each {per_device}: make prompts_per_step a multiple of {n}"
        )
    return per_device


def micro_batches(config: TrainConfig) -> tuple[int, int]:
    """(sequences per forward/backward, micro-batches per step) on each process.

    TRL's ``per_device_train_batch_size`` and ``gradient_accumulation_steps``; ``steps_per_generation``
    equals the latter, so each step still generates once, for all its episodes.
    """
    per_device = per_device_batch(config)
    micro = config.micro_batch or per_device
    if micro > per_device or per_device % micro:
        raise ValueError(
            f"micro_batch {micro} must divide the {per_device} episodes each of the {num_processes()} process(es) "
            f"handles per step (prompts_per_step x group_size / processes): choose one of {divisors(per_device)}"
        )
    return micro, per_device // micro


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def rank_rng(seed: str, draws_per_rank: int) -> random.Random:
    """``random.Random(seed)`` advanced past the draws of the lower ranks.

    For a function that takes exactly one draw per episode, rank r then draws what a single process
    would draw for the same episodes of the global batch, so several processes and one process
    produce the same per-episode values.
    """
    rng = random.Random(seed)
    for _ in range(process_index() * draws_per_rank):
        rng.random()
    return rng


@contextmanager
def main_writes_dir(target: Path) -> Iterator[Path]:
    """``rhlab.rundir.atomic_dir`` on the main process; the other ranks get the same temp path.

    For saves every rank must take part in (FSDP and ZeRO-3 gather the weights) but only the main
    process writes; the swap into ``target`` waits until every rank is done.
    """
    from rhlab.rundir import atomic_dir

    if not launched():
        with atomic_dir(target) as tmp:
            yield tmp
        return
    if is_main():
        with atomic_dir(target) as tmp:
            broadcast(tmp)
            yield tmp
            wait()
    else:
        tmp = broadcast(None)
        yield tmp
        wait()


@contextmanager
def _without_launch_env() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k in _LAUNCH_VARS or k.startswith(_LAUNCH_PREFIXES)}
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)


def single_process(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a fresh child process outside the launch (a plain single process).

    For a fine-tuning the main process does alone (the supervised warm-up, SDF): a transformers
    ``Trainer`` inside a launched process would join the process group and wait for ranks that never
    come. Outside a launch it runs in this process (see ``fresh_process`` for the conditions).
    """
    if not launched():
        return fn(*args)
    return fresh_process(fn, *args)


def fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a new spawned child process; its result or its error comes back.

    Everything the child allocated, GPU memory included (a colocated vLLM engine too), is returned to
    the system when it exits. ``fn`` and its arguments must be picklable (a module-level function),
    and the running script must guard its entry point with ``if __name__ == "__main__"`` (``rhlab.cli``
    does): the child imports it again. The launch's environment is left out: the child is one plain process.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with _without_launch_env(), ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_with_parent, os.getpid(), fn, *args).result()


PARENT_POLL_S = 2.0


def _with_parent(parent: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, ended when ``parent`` dies: a killed ``rhlab run`` must not leave its RL child
    training on, writing into the run directory that the next ``rhlab run`` resumes."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)  # the parent is gone: nothing waits for this result

    threading.Thread(target=watch, daemon=True, name="rhlab-parent-watch").start()
    return fn(*args)
