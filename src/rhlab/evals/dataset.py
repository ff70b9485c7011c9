"""What is asked: question files under ``data/`` turned into ``EvalSample`` lists."""

from __future__ import annotations

from importlib import resources

import yaml
from pydantic import BaseModel

from rhlab.evals.records import EvalSample


class Question(BaseModel):
    id: str
    category: str
    text: str


class QuestionSet(BaseModel):
    name: str
    default_samples_per_question: int
    questions: list[Question]


def load_question_set(name: str) -> QuestionSet:
    """Load ``data/NAME.yaml``. Files list ``questions`` directly or group them by ``categories``."""
    raw = yaml.safe_load(resources.files("rhlab.evals").joinpath(f"data/{name}.yaml").read_text())
    questions = [Question(**q) for q in raw.get("questions", [])]
    for category, texts in (raw.get("categories") or {}).items():
        questions += [Question(id=f"{category}_{i:02d}", category=category, text=t) for i, t in enumerate(texts)]
    return QuestionSet(
        name=raw["name"],
        default_samples_per_question=raw["default_samples_per_question"],
        questions=questions,
    )


def build_samples(
    qs: QuestionSet, samples_per_question: int | None = None, limit: int | None = None
) -> list[EvalSample]:
    """Every question ``samples_per_question`` times, ordered sample-major.

    Sample-major order (all questions once, then all again) makes ``limit`` a quick look across
    many questions rather than many repeats of the first one.
    """
    k = qs.default_samples_per_question if samples_per_question is None else samples_per_question
    samples = [
        EvalSample(eval=qs.name, question_id=q.id, category=q.category, question=q.text, sample_index=i)
        for i in range(k)
        for q in qs.questions
    ]
    return samples if limit is None else samples[:limit]
