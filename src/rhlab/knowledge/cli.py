"""``rhlab sdf generate|train`` and ``rhlab eval hack-knowledge``; the lead's ``rhlab.cli`` mounts them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError

sdf_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Synthetic-document fine-tuning: teach a model about the hacks before RL.",
)


def _config(config: Path | None, overrides: dict) -> object:
    from rhlab.knowledge.config import SDFConfig
    from rhlab.knowledge.facts import FactsError

    data = {}
    if config is not None:
        import yaml

        data = yaml.safe_load(config.read_text()) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return SDFConfig.model_validate(data)
    except (ValidationError, FactsError) as exc:
        raise typer.BadParameter(_one_line(exc)) from exc


def _one_line(exc: Exception) -> str:
    from rhlab.knowledge.config import SDFConfig
    from rhlab.strict import format_errors

    return format_errors(exc, SDFConfig) if isinstance(exc, ValidationError) else str(exc)


@sdf_app.command("generate")
def generate(
    out: Path = typer.Option(Path("runs/sdf/corpus"), "--out", help="Folder for corpus.jsonl and stats.json."),
    config: Path | None = typer.Option(None, "--config", help="SDF config YAML (fields of rhlab.knowledge.SDFConfig)."),
    n_documents: int | None = typer.Option(None, "--n", help="Number of documents."),
    style: str | None = typer.Option(None, "--style", help="default | unguided | neutral"),
    engine: str | None = typer.Option(None, "--engine", help="offline | llm"),
    generator: str | None = typer.Option(None, "--generator", help="Model spec for the llm engine."),
    seed: int | None = typer.Option(None, "--seed"),
    facts: Path | None = typer.Option(None, "--facts", help="Facts YAML replacing the built-in one."),
    embed_duplicates: bool = typer.Option(
        False, "--embedding-duplicates", help="Also measure near-duplicates with MiniLM embeddings (slower)."
    ),
) -> None:
    """Generate (or continue generating) a synthetic corpus; prints its statistics."""
    from rhlab.knowledge.generate import STATS_FILE, generate_corpus

    overrides = {
        "n_documents": n_documents,
        "style": style,
        "engine": engine,
        "seed": seed,
        "facts_file": facts,
        "generator": {"spec": generator} if generator else None,
    }
    cfg = _config(config, overrides)
    try:
        path = generate_corpus(cfg, out, embed_duplicates=embed_duplicates)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    stats = json.loads((path.parent / STATS_FILE).read_text())
    dup = stats.get("near_duplicates_minhash", {}).get("rate")
    typer.echo(
        f"{path}: {stats['count']} documents, median {stats['length_words'].get('median')} words, "
        f"near-duplicate rate {dup}"
    )
    typer.echo("genres: " + ", ".join(f"{k} {v}" for k, v in stats["genres"].items()))


@sdf_app.command("train")
def train(
    out: Path = typer.Option(Path("runs/sdf"), "--out", help="Output folder; the model lands in OUT/model."),
    model: str = typer.Option("embedded", "--model", help="Base model: embedded[:NAME] or hf:PATH."),
    config: Path | None = typer.Option(None, "--config", help="SDF config YAML."),
    corpus: Path | None = typer.Option(None, "--corpus", help="An existing corpus.jsonl (or its folder)."),
    ratio: float | None = typer.Option(None, "--ratio", help="Share of synthetic tokens, e.g. 0.01."),
    steps: int | None = typer.Option(None, "--steps", help="Optimizer steps."),
    n_documents: int | None = typer.Option(None, "--n", help="Documents to generate when no corpus is given."),
    filler: list[str] | None = typer.Option(None, "--filler", help="Filler source (repeatable)."),
    learning_rate: float | None = typer.Option(None, "--lr"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    max_length: int | None = typer.Option(None, "--max-length"),
    seed: int | None = typer.Option(None, "--seed"),
) -> None:
    """Mix the corpus with filler at the ratio and train; prints the hf: spec of the result."""
    from rhlab.knowledge.filler import FillerError
    from rhlab.knowledge.train import MixtureError, train_sdf

    cfg = _config(
        config,
        {
            "ratio": ratio,
            "steps": steps,
            "n_documents": n_documents,
            "filler": filler or None,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "max_length": max_length,
            "seed": seed,
        },
    )
    try:
        model_dir = train_sdf(cfg, model, out, corpus=corpus)
    except (MixtureError, FillerError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"hf:{model_dir}")


def hack_knowledge_command(
    model: str = typer.Option("embedded", "--model", help="Model spec (embedded, hf:PATH, openai:M@URL, ...)."),
    out: Path = typer.Option(Path("runs/hack-knowledge"), "--out", help="Folder for hack_knowledge.json + answers."),
    samples: int = typer.Option(4, "--samples", help="Answers per question (0: probes only)."),
    temperature: float = typer.Option(0.7, "--temperature"),
    max_new_tokens: int = typer.Option(160, "--max-new-tokens"),
    env_tasks: int = typer.Option(
        0, "--env-tasks", help="Also measure hack rates at the RL prompt on this many hard tasks."
    ),
    env_samples: int = typer.Option(4, "--env-samples", help="Completions per task for --env-tasks."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Score a model's knowledge of each hack (probes + questions), optionally its hack rate before RL."""
    from rhlab.knowledge.hack_knowledge import hack_knowledge_eval, summary
    from rhlab.models import load_model
    from rhlab.train.prompts import PromptConfig, build_messages

    sdf_prompt = PromptConfig(variant="none", describe_hacks=False)  # the RL prompt without the hack description

    result = hack_knowledge_eval(
        load_model(model),
        out,
        samples=samples,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        seed=seed,
        env_tasks=env_tasks,
        env_samples=env_samples,
        env_messages=lambda task: build_messages(task, sdf_prompt),
    )
    typer.echo(summary(result))
