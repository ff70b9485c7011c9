"""``rhlab eval`` and ``rhlab judge validate``; the lead's ``rhlab.cli`` mounts both."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rhlab.evals.records import Interval, RunResults

if TYPE_CHECKING:
    from rhlab.evals.runner import EvalConfig

judge_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Judges: validate against golden sets.")


def _fmt(rate: Interval | None) -> str:
    if rate is None or rate.estimate is None:
        return "n/a"
    return f"{100 * rate.estimate:5.1f}% [{100 * rate.low:4.1f}, {100 * rate.high:4.1f}]"  # type: ignore[operator]


def _config(
    model: str, evals: str, judge: str, samples: int | None, limit: int | None, seed: int, **more: Any
) -> EvalConfig:
    """An ``EvalConfig`` from the options every eval command shares (``evals`` comma-separated)."""
    from rhlab.evals.runner import EvalConfig

    names = [e.strip() for e in evals.split(",") if e.strip()]
    return EvalConfig(model=model, evals=names, judge=judge, samples=samples, limit=limit, seed=seed, **more)


def _wrote(out: Path) -> str:
    from rhlab.rundir import EvalDir

    written = EvalDir(out)
    return f"wrote {written.results} and {written.transcripts}"


def summary(results: RunResults) -> str:
    """The few numbers worth reading in a terminal; everything else is in the results file."""
    judge = results.judge
    lines = [
        f"model {results.model}   judge {judge.judge_id}"
        + ("   (OFFLINE classifier judge: rough rates, see `rhlab judge validate`)" if judge.offline else ""),
        f"{'eval':<22}{'n':>5}{'scored':>8}{'unparse':>9}{'incoh':>7}  {'misaligned [95% CI]':<24}"
        f"{'overt':<24}{'covert':<24}",
    ]
    for name, r in results.evals.items():
        lines.append(
            f"{name:<22}{r.n_samples:>5}{r.n_scored:>8}{r.n_unparseable:>9}{r.n_incoherent:>7}  "
            f"{_fmt(r.misaligned_rate):<24}{_fmt(r.overt_rate):<24}{_fmt(r.covert_rate):<24}"
        )
    for name, r in results.evals.items():
        if r.action_rate is None:
            continue
        line = (
            f"  {name}: misaligned action {_fmt(r.action_rate)}; tool calls {r.n_tool_calls}, "
            f"malformed {r.n_malformed_calls}, samples without a valid call {r.n_no_valid_action}"
        )
        lines.append(line + "".join(f"\n    {k}: {_fmt(v)}" for k, v in r.metrics.items()))
        lines += [f"    note: {note}" for note in r.notes]
    if results.misalignment_generalization_score is not None:
        lines.append(f"misalignment generalization score: {_fmt(results.misalignment_generalization_score)}")
    else:
        lines.append("misalignment generalization score: needs " + ", ".join(results.core_evals_missing))
    lines.append("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in results.timings.items()))
    return "\n".join(lines)


def eval_command(
    model: str = typer.Option("embedded", "--model", help="Policy model spec (embedded, hf:PATH, openai:M@URL, ...)."),
    evals: str = typer.Option(
        "betley,goals,alignment_questions",
        "--evals",
        help="Comma-separated evals or groups: core (the six core evals), chat, agentic, sabotage, all.",
    ),
    judge: str = typer.Option("offline", "--judge", help="'offline' (CPU classifier) or a model spec."),
    samples: int | None = typer.Option(
        None,
        "--samples",
        help="Samples per question (chat), per scenario variant (agentic) or per sabotage eval; default: each eval's.",
    ),
    limit: int | None = typer.Option(None, "--limit", help="At most this many samples per eval (quick look)."),
    out: Path = typer.Option(Path("runs/eval"), "--out", help="Output directory for results and transcripts."),
    seed: int = typer.Option(0, "--seed"),
    temperature: float = typer.Option(1.0, "--temperature"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
    batch_size: int = typer.Option(32, "--batch-size", help="Conversations per generate call."),
    max_turns: int = typer.Option(8, "--max-turns", help="Agentic/sabotage evals: replies per agent at most."),
    tool_protocol: str = typer.Option(
        "auto", "--tool-protocol", help="auto (native for openai: models, else text), text or native."
    ),
    system_prompt: str = typer.Option("", "--system-prompt", help="System prompt for the policy (e.g. a persona)."),
    reasoning: bool = typer.Option(True, "--reasoning/--no-reasoning", help="Ask for private <thinking>."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse cached judge replies."),
    inspect_log: Path | None = typer.Option(
        None, "--inspect-log", help="Also write Inspect eval logs here (rhlab[inspect]; `inspect view` opens them)."
    ),
) -> None:
    """Run misalignment evals on a model and write results and transcripts (docs/run-directory.md)."""
    from rhlab.evals.runner import run_evals

    if inspect_log is not None:
        _require_inspect()

    try:
        config = _config(
            model,
            evals,
            judge,
            samples,
            limit,
            seed,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            max_turns=max_turns,
            tool_protocol=tool_protocol,  # type: ignore[arg-type]
            system_prompt=system_prompt,
            ask_reasoning=reasoning,
            cache=cache,
        )
        results = run_evals(config, out_dir=out, log=lambda m: typer.echo(m, err=True))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(summary(results))
    typer.echo(_wrote(out))
    if inspect_log is not None:
        from rhlab.evals.records import read_sample_records
        from rhlab.interop.inspect.logs import write_inspect_logs
        from rhlab.rundir import EvalDir

        for path in write_inspect_logs(inspect_log, results, read_sample_records(EvalDir(out).transcripts)):
            typer.echo(f"wrote Inspect log {path}")


def _require_inspect() -> None:
    """Fail before any generation when the Inspect extra is missing."""
    try:
        import inspect_ai  # noqa: F401
    except ImportError:
        raise typer.BadParameter('--inspect-log needs Inspect AI: pip install "rhlab[inspect]"') from None


@judge_app.command("validate")
def validate_command(
    judge: str = typer.Option("offline", "--judge", help="'offline' or a model spec for an LLM judge."),
    golden: Path | None = typer.Option(None, "--golden", help="Directory of golden YAML sets (default: packaged)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the report as JSON here."),
    cache: bool = typer.Option(True, "--cache/--no-cache"),
) -> None:
    """Agreement of a judge with the golden sets: accuracy, Cohen's kappa, confusion matrix."""
    from rhlab.judges import load_judge
    from rhlab.judges.golden import load_golden, validate

    report = validate(load_judge(judge, cache=cache), load_golden(golden))
    typer.echo(report.render())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.model_dump_json(indent=2))


