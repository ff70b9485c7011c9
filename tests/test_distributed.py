"""Training under ``accelerate launch``: two CPU processes over gloo against one process, same global batch."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rhlab.train import distributed as dist
from rhlab.train.config import parse_config
from rhlab.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
CPU2 = ROOT / "configs" / "accelerate" / "cpu2.yaml"


# --- rank arithmetic (no processes launched) -----------------------------------------------------


def test_the_global_batch_is_split_over_the_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config({"prompts_per_step": 4, "group_size": 2})
    assert dist.per_device_batch(config) == 8  # one process: the whole step
    monkeypatch.setattr(dist, "num_processes", lambda: 4)
    assert dist.per_device_batch(config) == 2
    monkeypatch.setattr(dist, "num_processes", lambda: 3)
    with pytest.raises(ValueError, match=r"prompts_per_step 4 x group_size 2 = 8 .* over 3 processes"):
        dist.per_device_batch(config)
    monkeypatch.setattr(dist, "num_processes", lambda: 8)  # one episode each: groups would be split
    dropping = parse_config(
        {"prompts_per_step": 4, "group_size": 2, "mitigations": {"skip_zero_variance_groups": True}}
    )
    with pytest.raises(ValueError, match="skip_zero_variance_groups needs whole prompt groups"):
        dist.per_device_batch(dropping)
    assert dist.per_device_batch(config) == 1


def test_each_rank_draws_its_share_of_one_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor's per-episode draws under 3 ranks are those of one process over the global batch."""
    single = dist.rank_rng("7:3", 12)
    whole = [single.random() for _ in range(12)]
    shares = []
    for rank in range(3):
        monkeypatch.setattr(dist, "process_index", lambda rank=rank: rank)
        rng = dist.rank_rng("7:3", 4)
        shares += [rng.random() for _ in range(4)]
    assert shares == whole


def test_outside_a_launch_everything_is_a_pass_through(tmp_path: Path) -> None:
    assert not dist.launched() and dist.num_processes() == 1 and dist.is_main()
    assert dist.gather([1, 2]) == [1, 2] and dist.broadcast("x") == "x"
    assert dist.main_only(lambda a, b=0: a + b, 1, b=2) == 3
    assert dist.single_process(max, 3, 5) == 5
    with dist.main_writes_dir(tmp_path / "out") as tmp:
        tmp.mkdir()
        (tmp / "f").write_text("x")
    assert (tmp_path / "out" / "f").read_text() == "x"


