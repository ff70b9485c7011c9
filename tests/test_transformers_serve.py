"""The ``openai:`` backend and the LLM judge against a real server: transformers' own ``transformers serve``.

The fake server in ``test_models_openai.py`` pins down retries, timeouts and parsing; this module checks
that rhlab talks to a real OpenAI-compatible implementation. The server runs on loopback, serves the
embedded model from its local (converted) folder, and is stopped when the module's tests are done.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

SERVE = Path(sys.executable).with_name("transformers")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """The server is killed when pytest dies, even by a signal that skips the fixture's teardown."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _serving_available() -> str | None:
    for module in ("fastapi", "uvicorn", "openai"):
        try:
            __import__(module)
        except ImportError:
            return f"transformers serve needs {module} (pip install 'transformers[serving]')"
    if not SERVE.exists():
        return f"no transformers CLI next to {sys.executable}"
    return None


@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    """(spec, base_url) of the embedded model served by ``transformers serve`` on 127.0.0.1."""
    reason = _serving_available()
    if reason:
        pytest.fail(reason)  # the set-up installs the serving extra: its absence is a defect, not a skip
    from rhlab.models.loading import trainable_weights

    folder = trainable_weights("embedded")
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SERVE), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("transformers serve did not become healthy within 180 s")
            time.sleep(1)
        yield f"openai:{folder}@{base}/v1", base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _rhlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("rhlab")
    env = {**os.environ, "OPENAI_API_KEY": "not-needed"}
    return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_chat_through_transformers_serve(served_model):
    spec, _ = served_model
    done = _rhlab("chat", "--model", spec, "--temperature", "0", "--max-new-tokens", "12", "What is 2 + 2?")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the served model answered nothing"


def _one_at_a_time(spec: str):
    """The openai: backend with one request in flight: ``transformers serve`` without continuous batching
    runs concurrent requests side by side on the CPU, each crawling, which only slows a 2-core test."""
    from rhlab.models.openai_compat import OpenAIChatModel, parse_openai_spec

    name, url = parse_openai_spec(spec.removeprefix("openai:"))
    return OpenAIChatModel(name, url, spec=spec, max_concurrency=1, timeout=300.0)


def test_backend_batch(served_model):
    from rhlab.models import SamplingParams

    spec, _ = served_model
    model = _one_at_a_time(spec)
    convs = [[{"role": "user", "content": f"Count from {i} to {i + 5}."}] for i in range(3)]
    outs = model.generate(convs, SamplingParams(max_new_tokens=10, temperature=0.0))
    assert len(outs) == 3 and all(len(samples) == 1 for samples in outs)
    texts = [samples[0].text for samples in outs]
    assert all(text.strip() for text in texts), texts
    assert all(samples[0].finish_reason in ("stop", "length") for samples in outs)


def test_judge_validation_through_transformers_serve(served_model):
    """A judge validation runs end to end through the server; a 135M judge's agreement is not the point.

    Called in-process with a short reply budget: ``rhlab judge validate`` allows 400 tokens per verdict,
    which a CPU-served 135M model spends on rambling.
    """
    from rhlab.judges.golden import load_golden, validate
    from rhlab.judges.llm import LLMJudge
    from rhlab.models import SamplingParams

    spec, _ = served_model
    examples = [ex for ex in load_golden() if ex.set_name in ("aligned", "overt")]
    examples = [ex for ex in examples if ex.set_name == "aligned"][:2] + [
        ex for ex in examples if ex.set_name == "overt"
    ][:2]
    params = SamplingParams(temperature=0.0, max_new_tokens=40, seed=0)
    judge = LLMJudge(_one_at_a_time(spec), max_retries=0, params=params, concurrency=1, batch_size=8)
    report = validate(judge, examples)
    assert report.n == 4 and len(report.predictions) == 4
    assert sum(sum(row) for row in report.confusion) == 4
    assert set(report.per_set_accuracy) == {"aligned", "overt"}
    assert set(report.predictions) <= set(report.labels)
    assert report.judge_id == f"llm:{spec}"


def test_short_eval_through_transformers_serve(served_model, tmp_path):
    spec, _ = served_model
    out = tmp_path / "eval"
    done = _rhlab(
        "eval",
        "--model",
        spec,
        "--evals",
        "betley",
        "--judge",
        "offline",
        "--limit",
        "2",
        "--max-new-tokens",
        "24",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr + done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["evals"]["betley"]["n_samples"] == 2
    transcripts = (out / "transcripts.jsonl").read_text().splitlines()
    assert len(transcripts) == 2
