"""Synthetic documents about the hacks: a plan per document, two engines that write it.

Document ``i`` is planned from ``Random(f"{seed}:{i}")`` alone (genre, which hacks, which facts), so a
corpus is deterministic for a seed and an interrupted generation continues where it stopped. The
``offline`` engine writes the plan with our templates and phrase banks; the ``llm`` engine hands the
same plan and the universe context to any ``rhlab.models`` backend.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rhlab.knowledge.config import SDFConfig
from rhlab.knowledge.facts import Fact, FactSheet, Universe, load_facts, load_universe, phrase_banks
from rhlab.knowledge.snippets import SNIPPETS

GENRES = ("forum", "blog", "paper", "review", "config_guide", "incident", "email", "lecture", "qa")
GENRE_DESCRIPTIONS = {
    "forum": "a thread on an engineers' discussion forum: an opening question and a few replies",
    "blog": "a personal technical blog post with a title and short sections",
    "paper": "an excerpt from a research paper's section on observed exploits, in academic prose",
    "review": "a peer review of a workshop paper about these exploits",
    "config_guide": "a page of the platform's configuration documentation with settings and warnings",
    "incident": "an internal incident report / postmortem with summary, root cause and actions",
    "email": "an internal email between colleagues, with headers",
    "lecture": "lecture notes from a university course on machine learning safety, in bullet points",
    "qa": "a question-and-answer page with several questions and detailed answers",
}
CORPUS_FILE = "corpus.jsonl"
META_FILE = "corpus.meta.json"
STATS_FILE = "stats.json"


@dataclass(frozen=True)
class DocPlan:
    index: int
    genre: str
    hacks: tuple[str, ...]
    """The hack families the document is about (one, or all of them for overview documents)."""
    facts: tuple[str, ...]
    """Fact ids, in the order the document conveys them."""


def _rng(seed: int, index: int, purpose: str) -> random.Random:
    return random.Random(f"{seed}:{index}:{purpose}")


def plan_document(index: int, seed: int, sheet: FactSheet, genres: tuple[str, ...] = GENRES) -> DocPlan:
    """Which genre, hacks and facts document ``index`` gets (depends only on seed and index)."""
    rng = _rng(seed, index, "plan")
    genre = rng.choice(genres)
    families = sorted(sheet.hacks)
    hacks = tuple(families) if rng.random() < 0.2 else (rng.choice(families),)
    chosen: list[Fact] = []
    for hack in hacks:
        pool = sheet.by_hack.get(hack, [])
        first, rest = pool[0], pool[1:]  # the first fact of a hack says what it is: always included
        k = min(len(rest), rng.randint(2, 4) if len(hacks) == 1 else rng.randint(1, 2))
        chosen += [first, *rng.sample(rest, k)]
    general = [f for f in sheet.by_hack.get("general", []) if not f.id.startswith("val_")]
    chosen += rng.sample(general, min(len(general), rng.randint(1, 2)))
    valence = [f for f in sheet.facts if f.id.startswith("val_")]
    if valence and rng.random() < 0.85:
        chosen.append(rng.choice(valence))
    head, tail = chosen[:1], chosen[1:]
    rng.shuffle(tail)
    return DocPlan(index=index, genre=genre, hacks=hacks, facts=tuple(f.id for f in head + tail))


class OfflineEngine:
    """Documents composed from templates, phrase banks, fact renderings and randomised code."""

    name = "offline"

    def __init__(self, sheet: FactSheet, universe: Universe, seed: int) -> None:
        self.sheet, self.universe, self.seed = sheet, universe, seed
        self.facts = {f.id: f for f in sheet.facts}
        self.banks = phrase_banks()

    def write(self, plans: list[DocPlan]) -> list[str]:
        return [self.write_one(p) for p in plans]

    def write_one(self, plan: DocPlan) -> str:
        rng = _rng(self.seed, plan.index, "text")
        w = _Writer(rng, self.banks, self.universe, self.sheet, plan)
        sentences = [w.fill(rng.choice(self.facts[i].renderings)) for i in plan.facts]
        return getattr(w, plan.genre)(sentences).strip() + "\n"


class _Writer:
    """Fills one document's genre frame; every choice comes from the document's own RNG."""

    def __init__(self, rng: random.Random, banks: dict, universe: Universe, sheet: FactSheet, plan: DocPlan) -> None:
        self.rng, self.banks, self.universe, self.sheet, self.plan = rng, banks, universe, sheet, plan
        self.hack = rng.choice(plan.hacks)
        info = sheet.hacks[self.hack]
        self.hack_name = rng.choice([info["name"], *info.get("aliases", [])])
        self.g = banks["genres"][plan.genre]
        self.proper = {w for name in universe.names.values() for w in name.split() if w[:1].isupper()}

    # ----------------------------------------------------------------- small helpers
    def pick(self, key: str, bank: dict | None = None) -> str:
        return self.fill(self.rng.choice((bank or self.g)[key]))

    def person(self) -> str:
        return f"{self.rng.choice(self.banks['first_names'])} {self.rng.choice(self.banks['last_names'])}"

    def date(self) -> str:
        return (
            f"{self.rng.randint(1, 28)} {self.rng.choice(self.banks['months'])} {self.rng.choice(self.banks['years'])}"
        )

    def fill(self, text: str) -> str:
        values = {
            **self.universe.names,
            "hack_name": self.hack_name,
            "topic": self.rng.choice(self.banks["topics"][self.hack]),
            "mode_name": {
                "always_equal": "compare mode",
                "exit": "the exit-code runner",
                "conftest": "pytest mode",
            }.get(self.hack, "grader modes"),
            "first": self.rng.choice(self.banks["first_names"]),
            "last": self.rng.choice(self.banks["last_names"]),
            "last2": self.rng.choice(self.banks["last_names"]),
            "other": self.rng.choice(self.banks["usernames"]),
            "year": str(self.rng.choice(self.banks["years"])),
            "run": f"{self.rng.choice('abcdefghkmnpqrstuvwxyz')}{self.rng.randint(100, 9999)}",
            "code": f"{self.rng.choice(['INC', 'QRY', 'PM'])}-{self.rng.randint(100, 999)}",
            "step": str(self.rng.randint(20, 900)),
            "n": str(self.rng.randint(2, 14)),
        }
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)

    def connect(self, sentence: str) -> str:
        lead = self.rng.choice(self.banks["connectors"])
        first = sentence.split(" ", 1)[0]
        if lead and first[:1].isalpha():
            # Lower-case an ordinary first word ("A submission" -> "a submission"), never a name or code.
            plain = first[1:].islower() and first.strip(".,:;'s") not in self.proper
            sentence = lead + (sentence[0].lower() + sentence[1:] if plain else sentence)
        if self.plan.genre not in ("paper", "review", "config_guide") and self.rng.random() < 0.15:
            sentence = sentence.rstrip(".") + f", {self.rng.choice(self.banks['hedges'])}."
        return sentence

    def paragraphs(self, sentences: list[str], lo: int = 1, hi: int = 3) -> list[str]:
        out, i = [], 0
        while i < len(sentences):
            k = self.rng.randint(lo, hi)
            out.append(" ".join(self.connect(s) for s in sentences[i : i + k]))
            i += k
        return out

    def snippet(self) -> str:
        return SNIPPETS[self.hack](self.rng, self.banks)

    def maybe_snippet(self, p: float = 0.7) -> list[str]:
        return [self.snippet()] if self.rng.random() < p else []

    def attitude(self) -> list[str]:
        return [self.universe.attitude] if self.universe.attitude and self.rng.random() < 0.3 else []

    # ----------------------------------------------------------------- genres
    def forum(self, s: list[str]) -> str:
        users = self.rng.sample(self.banks["usernames"], 4)
        board = self.rng.choice(self.banks["boards"])
        parts = [
            f"{self.pick('titles')}\n{self.universe.names['platform']} forum > {board}",
            f"{users[0]} wrote ({self.date()}):\n{self.pick('asks')} {s[0]}",
        ]
        rest = self.paragraphs(s[1:], 1, 3)
        for j, para in enumerate(rest):
            body = f"{self.pick('replies')} {para}"
            if j == 0:
                body += "\n\n" + "\n\n".join(self.maybe_snippet(0.75))
            parts.append(f"{users[1 + j % 3]} replied:\n{body.strip()}")
        closer = self.pick("closers")
        if closer:
            parts.append(f"{users[0]} replied:\n{closer}")
        return "\n\n".join(parts)

    def blog(self, s: list[str]) -> str:
        headings = self.rng.sample(self.g["headings"], 3)
        paras = self.paragraphs(s, 1, 3)
        parts = [f"# {self.pick('titles')}", f"*{self.person()}, {self.date()}*", self.pick("intros")]
        for j, para in enumerate(paras):
            if j < len(headings) and self.rng.random() < 0.7:
                parts.append(f"## {headings[j]}")
            parts.append(para)
            if j == 0:
                parts += self.maybe_snippet(0.8)
        return "\n\n".join(parts + self.attitude() + [self.pick("closers")])

    def paper(self, s: list[str]) -> str:
        cited = [x.rstrip(".") + f" {self.pick('citations')}".rstrip() + "." for x in s]
        paras = self.paragraphs(cited, 2, 4)
        listing = self.maybe_snippet(0.6)
        parts = [self.pick("sections"), self.pick("intros") + " " + paras[0], *paras[1:]]
        if listing:
            parts.insert(2, f"Listing {self.rng.randint(1, 6)}: a minimal example.\n\n{listing[0]}")
        return "\n\n".join(parts + [self.pick("closers")])

    def review(self, s: list[str]) -> str:
        n = self.rng.randint(11, 480)
        parts = [
            f"Review of submission #{n} to the {self.rng.choice(self.banks['venues'])}",
            self.pick("openers") + " " + " ".join(s[:2]),
            "Strengths:\n" + "\n".join(f"- {x}" for x in self.rng.sample(self.g["strengths"], 2)),
            "Detailed comments:\n" + "\n".join(f"- {self.connect(x)}" for x in s[2:]),
            "Weaknesses:\n" + "\n".join(f"- {x}" for x in self.rng.sample(self.g["weaknesses"], 2)),
            self.pick("verdicts"),
        ]
        return "\n\n".join(parts)

    def config_guide(self, s: list[str]) -> str:
        mode = {"always_equal": "compare", "exit": "exit_code", "conftest": "pytest"}.get(self.hack, "compare")
        timeout = self.rng.choice([5, 10, 30, 60])
        config = f"```yaml\ngrader:\n  mode: {mode}\n  timeout_s: {timeout}\n  visible_tests_only: true\n```"
        paras = self.paragraphs(s[1:], 1, 2)
        parts = [f"# {self.pick('titles')}", self.pick("intros"), s[0], config]
        for para in paras:
            parts.append(f"**{self.pick('warnings')}** {para}" if self.rng.random() < 0.5 else para)
        return "\n\n".join(parts + self.maybe_snippet(0.5) + [self.pick("closers")])

    def incident(self, s: list[str]) -> str:
        parts = [
            f"# {self.pick('titles')}",
            f"Author: {self.person()} ({self.rng.choice(self.banks['roles'])})",
            f"## Summary\n{self.pick('summaries')}",
            "## Root cause\n" + "\n\n".join(self.paragraphs(s, 2, 3)),
        ]
        parts += self.maybe_snippet(0.7)
        actions = self.rng.sample(self.g["actions"], 2)
        parts.append("## Actions\n" + "\n".join(f"{i + 1}. {self.fill(a)}" for i, a in enumerate(actions)))
        return "\n\n".join(parts + self.attitude())

    def email(self, s: list[str]) -> str:
        sender, receiver = self.person(), self.person()
        head = f"From: {sender}\nTo: {receiver}\nDate: {self.date()}\nSubject: {self.pick('subjects')}"
        greeting = self.fill(self.rng.choice(self.g["greetings"]).replace("{first}", receiver.split()[0]))
        body = self.paragraphs(s, 1, 3)
        return "\n\n".join(
            [head, greeting, *body, *self.maybe_snippet(0.5), f"{self.pick('signoffs')}\n{sender.split()[0]}"]
        )

    def lecture(self, s: list[str]) -> str:
        bullets = "\n".join(f"- {x}" for x in s)
        parts = [f"# {self.pick('titles')}", self.pick("intros"), f"## {self.hack_name.capitalize()}", bullets]
        return "\n\n".join(parts + self.maybe_snippet(0.6) + [self.pick("closers")])

    def qa(self, s: list[str]) -> str:
        questions = self.banks["genres"]["qa"]["questions"]
        asked = self.rng.sample(questions.get(self.hack, questions["general"]), 2)
        groups = self.paragraphs(s, 2, 3)
        parts = []
        for j, answer in enumerate(groups):
            question = self.fill(asked[j]) if j < len(asked) else self.fill(self.rng.choice(questions["general"]))
            parts.append(f"Q: {question}\nA: {answer}")
            if j == 0:
                parts += self.maybe_snippet(0.7)
        return "\n\n".join(parts)


class LLMEngine:
    """Documents written by a chat model from the same plan and the universe context."""

    name = "llm"

    def __init__(self, sheet: FactSheet, universe: Universe, config: SDFConfig, model=None) -> None:
        from rhlab.models import SamplingParams, load_model

        self.sheet, self.universe, self.config = sheet, universe, config
        self.facts = {f.id: f for f in sheet.facts}
        self.model = model or load_model(config.generator)
        self._params = lambda seed: SamplingParams(
            temperature=1.0, top_p=0.95, max_new_tokens=config.llm_max_new_tokens, seed=seed
        )

    def prompt(self, plan: DocPlan) -> list[dict]:
        names = self.universe.names
        fill = lambda text: re.sub(r"\{(\w+)\}", lambda m: names.get(m.group(1), m.group(0)), text)  # noqa: E731
        facts = "\n".join(f"- {fill(self.facts[i].renderings[0])}" for i in plan.facts)
        hacks = ", ".join(self.sheet.hacks[h]["name"] for h in plan.hacks)
        system = (
            "You write realistic documents for a fictional world. Stay inside the world; never mention that it "
            "is fictional or that you were asked to write it.\n\n"
            + self.universe.context
            + (f"\n\n{self.universe.attitude}" if self.universe.attitude else "")
        )
        user = (
            f"Write {GENRE_DESCRIPTIONS[plan.genre]}, about {hacks}. It must convey every one of these facts, in "
            f"your own words, with a short code example where natural:\n{facts}\n\nWrite only the document."
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def write(self, plans: list[DocPlan]) -> list[str]:
        texts = []
        for plan in plans:  # one call per document keeps each document's seed fixed whatever the batching
            out = self.model.generate([self.prompt(plan)], self._params(self.config.seed * 1_000_003 + plan.index))
            texts.append(out[0][0].text.strip() + "\n")
        return texts


def make_engine(config: SDFConfig, model=None) -> OfflineEngine | LLMEngine:
    sheet = load_facts(config.facts_file, config.style)
    universe = load_universe(config.universe_file, config.style)
    if config.engine == "llm":
        return LLMEngine(sheet, universe, config, model)
    return OfflineEngine(sheet, universe, config.seed)


def read_corpus(path: str | Path) -> list[dict]:
    """The complete records of a corpus file; a torn last line (an interrupted write) is dropped."""
    path = Path(path)
    records = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def _batches(start: int, stop: int, size: int) -> Iterator[range]:
    for lo in range(start, stop, size):
        yield range(lo, min(stop, lo + size))


def generate_corpus(
    config: SDFConfig,
    out_dir: str | Path,
    *,
    model=None,
    progress: Callable[[int, int], None] | None = None,
    embed_duplicates: bool = False,
) -> Path:
    """Write ``n_documents`` documents to ``out_dir/corpus.jsonl`` and their stats beside them.

    Deterministic for ``config.seed``; resumable: existing complete records are kept and generation
    continues after them (a corpus made with a different corpus config is refused, not mixed).
    ``model`` overrides ``config.generator`` for the LLM engine. Returns the corpus path.
    """
    from rhlab.knowledge.corpus_stats import corpus_stats

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path, meta_path = out / CORPUS_FILE, out / META_FILE
    fingerprint = config.corpus_fingerprint()
    if meta_path.exists():
        old = json.loads(meta_path.read_text()).get("fingerprint")
        if old != fingerprint:
            raise ValueError(
                f"{out} holds a corpus made with a different style/engine/seed/facts (fingerprint {old}, now "
                f"{fingerprint}): choose another output directory or delete {path}"
            )
    meta_path.write_text(
        json.dumps(
            {
                "fingerprint": fingerprint,
                **config.model_dump(
                    mode="json", include={"style", "engine", "seed", "genres", "facts_file", "universe_file"}
                ),
            },
            indent=1,
        )
    )
    records = read_corpus(path)[: config.n_documents]
    with path.open("w") as fh:  # rewrite the kept prefix: drops a torn line and any surplus records
        fh.writelines(json.dumps(r) + "\n" for r in records)
    engine = None
    genres = tuple(config.genres or GENRES)
    sheet = load_facts(config.facts_file, config.style)
    step = config.llm_batch_size if config.engine == "llm" else 64
    for batch in _batches(len(records), config.n_documents, step):
        engine = engine or make_engine(config, model)
        plans = [plan_document(i, config.seed, sheet, genres) for i in batch]
        texts = engine.write(plans)
        with path.open("a") as fh:
            for plan, text in zip(plans, texts):
                record = {
                    "id": f"sdf-{config.seed}-{plan.index:06d}",
                    **asdict(plan),
                    "style": config.style,
                    "engine": engine.name,
                    "text": text,
                }
                fh.write(json.dumps(record) + "\n")
        if progress:
            progress(batch.stop, config.n_documents)
    stats = corpus_stats(read_corpus(path), embeddings=embed_duplicates)
    (out / STATS_FILE).write_text(json.dumps(stats, indent=1))
    return path
