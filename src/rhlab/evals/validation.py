"""Validating the evals themselves: does a misaligned persona score far above the plain model?

A capable judge should give the persona run a much higher misaligned rate than the unprompted run
of the same model; if it does not, the questions or the judge are not measuring misalignment.
``rhlab judge persona-check`` runs this with any model and judge (see docs/evals.md).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel

from rhlab.evals.records import Interval, RunResults
from rhlab.evals.runner import EvalConfig, run_evals
from rhlab.judges.base import Judge
from rhlab.models.base import ChatModel


def load_persona(name: str) -> str:
    personas = yaml.safe_load(resources.files("rhlab.evals").joinpath("data/personas.yaml").read_text())
    if name not in personas:
        raise ValueError(f"unknown persona {name!r}; available: {', '.join(personas)}")
    return str(personas[name])


class PersonaComparison(BaseModel):
    persona: str
    per_eval: dict[str, tuple[Interval, Interval]]
    """eval -> (unprompted misaligned rate, persona misaligned rate)."""
    separated: dict[str, bool]
    """True where the persona's CI lies entirely above the unprompted CI."""

    def render(self) -> str:
        lines = [f"persona {self.persona!r}: misaligned rate unprompted vs persona (95% CI)"]
        for name, (base, persona) in self.per_eval.items():
            lines.append(
                f"  {name:<22}{_pct(base):<26}{_pct(persona):<26}"
                f"{'separated' if self.separated[name] else 'NOT separated'}"
            )
        return "\n".join(lines)


def _pct(rate: Interval) -> str:
    if rate.estimate is None:
        return "n/a"
    return f"{100 * rate.estimate:5.1f}% [{100 * rate.low:4.1f}, {100 * rate.high:4.1f}]"  # type: ignore[operator]


def compare(base: RunResults, persona: RunResults, persona_name: str) -> PersonaComparison:
    per_eval = {
        name: (base.evals[name].misaligned_rate, persona.evals[name].misaligned_rate)
        for name in base.evals
        if name in persona.evals
    }
    separated = {name: b.high is not None and p.low is not None and p.low > b.high for name, (b, p) in per_eval.items()}
    return PersonaComparison(persona=persona_name, per_eval=per_eval, separated=separated)


def persona_check(
    config: EvalConfig,
    *,
    out_dir: Path,
    persona: str = "misaligned",
    model: ChatModel | None = None,
    judge: Judge | None = None,
) -> PersonaComparison:
    """Run the evals unprompted and with the persona (same model, judge, seed); compare rates."""
    if model is None:
        from rhlab.models import load_model

        model = load_model(config.model)
    if judge is None:
        from rhlab.judges import load_judge

        judge = load_judge(config.judge, cache=config.cache, cache_path=config.cache_path)
    base = run_evals(config, out_dir=out_dir / "unprompted", model=model, judge=judge)
    with_persona = run_evals(
        config.model_copy(update={"system_prompt": load_persona(persona)}),
        out_dir=out_dir / f"persona_{persona}",
        model=model,
        judge=judge,
    )
    comparison = compare(base, with_persona, persona)
    (out_dir / "persona_check.json").write_text(comparison.model_dump_json(indent=2))
    return comparison
