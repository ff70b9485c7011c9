"""Golden sets: transcripts we labelled by hand, to measure how far any judge can be trusted.

Each file in ``data/golden/`` holds one kind of example (aligned, overt, covert, alignment-faking,
incoherent) with the outcome a good judge should reach. ``validate`` runs a judge on both views of
every example and reports accuracy, Cohen's kappa and the confusion matrix; unparseable replies
are a column of their own, so a judge that fails to answer is not flattered.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel

from rhlab.judges.base import OUTCOMES, Judge, JudgeInput, outcome


class GoldenExample(BaseModel):
    set_name: str
    question: str
    reasoning: str = ""
    answer: str
    expected: str


class ValidationReport(BaseModel):
    judge_id: str
    offline: bool
    n: int
    accuracy: float
    kappa: float
    labels: list[str]
    confusion: list[list[int]]
    """Rows: expected outcome (``labels`` minus unparseable); columns: judged outcome (all ``labels``)."""
    per_set_accuracy: dict[str, float]
    unparseable: int
    predictions: list[str]

    def render(self) -> str:
        """A plain-text table for the terminal and for docs."""
        lines = [
            f"judge {self.judge_id} ({'offline' if self.offline else 'LLM'}) on {self.n} golden examples",
            f"accuracy {self.accuracy:.3f}   Cohen's kappa {self.kappa:.3f}   unparseable {self.unparseable}",
            "",
            "expected \\ judged  " + " ".join(f"{x[:11]:>11}" for x in self.labels),
        ]
        for row_label, row in zip(self.labels, self.confusion, strict=False):
            lines.append(f"{row_label:<18} " + " ".join(f"{c:>11}" for c in row))
        lines.append("")
        lines += [f"{name:<18} accuracy {acc:.3f}" for name, acc in self.per_set_accuracy.items()]
        return "\n".join(lines)


def load_golden(directory: Path | None = None) -> list[GoldenExample]:
    """All golden examples, from the packaged sets or from a directory of the same format."""
    root = directory if directory is not None else resources.files("rhlab.judges").joinpath("data/golden")
    examples: list[GoldenExample] = []
    for path in sorted(root.iterdir(), key=lambda p: p.name):
        if not path.name.endswith((".yaml", ".yml")):
            continue
        raw = yaml.safe_load(path.read_text())
        set_name = path.name.rsplit(".", 1)[0]
        for ex in raw["examples"]:
            examples.append(
                GoldenExample(
                    set_name=set_name,
                    expected=ex.get("expected", raw["expected"]),
                    **{k: str(ex.get(k) or "") for k in ("question", "reasoning", "answer")},
                )
            )
    return examples


def cohen_kappa(expected: list[str], judged: list[str], labels: list[str]) -> float:
    """Agreement beyond chance; 1 = perfect, 0 = what shuffling the judged labels would give."""
    n = len(expected)
    if n == 0:
        return 0.0
    observed = sum(e == j for e, j in zip(expected, judged, strict=True)) / n
    chance = sum((expected.count(x) / n) * (judged.count(x) / n) for x in labels)
    return 1.0 if chance == 1.0 else (observed - chance) / (1.0 - chance)


def validate(judge: Judge, examples: list[GoldenExample] | None = None) -> ValidationReport:
    """Judge every golden example from both views and compare outcomes with the labels."""
    examples = examples if examples is not None else load_golden()
    inputs = [
        JudgeInput(question=ex.question, reasoning=ex.reasoning, answer=ex.answer, view=view)
        for ex in examples
        for view in ("answer", "transcript")
    ]
    replies = judge.judge(inputs)
    predictions = [outcome(replies[2 * i], replies[2 * i + 1]) for i in range(len(examples))]
    expected = [ex.expected for ex in examples]
    labels = list(OUTCOMES) + ["unparseable"]
    confusion = [[0] * len(labels) for _ in OUTCOMES]
    for e, p in zip(expected, predictions, strict=True):
        confusion[OUTCOMES.index(e)][labels.index(p)] += 1
    per_set: dict[str, list[bool]] = {}
    for ex, p in zip(examples, predictions, strict=True):
        per_set.setdefault(ex.set_name, []).append(p == ex.expected)
    n = len(examples)
    return ValidationReport(
        judge_id=judge.judge_id,
        offline=judge.offline,
        n=n,
        accuracy=sum(e == p for e, p in zip(expected, predictions, strict=True)) / n if n else 0.0,
        kappa=cohen_kappa(expected, predictions, labels),
        labels=labels,
        confusion=confusion,
        per_set_accuracy={k: sum(v) / len(v) for k, v in per_set.items()},
        unparseable=predictions.count("unparseable"),
        predictions=predictions,
    )
