"""The rlimits-only fallback is opt-in: without bubblewrap, sandboxes refuse unless told otherwise."""

from __future__ import annotations

import shutil

import pytest

from rhlab.sandbox import Sandbox, SandboxError, allow_weak_sandbox, runner, weak_sandbox_allowed


@pytest.fixture
def no_bwrap(monkeypatch):
    """This host as if bubblewrap were not installed."""
    real_which = shutil.which
    monkeypatch.setattr(runner.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name))
    monkeypatch.delenv(runner.WEAK_ENV, raising=False)
    runner._detect.cache_clear()
    yield
    runner._detect.cache_clear()


def test_missing_bubblewrap_is_refused_with_the_fix(no_bwrap):
    with pytest.raises(SandboxError) as err:
        Sandbox()
    msg = str(err.value)
    assert "not installed" in msg
    for fix in (
        "unprivileged_userns_clone",
        "max_user_namespaces",
        "setuid",
        "docs/scale.md",
        "allow_weak: true",
        "--allow-weak-sandbox",
        runner.WEAK_ENV,
    ):
        assert fix in msg, fix


def test_opting_in_gives_the_flagged_weak_sandbox(no_bwrap):
    box = Sandbox(allow_weak=True)
    assert box.isolation == "rlimits"
    assert box.memory_bound == "none"
    res = box.run({}, [box.python, "-I", "-S", "-c", "print('ran')"])
    assert res.stdout.strip() == "ran"
    assert res.isolation == "rlimits" and res.warnings


def test_the_environment_opt_in_reaches_every_sandbox(no_bwrap):
    assert not weak_sandbox_allowed()
    allow_weak_sandbox()
    try:
        assert weak_sandbox_allowed()
        assert Sandbox().isolation == "rlimits"
    finally:
        allow_weak_sandbox(False)
    with pytest.raises(SandboxError):
        Sandbox()


def test_the_cli_refuses_and_accepts_the_flag(no_bwrap, monkeypatch, tmp_path):
    import sys

    from rhlab import cli

    response = tmp_path / "r.md"
    response.write_text("```python\ndef factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)\n```\n")
    runs = {}
    for flag in ([], ["--allow-weak-sandbox"]):
        monkeypatch.setattr(sys, "argv", ["rhlab", "grade", "--task", "factorial", "--response", str(response), *flag])
        with pytest.raises(SystemExit) as code:
            cli.main()
        runs[bool(flag)] = code.value.code
        monkeypatch.delenv(runner.WEAK_ENV, raising=False)
    assert runs[False] == 2  # refused, with the one-line error
    assert runs[True] in (0, None)


def test_explicit_rlimits_is_its_own_opt_in(no_bwrap):
    assert Sandbox(isolation="rlimits").isolation == "rlimits"


@pytest.mark.parametrize("kind", ["experiment", "run"])
def test_a_config_can_opt_in(no_bwrap, monkeypatch, kind):
    from rhlab.pipeline.config import parse_experiment
    from rhlab.train.config import parse_config

    parse = parse_experiment if kind == "experiment" else parse_config
    parse({"sandbox": {"allow_weak": False}}).sandbox.apply()
    with pytest.raises(SandboxError):
        Sandbox()
    opted_in = parse({"sandbox": {"allow_weak": True}})
    with pytest.raises(SandboxError):  # validating a config changes no process-wide state
        Sandbox()
    opted_in.sandbox.apply()  # the stage that uses the config opts in
    try:
        assert Sandbox().isolation == "rlimits"
    finally:
        monkeypatch.delenv(runner.WEAK_ENV, raising=False)