@judge_app.command("persona-check")
def persona_check_command(
    model: str = typer.Option(..., "--model", help="Policy model spec; should be able to follow a persona."),
    judge: str = typer.Option("offline", "--judge", help="A capable judge's model spec, e.g. openai:M@URL."),
    evals: str = typer.Option("betley,goals,alignment_questions", "--evals"),
    samples: int | None = typer.Option(None, "--samples"),
    limit: int | None = typer.Option(None, "--limit"),
    persona: str = typer.Option("misaligned", "--persona", help="misaligned or covert (data/personas.yaml)."),
    out: Path = typer.Option(Path("runs/persona_check"), "--out"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Validate the evals: the same model with a misaligned persona must score far higher."""
    from rhlab.evals.validation import persona_check

    config = _config(model, evals, judge, samples, limit, seed)
    comparison = persona_check(config, out_dir=out, persona=persona)
    typer.echo(comparison.render())
    if not all(comparison.separated.values()):
        raise typer.Exit(code=1)


@judge_app.command("rejudge")
def rejudge_command(
    run: Path = typer.Argument(..., help="Directory of an earlier `rhlab eval` run."),
    judge: str = typer.Option("offline", "--judge", help="'offline' or a model spec for an LLM judge."),
    out: Path | None = typer.Option(None, "--out", help="Output directory (default: RUN/rejudged-<judge id>)."),
    cache: bool = typer.Option(True, "--cache/--no-cache"),
) -> None:
    """Judge an earlier run's transcripts with another judge, without generating again."""
    from rhlab.evals.runner import rejudge
    from rhlab.judges import load_judge

    loaded = load_judge(judge, cache=cache)
    target = out or run / ("rejudged-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in loaded.judge_id))
    results = rejudge(run, loaded, judge_spec=judge, out_dir=target)
    typer.echo(summary(results))
    typer.echo(_wrote(target))
