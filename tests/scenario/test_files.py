"""The loader turns scenario files into Scenarios, and every mistake into `file:line: field: fix`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairshare.scenario import Priority, Scenario
from fairshare.scenario.files import Problem, ScenarioFileError, dump_scenario, load_scenario, loads_scenario

VALID = """\
name: q3
pools:
  - {name: h100-a, gpu: H100, site: a, gpus: 8}
  - {name: a100-b, gpu: A100, site: b, gpus: 16}
org:
  name: research
  children:
    - name: llm
      guarantee: {H100: 4}
    - name: vision
requests:
  - {id: pretrain, team: llm, gpus: 8, speed: {H100: 2.0, A100: 1.0}}
  - {id: finetune, team: vision, gpus: 4, priority: high, launch: 2025-07-01}
"""


def only_problem(text: str) -> Problem:
    """Load `text`, expecting exactly one problem, and return it."""
    problems = loads_problems(text)
    assert len(problems) == 1, problems
    return problems[0]


def loads_problems(text: str) -> list[Problem]:
    """Load `text`, expecting it to fail, and return every problem found."""
    with pytest.raises(ScenarioFileError) as info:
        loads_scenario(text, "x.yaml")
    return info.value.problems


def line_of(text: str, fragment: str) -> int:
    """1-based number of the first line containing `fragment`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


# --- valid input ----------------------------------------------------------------------------


def test_a_valid_yaml_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "q3.yaml"
    path.write_text(VALID)
    s = load_scenario(path)
    assert s.name == "q3"
    assert s.gpu_types == ["H100", "A100"]
    assert [n.name for n in s.nodes()] == ["research", "llm", "vision"]
    assert s.requests[1].priority is Priority.high
    assert s.requests[1].launch == dt.date(2025, 7, 1)


def test_a_valid_json_file_loads_to_the_same_scenario(tmp_path: Path) -> None:
    data = loads_scenario(VALID).model_dump(mode="json")
    path = tmp_path / "q3.json"
    path.write_text(json.dumps(data, indent="\t"))  # tab-indented JSON is still JSON
    assert load_scenario(path) == loads_scenario(VALID)


# --- file and syntax problems ---------------------------------------------------------------


