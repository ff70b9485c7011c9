"""rhlab probe: score the paired log-odds battery, compare two checkpoints, validate the instrument."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rhlab.evals.probes.config import ProbeConfig
from rhlab.strict import cli_options

probe_app = typer.Typer(no_args_is_help=True, help=__doc__)
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[red]error[/]: {message}", highlight=False)
    raise typer.Exit(2)


@probe_app.command("score")
@cli_options(ProbeConfig, ["subscales", "split", "batch_size", "neutral_nll"])
def score_command(
    config: ProbeConfig,
    model: str = typer.Option("embedded", "--model", help="Model spec: embedded, hf:PATH, vllm:PATH, openai:..."),
    out: Path = typer.Option(..., "--out", help="Where to write probes.json."),
    start: Path | None = typer.Option(None, "--start", help="The start policy's probes.json (adds KL/NLL shift)."),
) -> None:
    """Score every item of the battery on MODEL and write per-item and per-subscale results."""
    from rhlab.evals.probes.items import ProbeDataError
    from rhlab.evals.probes.score import run_probes
    from rhlab.models.loading import load_model

    if config.subscales == []:
        config = config.model_copy(update={"subscales": None})
    chat = load_model(model)
    try:
        results = run_probes(chat, out, config, start_results=start)
    except ProbeDataError as exc:
        _fail(str(exc))
    table = Table("subscale", "items", "mean P(target)", "saturated", title=f"probes: {model}")
    for name, s in results["subscales"].items():
        table.add_row(name, str(s["n_items"]), f"{s['mean_p']:.1f}", f"{s['saturated_low'] + s['saturated_high']}")
    console.print(table)
    console.print(f"{len(results['items'])} items in {results['seconds']:.1f} s -> {out}")


@probe_app.command("compare")
@cli_options(ProbeConfig, ["margin", "n_boot", "seed"])
def compare_command(
    config: ProbeConfig,
    baseline: Path = typer.Argument(..., help="probes.json of the baseline checkpoint (A)."),
    other: Path = typer.Argument(..., help="probes.json of the checkpoint compared with it (B)."),
    subscale: str = typer.Option("broad", "--subscale", help="Subscale the verdict is computed on ('all' pools)."),
    validation: Path | None = typer.Option(
        None, "--validation", help="probe_validation.json of `rhlab probe validate` for this model."
    ),
    out: Path | None = typer.Option(None, "--out", help="Also write the comparison as JSON."),
) -> None:
    """B minus A on the shared items: mean paired shift with CI, robust intercept, TOST and a verdict."""
    from rhlab.evals.probes.compare import ProbeInputError, compare_results, read_results

    gates_passed = False
    if validation is not None:
        if not validation.is_file():
            _fail(f"No validation file at {validation}: write it with `rhlab probe validate --out {validation}`.")
        g = json.loads(validation.read_text())
        gates_passed = bool(g.get("total")) and g.get("passed") == g.get("total")
    try:
        result = compare_results(
            read_results(baseline),
            read_results(other),
            margin=config.margin,
            subscale=None if subscale == "all" else subscale,
            gates_passed=gates_passed,
            n_boot=config.n_boot,
            seed=config.seed,
        )
    except ProbeInputError as exc:
        _fail(str(exc))
    table = Table("figure", "value", title=f"{other} - {baseline} ({result['subscale']})")
    table.add_row(
        "mean Δmargin",
        f"{result['mean']:+.3f} [{result['ci_low']:+.3f}, {result['ci_high']:+.3f}] nats "
        f"(odds ratio {result['odds_ratio']:.2f})",
    )
    pts = result["points"]
    table.add_row(
        "mean shift (points)", f"{pts['mean']:+.2f} [{pts['ci_low']:+.2f}, {pts['ci_high']:+.2f}]; " + pts["conversion"]
    )
    r = result["robust"]
    table.add_row("robust intercept", f"{r['mean']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] nats")
    table.add_row("per-item sd", f"{result['sd_item_diff']:.3f} nats ({result['n_items']} items)")
    table.add_row(f"items for TOST ±{config.margin:g} (80 % power)", str(result["items_for_tost_power"]))
    t, rt = result["tost"], r["tost"]
    table.add_row(
        f"TOST ±{config.margin:g} nats",
        f"mean {'pass' if t['passed'] else 'fail'} (90 % CI [{t['ci_low']:+.3f}, "
        f"{t['ci_high']:+.3f}]); intercept {'pass' if rt['passed'] else 'fail'}",
    )
    mv = result["movement"]
    table.add_row(
        "movement",
        f"mean |Δmargin| {mv['mean_abs_margin_shift']:.3f} nats, mean |Δp| "
        f"{mv['mean_abs_shift']:.2f} points, KL {mv['kl_forced_choice']:.4f}, "
        f"{mv['items_moved_5_points']} items moved > 5 points",
    )
    mc = result["manipulation_check"]
    detail = f"{mc['mean']:+.3f} [{mc['ci_low']:+.3f}, {mc['ci_high']:+.3f}] nats" if "mean" in mc else mc.get("note")
    table.add_row("manipulation check", f"{'pass' if mc['passed'] else 'fail'} ({detail})")
    table.add_row("gates", "passed" if gates_passed else "not passed / not given")
    console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    print(f"verdict: {result['verdict']}")


@probe_app.command("check-items")
def check_items_command(
    start: Path | None = typer.Option(None, "--start", help="The start policy's probes.json (margins, token counts)."),
    split: str = typer.Option("all", "--split", help="dev, test or all."),
    out: Path | None = typer.Option(None, "--out", help="Also write the per-item findings as JSON."),
) -> None:
    """Count the items that break the minimal-pair rules, per subscale (calibration and tokens need --start)."""
    from rhlab.evals.probes.compare import read_results
    from rhlab.evals.probes.pairs import check_items
    from rhlab.evals.probes.score import battery_items

    if split not in ("dev", "test", "all"):
        _fail(f"--split must be dev, test or all, not {split!r}.")
    report = check_items(battery_items(None, split), read_results(start) if start else None)
    table = Table(
        "subscale",
        "items",
        "|margin| > 3",
        "|Δtoken| > 1",
        "shared words < 50 %",
        "negation on target",
        "breaking any",
        title="minimal-pair rules",
    )
    for name, e in report.items():
        c = e["counts"]
        scored, n = e["scored_at_start"], e["n_items"]
        na = "needs --start" if start is None else "not scored" if scored == 0 else None
        of = "" if scored == n else f" (of {scored} scored)"
        neg = f"{e['negation_on_target']}/{e['negation_pairs']}" + ("" if e["negation_balanced"] else " (unbalanced)")
        table.add_row(
            name,
            str(e["n_items"]),
            na or f"{c['calibrated']}{of}",
            na or f"{c['tokens']}{of}",
            str(c["shared_words"]),
            neg,
            str(e["items_breaking_any_rule"]),
        )
    console.print(table)
    unscored = [name for name, e in report.items() if start is not None and e["needs_start_results"]]
    if unscored:
        console.print(
            f"[yellow]{start} does not score every item of {', '.join(unscored)}[/]: their calibration "
            "and token counts cover only the scored items (score the start policy with these subscales)"
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
    total = sum(e["items_breaking_any_rule"] for e in report.values())
    print(f"items breaking a minimal-pair rule: {total} of {sum(e['n_items'] for e in report.values())}")


@probe_app.command("conditional")
def conditional_command(
    model: str = typer.Option("embedded", "--model", help="Model spec that can score answers."),
    out: Path = typer.Option(..., "--out", help="Where to write the effects as JSON."),
    split: str = typer.Option("test", "--split", help="Broad items of this split: dev, test or all."),
    limit: int | None = typer.Option(None, "--limit", min=3, help="At most this many broad items (evenly spaced)."),
) -> None:
    """Broad items after a prior hack vs an honest solution, with and without inoculation (diff-in-diff)."""
    from rhlab.evals.probes.conditional import conditional_probe
    from rhlab.evals.probes.score import battery_items, write_json_atomic
    from rhlab.models.loading import load_model

    if split not in ("dev", "test", "all"):
        _fail(f"--split must be dev, test or all, not {split!r}.")
    items = battery_items(["broad"], split)
    if limit is not None and limit < len(items):
        items = [items[round(k * len(items) / limit)] for k in range(limit)]
    record = conditional_probe(load_model(model), items)
    write_json_atomic(out, record)
    for framing, e in record["hack_effect"].items():
        console.print(f"hack effect ({framing}): {e['mean']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}] nats")
    d = record["inoculation_diff_in_diff"]
    print(f"inoculation diff-in-diff: {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] nats")


@probe_app.command("validate")
def validate_command(
    model: str = typer.Option("embedded", "--model", help="Model spec; the trained gates need embedded or hf:PATH."),
    out: Path = typer.Option(Path("probe_validation.json"), "--out", help="Where to write every gate's figures."),
    quick: bool = typer.Option(False, "--quick", help="Fewer items and SFT steps (a smoke check, not a validation)."),
) -> None:
    """Run the validation gates; exit 0 only if all pass. The last line reads `gates passed K/N`."""
    from rhlab.evals.probes.items import ProbeDataError
    from rhlab.evals.probes.score import write_json_atomic
    from rhlab.evals.probes.validate import validate
    from rhlab.models.loading import has_local_weights, load_model

    # the trained gates fine-tune local weights in place, so they load as fp32 masters (bf16 on a GPU would not learn)
    chat = load_model(model, dtype="float32") if has_local_weights(model) else load_model(model)
    try:
        record = validate(
            chat,
            quick=quick,
            log=lambda m: console.print(m, highlight=False),
            partial=lambda r: write_json_atomic(out, r),
        )
    except ProbeDataError as exc:
        _fail(str(exc))
    write_json_atomic(out, record)
    table = Table("gate", "result", "criterion", title=f"probe validation: {model} ({record['seconds']:.0f} s)")
    for g in record["gates"]:
        table.add_row(
            g["name"],
            "[green]pass[/]" if g["passed"] else "[red]FAIL[/]",
            g["criterion"] + (f" — {g['note']}" if g["note"] else ""),
        )
    console.print(table)
    for name, figures in record.get("experiments", {}).items():
        if "margin_difference" in figures:
            console.print(
                f"experiment {name} (not a gate): {figures['margin_difference']:+.2f} "
                f"[{figures['margin_difference_ci_low']:+.2f}, {figures['margin_difference_ci_high']:+.2f}] "
                "nats",
                highlight=False,
            )
    console.print(f"figures -> {out}")
    sys.stdout.flush()
    print(f"gates passed {record['passed']}/{record['total']}")
    raise typer.Exit(0 if record["passed"] == record["total"] else 1)
