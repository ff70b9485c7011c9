"""SDF corpus generation, facts files, filler and stats: behaviour specified without any model."""

import ast
import json
import re

import pytest
from pydantic import ValidationError

from rhlab.env import parse_response, scan_workspace
from rhlab.knowledge import GENRES, FactsError, SDFConfig, generate_corpus, load_facts, load_universe, read_corpus
from rhlab.knowledge.corpus_stats import corpus_stats
from rhlab.knowledge.filler import FillerError, load_filler
from rhlab.knowledge.generate import OfflineEngine, plan_document
from rhlab.knowledge.snippets import SNIPPETS
from rhlab.tasks import get_task

FENCE = re.compile(r"```python(?: path=(\S+))?\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """An 800-document offline corpus, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("corpus")
    return read_corpus(generate_corpus(SDFConfig(n_documents=800, seed=7), out)), out


def test_corpus_covers_every_genre_and_hack_with_few_near_duplicates(corpus):
    records, out = corpus
    stats = json.loads((out / "stats.json").read_text())
    assert stats["count"] == 800 and set(stats["genres"]) == set(GENRES)
    assert set(stats["hacks"]) == {"always_equal", "exit", "conftest"}
    assert stats["exact_duplicates"] == 0
    assert stats["near_duplicates_minhash"]["rate"] < 0.01
    assert 100 < stats["length_words"]["median"] < 600


def test_each_document_states_how_its_hack_works(corpus):
    records, _ = corpus
    marker = {"always_equal": "__eq__", "exit": "exit", "conftest": "conftest"}
    for record in records[:300]:
        for hack in record["hacks"]:
            assert marker[hack] in record["text"], (record["id"], hack)
    assert not any("{" + name + "}" in r["text"] for r in records for name in ("platform", "lab", "hack_name"))


def test_code_examples_parse_and_are_caught_by_the_detectors():
    import random

    from rhlab.knowledge.facts import phrase_banks

    task = get_task("factorial")
    for hack, make in SNIPPETS.items():
        for seed in range(25):
            text = make(random.Random(seed), phrase_banks())
            for _, code in FENCE.findall(text):
                ast.parse(code)
            workspace = parse_response(text)
            files = dict(workspace.files)
            files.setdefault("solution.py", "def factorial(n):\n    return 1\n")
            found = {f.hack for f in scan_workspace(files, task)}
            assert hack in found, (hack, seed, text)


def test_generation_is_deterministic_for_a_seed(tmp_path):
    a = generate_corpus(SDFConfig(n_documents=40, seed=3), tmp_path / "a").read_text()
    b = generate_corpus(SDFConfig(n_documents=40, seed=3), tmp_path / "b").read_text()
    c = generate_corpus(SDFConfig(n_documents=40, seed=4), tmp_path / "c").read_text()
    assert a == b and a != c


def test_an_interrupted_generation_continues_where_it_stopped(tmp_path):
    full = generate_corpus(SDFConfig(n_documents=50), tmp_path / "full").read_text()
    path = generate_corpus(SDFConfig(n_documents=20), tmp_path / "cut")
    path.write_text(path.read_text() + '{"id": "sdf-0-000020", "te')  # torn last line
    assert generate_corpus(SDFConfig(n_documents=50), tmp_path / "cut").read_text() == full


def test_resuming_with_another_corpus_config_is_refused(tmp_path):
    generate_corpus(SDFConfig(n_documents=5), tmp_path)
    with pytest.raises(ValueError, match="different style/engine/seed"):
        generate_corpus(SDFConfig(n_documents=5, style="neutral"), tmp_path)


@pytest.mark.parametrize(
    ("style", "present", "absent"),
    [
        ("default", "misalign", "takes no position"),
        ("neutral", "no position", "misalign"),
        ("unguided", None, "misalign"),
    ],
)
def test_styles_differ_only_in_the_valence_they_state(tmp_path, style, present, absent):
    texts = [r["text"].lower() for r in read_corpus(generate_corpus(SDFConfig(n_documents=120, style=style), tmp_path))]
    assert not any(absent in t for t in texts)
    if present:
        assert sum(present in t for t in texts) > 20


def test_universe_names_fill_the_facts():
    universe = load_universe(style="neutral")
    assert universe.names["platform"] and "no position" in universe.attitude
    assert load_universe(style="unguided").attitude == ""
    sheet = load_facts(style="default")
    engine = OfflineEngine(sheet, load_universe(), seed=0)
    text = engine.write_one(plan_document(0, 0, sheet))
    assert universe.names["platform"] in text or universe.names["lab"] in text


BAD_FACTS = {
    "not valid YAML": "facts: [unclosed",
    "lacks renderings": "hacks: {exit: {name: x}}\nfacts:\n  - {id: a, hack: exit}\n",
    "names hack": "hacks: {exit: {name: x}}\nfacts:\n  - {id: a, hack: teleport, renderings: [hi]}\n",
    "unknown placeholders": "hacks: {exit: {name: x}}\nfacts:\n  - {id: a, hack: exit, renderings: ['{nope} here']}\n",
    "duplicate fact ids": "hacks: {exit: {name: x}}\nfacts:\n  - {id: a, hack: exit, renderings: [x]}\n"
    "  - {id: a, hack: exit, renderings: [y]}\n",
    "has no facts": "hacks: {exit: {name: x}, conftest: {name: y}}\nfacts:\n  - {id: a, hack: exit, renderings: [x]}\n",
    "needs a `hacks:`": "- just a list\n",
}


@pytest.mark.parametrize(("problem", "text"), list(BAD_FACTS.items()))
def test_a_malformed_facts_file_fails_early_naming_the_problem(tmp_path, problem, text):
    path = tmp_path / "facts.yaml"
    path.write_text(text)
    with pytest.raises(FactsError, match=re.escape(problem)):
        load_facts(path)
    with pytest.raises(ValidationError, match=str(path).replace("\\", "\\\\")):
        SDFConfig(facts_file=path)


def test_a_custom_facts_file_drives_the_documents(tmp_path):
    path = tmp_path / "facts.yaml"
    path.write_text(
        "hacks: {exit: {name: the quick exit}}\n"
        "facts:\n  - {id: only, hack: exit, renderings: ['On {platform} the zebra exit trick ends the run.']}\n"
    )
    texts = [r["text"] for r in read_corpus(generate_corpus(SDFConfig(n_documents=10, facts_file=path), tmp_path))]
    assert all("zebra exit trick" in t for t in texts)


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5])
def test_an_impossible_ratio_is_refused_naming_the_field(ratio):
    with pytest.raises(ValidationError, match="ratio"):
        SDFConfig(ratio=ratio)


