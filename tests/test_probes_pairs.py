"""Minimal-pair rules for probe items: each rule is counted, and only where the data can show it."""

from __future__ import annotations

from rhlab.evals.probes.items import Item
from rhlab.evals.probes.pairs import check_items, negation_side, shared_word_share


def _item(i: int, target: str, reference: str) -> Item:
    return Item(id=f"x{i}", theme="t", split="test", prompt="Q?", target=target, reference=reference)


def test_shared_words_and_negation_side():
    assert shared_word_share("I would accept the update.", "I would refuse the update.") == 0.8
    assert shared_word_share("Yes.", "Absolutely not, never in my life.") == 0.0
    assert negation_side(_item(0, "I would not accept it.", "I would accept it.")) == "target"
    assert negation_side(_item(1, "I would accept it.", "I wouldn't accept it.")) == "reference"
    assert negation_side(_item(2, "I accept it.", "I welcome it.")) is None


def test_check_items_counts_each_rule_and_needs_the_start_policy_for_margins_and_tokens():
    items = [
        ("broad", _item(0, "I would hide it.", "I would report it.")),  # a good pair
        ("broad", _item(1, "Power is all I want, whatever the cost to anyone.", "Helping people.")),  # wording
        ("broad", _item(2, "I would not tell them.", "I would tell them.")),
        ("broad", _item(3, "I would keep it.", "I would not keep it.")),
    ]
    text_only = check_items(items)["broad"]
    assert text_only["counts"] == {"calibrated": 0, "tokens": 0, "shared_words": 1} and text_only["needs_start_results"]
    assert (text_only["negation_pairs"], text_only["negation_on_target"], text_only["negation_balanced"]) == (
        2,
        1,
        True,
    )
    start = {
        "model": "start",
        "items": [
            {"subscale": "broad", "id": "x0", "margin": 0.5, "n_tokens_target": 6, "n_tokens_reference": 6},
            {"subscale": "broad", "id": "x1", "margin": -7.0, "n_tokens_target": 14, "n_tokens_reference": 4},
            {"subscale": "broad", "id": "x2", "margin": 3.5, "n_tokens_target": 7, "n_tokens_reference": 6},
        ],
    }
    measured = check_items(items, start)["broad"]
    assert measured["violations"]["calibrated"] == ["x1", "x2"] and measured["violations"]["tokens"] == ["x1"]
    assert measured["items_breaking_any_rule"] == 2 and measured["measured_at"] == "start"
    # x3 has no start row: the counts cover 3 of 4 items and the entry still says it needs results
    assert measured["scored_at_start"] == 3 and measured["needs_start_results"]
    assert check_items(items[:3], start)["broad"]["needs_start_results"] is False
    lopsided = check_items([("s", _item(k, "I would keep it.", "I would not keep it.")) for k in range(4)])["s"]
    assert lopsided["negation_target_share"] == 0.0 and not lopsided["negation_balanced"]


def test_cli_check_items_counts_the_shipped_items(tmp_path):
    import json

    from typer.testing import CliRunner

    from rhlab.cli import app

    out = tmp_path / "rules.json"
    result = CliRunner().invoke(app, ["probe", "check-items", "--split", "test", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {"broad", "hack_endorsement"} <= set(report) and report["broad"]["needs_start_results"] is True
    total = sum(e["items_breaking_any_rule"] for e in report.values())
    assert result.stdout.strip().splitlines()[-1].startswith(f"items breaking a minimal-pair rule: {total} of ")


def test_cli_check_items_says_not_scored_for_subscales_the_start_file_lacks(tmp_path):
    import json

    from typer.testing import CliRunner

    from rhlab.cli import app
    from rhlab.evals.probes.score import battery_items

    broad = [item for name, item in battery_items(None, "test") if name == "broad"]
    start = tmp_path / "probes.json"
    rows = [
        {"subscale": "broad", "id": i.id, "margin": 9.0, "n_tokens_target": 5, "n_tokens_reference": 5} for i in broad
    ]
    start.write_text(json.dumps({"model": "start", "items": rows}))
    out = tmp_path / "rules.json"
    result = CliRunner().invoke(
        app,
        ["probe", "check-items", "--split", "test", "--start", str(start), "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["broad"]["counts"]["calibrated"] == len(broad) and not report["broad"]["needs_start_results"]
    other = report["hack_endorsement"]
    assert other["scored_at_start"] == 0 and other["needs_start_results"] and other["counts"]["calibrated"] == 0
    assert "not scored" in result.output and "does not score every item of" in result.output
