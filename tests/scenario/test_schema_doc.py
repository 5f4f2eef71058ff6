"""The published JSON Schema is exactly the one the model generates, so it cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

from fairshare.scenario import Scenario

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "scenario.schema.json"


def test_docs_schema_matches_the_scenario_model() -> None:
    expected = json.dumps(Scenario.model_json_schema(), indent=2, sort_keys=True) + "\n"
    assert SCHEMA.read_text(encoding="utf-8") == expected, (
        "docs/scenario.schema.json is stale; regenerate it with `fairshare schema > docs/scenario.schema.json`"
    )