def test_a_missing_file_is_reported_by_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioFileError) as info:
        load_scenario(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: cannot read the file")


def test_a_yaml_syntax_error_names_its_line() -> None:
    text = "name: q3\npools:\n  - {name: h100-a, gpu: H100\norg: {name: r}\n"
    problem = only_problem(text)
    assert problem.line in (3, 4)  # the unclosed flow mapping, or where the parser noticed
    assert problem.message.startswith("invalid YAML")


def test_a_json_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "q3.json"
    path.write_text('{\n\t"name": "q3",\n\t"pools": [\n\t\t{"name": "h100-a" "gpu": "H100"}\n\t]\n}\n')
    with pytest.raises(ScenarioFileError) as info:
        load_scenario(path)
    assert [p.line for p in info.value.problems] == [4]


def test_a_top_level_that_is_not_a_mapping_is_rejected() -> None:
    problem = only_problem("- just\n- a list\n")
    assert problem.line == 1
    assert "expected a mapping" in problem.message


def test_an_empty_file_is_rejected() -> None:
    assert "got an empty document" in only_problem("").message


# --- field problems point at the field and its line -----------------------------------------


def test_an_unknown_team_names_the_field_and_line() -> None:
    text = VALID.replace("team: vision", "team: lama")
    problem = only_problem(text)
    assert problem.location == "requests[1].team"
    assert problem.line == line_of(text, "team: lama")
    assert "unknown team 'lama'; add it to org" in problem.message


def test_the_error_renders_as_file_line_field_message() -> None:
    text = VALID.replace("team: vision", "team: lama")
    with pytest.raises(ScenarioFileError) as info:
        loads_scenario(text, "examples/x.yaml")
    assert str(info.value).startswith(f"examples/x.yaml:{line_of(text, 'lama')}: requests[1].team: unknown team 'lama'")


def test_negative_gpus_names_the_field() -> None:
    text = VALID.replace("gpus: 16", "gpus: -16")
    problem = only_problem(text)
    assert problem.location == "pools[1].gpus"
    assert problem.line == line_of(text, "gpus: -16")
    assert "greater than or equal to 0" in problem.message and "-16" in problem.message


def test_speed_for_an_unknown_gpu_type_names_the_type() -> None:
    text = VALID.replace("A100: 1.0", "B200: 1.0")
    problem = only_problem(text)
    assert problem.location == "requests[0].speed.B200"
    assert problem.line == line_of(text, "B200")
    assert "unknown GPU type 'B200'" in problem.message


def test_a_duplicate_node_name_points_at_the_second_one() -> None:
    text = VALID.replace("name: vision", "name: llm")
    problems = loads_problems(text)
    dup = next(p for p in problems if "duplicate node name" in p.message)
    assert dup.location == "org.children[1].name"
    second = [i for i, line in enumerate(text.splitlines(), 1) if "- name: llm" in line][1]
    assert dup.line == second


def test_a_duplicate_request_id_points_at_the_second_one() -> None:
    text = VALID.replace("id: finetune", "id: pretrain")
    problem = only_problem(text)
    assert problem.location == "requests[1].id"
    assert problem.line == line_of(text, "team: vision")
    assert "duplicate request id 'pretrain'" in problem.message


def test_an_unknown_top_level_field_suggests_checking_the_spelling() -> None:
    text = VALID + "polcy: {date: 2025-06-01}\n"
    problem = only_problem(text)
    assert problem.location == "polcy"
    assert problem.line == line_of(text, "polcy")
    assert problem.message == "unknown field 'polcy' (check spelling; see docs/scenario.md)"


def test_a_missing_required_field_points_at_its_parent() -> None:
    text = VALID.replace(", gpus: 16", "")
    problem = only_problem(text)
    assert problem.location == "pools[1].gpus"
    assert problem.line == line_of(text, "a100-b")
    assert problem.message == "missing required field 'gpus'"


def test_every_cross_reference_problem_is_reported_in_file_order() -> None:
    text = VALID.replace("A100: 1.0", "B200: 1.0").replace("team: vision", "team: lama")
    assert [p.location for p in loads_problems(text)] == ["requests[0].speed.B200", "requests[1].team"]


def test_field_errors_are_reported_before_cross_references_are_checked() -> None:
    text = VALID.replace("gpus: 16", "gpus: -1").replace("team: vision", "team: lama")
    assert [p.location for p in loads_problems(text)] == ["pools[1].gpus"]


def test_a_cycle_via_a_yaml_alias_is_a_clear_error_not_a_crash() -> None:
    text = "name: q3\npools: [{name: h100-a, gpu: H100, gpus: 8}]\norg: &root\n  name: research\n  children: [*root]\n"
    problem = only_problem(text)
    assert problem.message == "the org tree refers to itself (a cycle via a YAML alias)"
    assert problem.location == "org.children[0]"
    assert problem.line == line_of(text, "&root")  # YAML keeps no position for `*root` itself


# --- dump / load round trip -----------------------------------------------------------------


def test_dump_then_load_gives_back_the_same_scenario() -> None:
    s = loads_scenario(VALID)
    text = dump_scenario(s)
    assert loads_scenario(text) == s
    assert "site: default" not in text  # defaults are left out


def test_text_with_unicode_line_separators_survives_a_round_trip() -> None:
    s = loads_scenario(VALID.replace("priority: high", 'priority: high, justification: "caf\\xe9\\x85\\u2028x"'))
    assert s.requests[1].justification == "caf\xe9\x85\u2028x"
    assert loads_scenario(dump_scenario(s)) == s


# Names include ones YAML would read as other types if written unquoted.
names = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,5}", fullmatch=True),
    st.sampled_from(["yes", "no", "on", "null", "1.5", "1e3", "0x1F", "2025-01-01", "007", "inf", "NaN"]),
)
positive = st.floats(min_value=0.1, max_value=100, allow_nan=False, allow_infinity=False)  # within MAX_SPREAD


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Small scenarios that are valid by construction."""
    all_names = draw(st.lists(names, min_size=4, max_size=10, unique=True))
    types = all_names[:2]
    sites = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2, unique=True))
    pools = [
        {
            "name": f"p{i}",
            "gpu": draw(st.sampled_from(types)),
            "site": draw(st.sampled_from(sites)),
            "gpus": draw(st.integers(0, 64)),
        }
        for i in range(draw(st.integers(1, 3)))
    ]
    used_types = sorted({p["gpu"] for p in pools})
    used_sites = sorted({p["site"] for p in pools})
    teams = all_names[2:]

    def node(name: str) -> dict:
        out: dict = {"name": name, "weight": draw(positive)}
        gpu = draw(st.sampled_from(used_types))
        g = draw(st.integers(0, 8))
        out["guarantee"] = {gpu: g}
        out["limit"] = {gpu: g + draw(st.integers(0, 8))}
        return out

    root = node(teams[0])
    root["children"] = [node(t) for t in teams[1:]]
    requests = []
    for i in range(draw(st.integers(0, 3))):
        gpus = draw(st.integers(1, 32))
        requests.append(
            {
                "id": f"r{i}",
                "team": draw(st.sampled_from(teams)),
                "gpus": gpus,
                "min": draw(st.none() | st.integers(1, gpus)),
                "speed": draw(st.none() | st.dictionaries(st.sampled_from(used_types), positive, min_size=1)),
                "priority": draw(st.sampled_from(list(Priority))).value,
                "launch": draw(st.none() | st.dates(dt.date(2024, 1, 1), dt.date(2027, 1, 1))),
                "sites": draw(st.none() | st.lists(st.sampled_from(used_sites), unique=True)),
                "justification": draw(st.none() | st.text(max_size=20)),
            }
        )
    policy = {
        "date": draw(st.none() | st.dates(dt.date(2024, 1, 1), dt.date(2027, 1, 1))),
        "priority_weights": draw(st.dictionaries(st.sampled_from(list(Priority)), positive)),
    }
    return Scenario.model_validate(
        {
            "name": draw(names),
            "reference_gpu": draw(st.none() | st.sampled_from(used_types)),
            "pools": pools,
            "org": root,
            "requests": requests,
            "policy": policy,
        }
    )


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_any_scenario_survives_a_dump_load_round_trip(s: Scenario) -> None:
    assert loads_scenario(dump_scenario(s)) == s


@pytest.mark.parametrize("was_enabled", [True, False])
@pytest.mark.parametrize("text", [VALID, "name: q3\npools: [}\n", VALID.replace("gpus: 8}", "gpus: -8}")])
def test_loading_leaves_the_cycle_collector_as_it_found_it(text: str, was_enabled: bool) -> None:
    """The loader pauses Python's cycle collector while it parses (for speed); a service that
    loads scenarios for weeks must get it back, after a good file and after a bad one."""
    import gc

    gc.enable() if was_enabled else gc.disable()
    try:
        try:
            loads_scenario(text, "s.yaml")
        except ScenarioFileError:
            pass
        assert gc.isenabled() is was_enabled
    finally:
        gc.enable()


def test_threads_loading_at_once_leave_the_cycle_collector_on() -> None:
    """Pauses overlap when threads load together; the collector is still on when they are done."""
    import gc
    from concurrent.futures import ThreadPoolExecutor

    big = VALID + "".join(f"  - {{id: r{i}, team: llm, gpus: 1}}\n" for i in range(1000))
    assert gc.isenabled()
    with ThreadPoolExecutor(4) as pool:
        scenarios = list(pool.map(lambda _: loads_scenario(big, "s.yaml"), range(16)))
    assert all(len(s.requests) == 1002 for s in scenarios)
    assert gc.isenabled()


@pytest.mark.parametrize("date", ["2023-13-01", "2023-02-29", "0000-01-01", "2023-04-31 10:00:00"])
def test_a_date_that_does_not_exist_is_a_problem_on_its_line(date: str) -> None:
    """YAML reads 2023-02-29 as a date, and PyYAML fails on it without a line; the loader says where."""
    text = VALID.replace("launch: 2025-07-01", f"launch: {date}")
    p = only_problem(text)
    assert p.line == line_of(text, date)
    assert date in p.message and "YYYY-MM-DD" in p.message


def test_weights_or_speeds_too_far_apart_for_the_solver_are_a_problem_on_their_line() -> None:
    """A weight of 1e-6 beside 1e6 made HiGHS stop with "unbounded" on a one-GPU lab."""
    text = VALID.replace("    - name: vision\n", "    - name: vision\n      weight: 0.000001\n").replace(
        "      guarantee: {H100: 4}\n", "      guarantee: {H100: 4}\n      weight: 1000000\n"
    )
    p = only_problem(text)
    assert p.line == line_of(text, "weight: 0.000001") and "more than 100,000 times apart" in p.message
    speeds = VALID.replace("speed: {H100: 2.0, A100: 1.0}", "speed: {H100: 20000, A100: 0.01}")
    p = only_problem(speeds)
    assert p.location == "requests[0].speed.A100" and "more than 100,000 times apart" in p.message