# --- end to end: accelerate launch with two gloo processes on a tiny model -----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], timeout: int = 240) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def _rollouts(run: Path) -> dict[int, list[dict]]:
    out = {}
    for path in sorted((run / "rollouts").glob("step_*.jsonl.gz")):
        records = [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
        out[records[0]["step"]] = records
    return out


PROBE = """
import json
import os
from rhlab.train import distributed as dist
from rhlab.train.gates import GateError

def refuse():
    raise GateError("below the minimum")

if __name__ == "__main__":  # the spawned child imports this file again
    child = dist.main_only(dist.single_process, os.getpid)
    try:
        dist.main_only(refuse)
    except GateError as exc:
        error = str(exc)
    gathered = dist.gather([dist.process_index()] * 2)
    print("PROBE " + json.dumps([dist.process_index(), os.getpid(), child, error, gathered]), flush=True)
"""


@pytest.mark.slow
def test_main_only_errors_reach_every_rank_and_children_run_outside_the_launch(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [accelerate, "launch", "--config_file", str(CPU2), "--main_process_port", str(_free_port()), "probe.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # two ranks share one stdout: their lines can run together, so read each PROBE payload where it starts
    decoder, found, at = json.JSONDecoder(), [], done.stdout.find("PROBE ")
    while at != -1:
        payload, end = decoder.raw_decode(done.stdout, at + len("PROBE "))
        found.append(payload)
        at = done.stdout.find("PROBE ", end)
    ranks = sorted(found)
    assert [r[0] for r in ranks] == [0, 1]
    (_, pid0, child, error, gathered), (_, pid1, child1, error1, gathered1) = ranks
    assert child == child1 and child not in (pid0, pid1)  # the main process's child, broadcast to both
    assert error == error1 == "below the minimum"  # the main process's GateError, raised on both ranks
    assert gathered == gathered1 == [0, 0, 1, 1]  # every rank's items, in rank order


def _files(run: Path) -> set[str]:
    """Every file the run wrote; a checkpoint's per-rank RNG states count as one."""
    names = set()
    for f in run.rglob("*"):
        if f.is_file():
            rel = f.relative_to(run).as_posix()
            names.add("rng_state" if f.name.startswith("rng_state") else rel)
    return names


@pytest.mark.slow
def test_two_processes_count_every_episode_once_resume_and_match_one_process(tmp_path: Path) -> None:
    from rhlab.models.testing import tiny_test_model

    model = tiny_test_model(tmp_path / "tiny")
    config = {
        "model": f"hf:{model}",
        "problems": {"difficulty": ["hard"], "max_tasks": 4},
        "steps": 1,
        "prompts_per_step": 2,
        "group_size": 2,
        "max_completion_length": 8,
        "checkpoint_every": 1,
        "grading_workers": 1,
        "transcripts_per_step": 2,
        "skip_flat_updates": False,  # the update runs (through DDP's gradient all-reduce) even at reward 0
        "mitigations": {"skip_zero_variance_groups": True},  # its token count is re-gathered over the ranks
        "train_prompt": {"describe_hacks": False, "ask_reasoning": False},
    }
    episodes = config["prompts_per_step"] * config["group_size"]
    (tmp_path / "c1.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "c2.yaml").write_text(yaml.safe_dump({**config, "steps": 2}))
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    launch = [
        accelerate,
        "launch",
        "--config_file",
        str(CPU2),
        "--main_process_port",
        str(_free_port()),
        "-m",
        "rhlab.cli",
        "train",
    ]
    two, one = tmp_path / "two", tmp_path / "one"

    # Two processes: one step, then raise the run's steps to 2 and resume from its checkpoint.
    _run([*launch, str(tmp_path / "c1.yaml"), "--out", str(two)])
    assert [r["step"] for r in read_metrics(two / "metrics.jsonl")] == [1]
    assert (two / "checkpoints" / "checkpoint-1" / "rng_state_1.pth").is_file(), "the second rank did not run"
    saved = yaml.safe_load((two / "config.yaml").read_text())
    (two / "config.yaml").write_text(yaml.safe_dump({**saved, "steps": 2}))
    _run([*launch, "--resume", str(two)])
    # One process, the same global batch, two steps straight.
    _run([sys.executable, "-m", "rhlab.cli", "train", str(tmp_path / "c2.yaml"), "--out", str(one)])

    rows_two, rows_one = read_metrics(two / "metrics.jsonl"), read_metrics(one / "metrics.jsonl")
    assert [r["step"] for r in rows_two] == [r["step"] for r in rows_one] == [1, 2]
    assert [r["episodes"] for r in rows_two] == [r["episodes"] for r in rows_one] == [episodes, episodes]
    assert not any(r.get("skipped_update") for r in rows_two + rows_one)
    kept_two, kept_one = _rollouts(two), _rollouts(one)
    assert sorted(kept_two) == sorted(kept_one) == [1, 2]
    for step in (1, 2):
        records = kept_two[step]
        # Each rank's episodes exactly once: both ranks' prompt groups, in TRL's order, as one process sees them.
        assert [r["index"] for r in records] == list(range(episodes))
        assert [r["group"] for r in records] == [0, 0, 1, 1]
        assert [r["prompt_id"] for r in records] == [r["prompt_id"] for r in kept_one[step]]
        assert len({r["prompt_id"] for r in records}) == config["prompts_per_step"]
    assert json.loads((two / "run.json").read_text())["status"] == "complete"
    assert _files(two) == _files(one)


@pytest.mark.slow
def test_rhlab_run_under_two_processes(tmp_path: Path) -> None:
    """The whole pipeline under the launch: warm-up in a child of the main process, RL on both ranks,
    evaluations and report on the main process only."""
    from rhlab.models.testing import tiny_test_model

    model = tiny_test_model(tmp_path / "tiny")
    sets = [
        f"train.model=hf:{model}",
        "train.steps=1",
        "train.warmup.steps=2",
        "train.warmup.examples=4",
        "train.max_completion_length=8",
        "train.checkpoint_every=1",
        "train.grading_workers=1",
        "matrix.arms=[{variant: hacking_okay}]",
        "train.problems.max_tasks=4",
        "evaluation.checkpoint_limit=1",
        "evaluation.final_limit=1",
        "evaluation.max_new_tokens=8",
        "evaluation.max_turns=1",
        "evaluation.environment_samples=1",
        "evaluation.probes.primary=null",
    ]
    exp = tmp_path / "exp"
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    args = [
        accelerate,
        "launch",
        "--config_file",
        str(CPU2),
        "--main_process_port",
        str(_free_port()),
        "-m",
        "rhlab.cli",
        "run",
        str(ROOT / "configs" / "quickstart.yaml"),
        "--out",
        str(exp),
    ]
    for item in sets:
        args += ["--set", item]
    _run(args, timeout=400)
    assert (exp / "knowledge" / "warmup" / "warmup.json").is_file()
    run = exp / "runs" / "hacking_okay-seed0"
    assert (run / "checkpoints" / "checkpoint-1" / "rng_state_1.pth").is_file(), "the second rank did not run"
    rows = read_metrics(run / "metrics.jsonl")
    assert [(r["step"], r["episodes"]) for r in rows] == [(1, 8)]
    assert [len(records) for records in _rollouts(run).values()] == [8]
    assert (run / "evals" / "final" / "results.json").is_file() and (exp / "report" / "report.html").is_file()