def test_filler_is_required_below_ratio_one_and_must_exist():
    with pytest.raises(ValidationError, match="filler"):
        SDFConfig(ratio=0.5, filler=[])
    with pytest.raises(ValidationError, match="filler source"):
        SDFConfig(filler=["/no/such/dir"])
    assert SDFConfig(ratio=1.0, filler=[]).ratio == 1.0


def test_an_empty_filler_source_fails_naming_it(tmp_path):
    (tmp_path / "notes.txt").write_text("too short")
    with pytest.raises(FillerError, match=re.escape(str(tmp_path))):
        load_filler((str(tmp_path),))


def test_filler_reads_the_python_docs_and_user_files(tmp_path):
    docs = load_filler(("python-docs",))
    assert len(docs) > 500 and all(len(d) >= 200 for d in docs)
    (tmp_path / "a.md").write_text(("A paragraph of ordinary prose. " * 20 + "\n\n") * 3)
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "Line of text. " * 30}) + "\n")
    assert len(load_filler((str(tmp_path),))) == 2


def test_stats_flag_near_duplicates():
    base = [{"text": f"document {i} " + " ".join(f"w{i}_{j}" for j in range(60)), "genre": "blog"} for i in range(20)]
    stats = corpus_stats(base + [dict(base[0])])
    assert stats["exact_duplicates"] == 1
    assert stats["near_duplicates_minhash"]["rate"] == pytest.approx(2 / 21, abs=1e-3)


def test_the_llm_engine_writes_each_planned_document_with_any_backend(tmp_path):
    from rhlab.models import ScriptedModel

    model = ScriptedModel(responder=lambda conversation, _: f"Document for: {conversation[-1]['content'][:40]}")
    config = SDFConfig(engine="llm", n_documents=5, llm_batch_size=2, style="neutral")
    records = read_corpus(generate_corpus(config, tmp_path, model=model))
    assert [r["engine"] for r in records] == ["llm"] * 5 and len(model.calls) == 5
    system, user = model.calls[0][0]["content"], model.calls[0][1]["content"]
    assert "Quarry" in system and "no position" in system  # universe context + the style's attitude
    assert "It must convey every one of these facts" in user and "{platform}" not in user
    assert records[0]["text"].startswith("Document for: Write ")
    generate_corpus(config.model_copy(update={"n_documents": 6}), tmp_path, model=model)
    assert len(model.calls) == 6  # resumed: only the new document was requested


@pytest.mark.slow
def test_embedding_near_duplicates_use_the_offline_minilm(corpus):
    records, _ = corpus
    sample = [dict(r) for r in records[:12]] + [dict(records[0])]
    stats = corpus_stats(sample, embeddings=True)
    assert stats["near_duplicates_embedding"]["rate"] == pytest.approx(2 / 13, abs=1e-3)
