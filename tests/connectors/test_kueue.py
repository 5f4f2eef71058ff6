"""`fairshare sync kueue`: Kueue objects from an allocation, validated against Kueue's own CRDs.

No cluster runs here: the apply tests drive the real Kubernetes client against a fake HTTP
connection pool and check the requests it would send.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client as k8s
from sqlalchemy import select
from typer.testing import CliRunner

from fairshare.cli import app
from fairshare.connectors import kueue
from fairshare.connectors.kueue.cel import checkable, is_transition_rule
from fairshare.connectors.kueue.cel import evaluate as cel_evaluate
from fairshare.connectors.kueue.formats import parse_quantity
from fairshare.connectors.kueue.schema import (
    BUNDLED_CRDS,
    CrdError,
    CrdSchemas,
    InvalidManifest,
    check_objects,
    schemas,
)
from fairshare.connectors.source import Published, from_file
from fairshare.scenario.files import loads_scenario
from fairshare.service.ops.rounds import solve
from fairshare.store import models as m
from fairshare.store.db import make_engine, session_factory

ROOT = Path(__file__).resolve().parents[2]
META = ROOT / "examples" / "meta-ai-2023.yaml"
SHARED_CRDS = Path(os.environ.get("FAIRSHARE_SHARED", ROOT.parent / "shared")) / "kueue-crds"
runner = CliRunner()


@pytest.fixture(scope="module")
def meta() -> Published:
    return from_file(META)


@pytest.fixture(scope="module")
def objects(meta: Published) -> list[dict[str, Any]]:
    return kueue.manifests(meta)


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def quotas(obj: dict[str, Any]) -> dict[str, dict[str, str]]:
    """flavor -> {nominalQuota, borrowingLimit?, lendingLimit?} of a ClusterQueue or Cohort."""
    (group,) = obj["spec"].get("resourceGroups", [{"flavors": []}])
    return {f["name"]: {k: v for k, v in f["resources"][0].items() if k != "name"} for f in group["flavors"]}


def small(yaml_text: str, node_gpus: dict[str, dict[str, int]]) -> Published:
    """A scenario with a hand-written allocation: no solver, exact numbers."""
    return Published(loads_scenario(yaml_text), node_gpus, "test")


LAB = """
name: lab
pools:
  - {name: h, gpu: H100, gpus: 100}
  - {name: a, gpu: A100, gpus: 200}
org:
  name: lab
  children:
    - name: research
      weight: 3
      guarantee: {H100: 40}
      limit: {A100: 150}
      children:
        - {name: vision, weight: 0.5, guarantee: {A100: 10}, limit: {H100: 70}}
        - {name: nlp}
    - name: product
"""
LAB_GPUS = {
    "lab": {"H100": 90, "A100": 180},
    "research": {"H100": 60, "A100": 120},
    "vision": {"H100": 20, "A100": 30},
    "nlp": {"H100": 40, "A100": 90},
    "product": {"H100": 30, "A100": 60},
}


# --- the example, generated and validated ---------------------------------------------------------


def test_every_object_for_the_example_passes_the_crd_schemas(objects: list[dict[str, Any]]) -> None:
    check_objects(objects)
    kinds = [o["kind"] for o in objects]
    assert kinds.count("ResourceFlavor") == 3 and kinds.count("Cohort") == 4
    assert kinds.count("ClusterQueue") == 7 and kinds.count("LocalQueue") == 7
    assert {o["apiVersion"] for o in objects} == {"kueue.x-k8s.io/v1beta2"}
    assert schemas().unchecked_rules == set()


def test_quotas_equal_the_allocation_per_team_and_type(meta: Published, objects: list[dict[str, Any]]) -> None:
    queues = [o for o in objects if o["kind"] == "ClusterQueue"]
    assert {q["metadata"]["name"] for q in queues} == {"llama", "opt", "assistants", "media", "ads", "feed", "reels"}
    for q in queues:
        team = q["metadata"]["annotations"]["fairshare/node"]
        got = {flavor: v["nominalQuota"] for flavor, v in quotas(q).items()}
        assert got == {t.lower(): str(meta.node_gpus[team].get(t, 0)) for t in ("A100", "H100", "V100")}, team
        assert all(isinstance(v, str) for v in got.values())  # quantities as strings, never YAML numbers


def test_every_gpu_type_is_a_flavor_with_the_node_label(objects: list[dict[str, Any]]) -> None:
    flavors = [o for o in objects if o["kind"] == "ResourceFlavor"]
    assert [(f["metadata"]["name"], f["spec"]["nodeLabels"]) for f in flavors] == [
        ("a100", {"nvidia.com/gpu.product": "A100"}),
        ("h100", {"nvidia.com/gpu.product": "H100"}),
        ("v100", {"nvidia.com/gpu.product": "V100"}),
    ]


def test_cohort_tree_mirrors_the_org_tree_with_its_weights(meta: Published, objects: list[dict[str, Any]]) -> None:
    cohorts = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Cohort"}
    assert {name: spec.get("parentName") for name, spec in cohorts.items()} == {
        "meta": None,
        "fair": "meta",
        "genai": "meta",
        "production-ai": "meta",
    }
    assert {name: spec["fairSharing"]["weight"] for name, spec in cohorts.items()} == {
        "meta": "1",
        "fair": "2",
        "genai": "1",
        "production-ai": "1",
    }
    queues = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "ClusterQueue"}
    parent = {c.name: n.name for n in meta.scenario.nodes() for c in n.children}
    assert {name: spec["cohortName"] for name, spec in queues.items()} == {name: parent[name] for name in queues}
    assert queues["llama"]["fairSharing"]["weight"] == "2" and queues["opt"]["fairSharing"]["weight"] == "1"


def test_a_guarantee_is_capacity_not_lent(meta: Published, objects: list[dict[str, Any]]) -> None:
    fair = quotas(one(objects, "Cohort", "fair"))
    assert fair["h100"]["lendingLimit"] == str(meta.node_gpus["fair"]["H100"] - 256)
    prod = quotas(one(objects, "Cohort", "production-ai"))
    assert prod["a100"]["lendingLimit"] == str(meta.node_gpus["production-ai"]["A100"] - 1024)
    assert prod["v100"]["lendingLimit"] == str(meta.node_gpus["production-ai"]["V100"] - 1024)
    assert "lendingLimit" not in fair["a100"]  # no guarantee on A100: all of it may be lent


def test_a_limit_is_the_borrowing_headroom(meta: Published, objects: list[dict[str, Any]]) -> None:
    prod = quotas(one(objects, "Cohort", "production-ai"))
    assert prod["h100"]["borrowingLimit"] == str(128 - meta.node_gpus["production-ai"].get("H100", 0))
    assert "borrowingLimit" not in prod["a100"]


def test_team_guarantee_and_limit_go_on_its_cluster_queue() -> None:
    objs = kueue.manifests(small(LAB, LAB_GPUS))
    check_objects(objs)
    vision = quotas(one(objs, "ClusterQueue", "vision"))
    assert vision["a100"] == {"nominalQuota": "30", "lendingLimit": "20"}
    assert vision["h100"] == {"nominalQuota": "20", "borrowingLimit": "50"}
    research = quotas(one(objs, "Cohort", "research"))
    assert research["h100"] == {"nominalQuota": "0", "lendingLimit": "20"}
    assert research["a100"] == {"nominalQuota": "0", "borrowingLimit": "30"}
    assert one(objs, "ClusterQueue", "vision")["spec"]["fairSharing"]["weight"] == "0.5"


def test_capacity_nobody_was_allocated_is_the_root_cohorts_pool() -> None:
    objs = kueue.manifests(small(LAB, LAB_GPUS))
    assert quotas(one(objs, "Cohort", "lab")) == {"h100": {"nominalQuota": "10"}, "a100": {"nominalQuota": "20"}}


def test_a_teams_own_gpu_types_come_first_so_it_uses_its_quota_before_borrowing(objects: list[dict[str, Any]]) -> None:
    opt = one(objects, "ClusterQueue", "opt")
    assert list(quotas(opt)) == ["v100", "h100", "a100"]  # 454, 186, 0
    assert opt["spec"]["flavorFungibility"] == {"whenCanBorrow": "TryNextFlavor"}


def test_an_inner_node_with_its_own_requests_gets_an_own_queue_in_its_cohort() -> None:
    text = LAB + "requests:\n  - {id: r1, team: research, gpus: 4}\n"
    gpus = {**LAB_GPUS, "research": {"H100": 64, "A100": 120}}
    objs = kueue.manifests(small(text, gpus))
    check_objects(objs)
    own = one(objs, "ClusterQueue", "research-own")
    assert own["spec"]["cohortName"] == "research"
    assert {f: v["nominalQuota"] for f, v in quotas(own).items()} == {"h100": "4", "a100": "0"}
    assert one(objs, "LocalQueue", "research-own")["metadata"]["namespace"] == "research"


def test_namespaces_are_configurable_and_select_the_teams_jobs() -> None:
    opts = kueue.KueueOptions(namespaces={"nlp": ["ml-nlp", "ml-nlp-dev"]})
    objs = kueue.manifests(small(LAB, LAB_GPUS), opts)
    check_objects(objs)
    lqs = [
        (o["metadata"]["namespace"], o["metadata"]["name"], o["spec"]["clusterQueue"])
        for o in objs
        if o["kind"] == "LocalQueue" and o["spec"]["clusterQueue"] == "nlp"
    ]
    assert lqs == [("ml-nlp", "nlp", "nlp"), ("ml-nlp-dev", "nlp", "nlp")]
    selector = one(objs, "ClusterQueue", "nlp")["spec"]["namespaceSelector"]
    assert selector == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ml-nlp", "ml-nlp-dev"]}
        ]
    }
    assert one(objs, "LocalQueue", "vision")["metadata"]["namespace"] == "vision"


def test_flavor_labels_and_resource_name_are_configurable() -> None:
    opts = kueue.KueueOptions(
        resource="amd.com/gpu",
        label_key="gpu.example.com/model",
        flavor_labels={"H100": {"cloud.example.com/accelerator": "h100-80gb"}},
    )
    objs = kueue.manifests(small(LAB, LAB_GPUS), opts)
    check_objects(objs)
    assert one(objs, "ResourceFlavor", "h100")["spec"]["nodeLabels"] == {"cloud.example.com/accelerator": "h100-80gb"}
    assert one(objs, "ResourceFlavor", "a100")["spec"]["nodeLabels"] == {"gpu.example.com/model": "A100"}
    assert one(objs, "ClusterQueue", "nlp")["spec"]["resourceGroups"][0]["coveredResources"] == ["amd.com/gpu"]


@pytest.mark.parametrize(
    "options, message",
    [
        (kueue.KueueOptions(namespaces={"nobody": ["x"]}), "'nobody', which is not a team"),
        (kueue.KueueOptions(namespaces={"nlp": ["Not_A_Namespace"]}), "not a valid namespace name"),
        (kueue.KueueOptions(flavor_labels={"B200": {"k": "v"}}), "unknown GPU type(s) B200"),
        (kueue.KueueOptions(flavor_labels={"H100": {"k": "bad value!"}}), "node label k=bad value! for GPU type H100"),
    ],
)
def test_options_that_do_not_fit_the_scenario_are_refused(options: kueue.KueueOptions, message: str) -> None:
    with pytest.raises(kueue.MappingError) as info:
        kueue.manifests(small(LAB, LAB_GPUS), options)
    assert message in str(info.value)


def test_org_names_that_collide_in_kubernetes_are_refused() -> None:
    text = LAB.replace("- {name: nlp}", "- {name: Vision}")
    with pytest.raises(kueue.MappingError, match="'vision' and 'Vision' both become 'vision'"):
        kueue.manifests(small(text, LAB_GPUS))


def test_quantities_are_strings_kueue_parses_back_to_the_number() -> None:
    for value in (0, 1, 977, 2.0, 0.5, 1.25, 3.000000001):
        text = kueue.quantity(value)
        assert isinstance(text, str) and float(parse_quantity(text)) == pytest.approx(value)
    assert parse_quantity("500m") == parse_quantity("0.5") and parse_quantity("2Ki") == 2048
    assert parse_quantity("12 GPUs") is None and parse_quantity(0.5) is None


# --- broken manifests are caught, naming the object, the field and the rule ------------------------


def broken(objects: list[dict[str, Any]], kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> str:
    objs = copy.deepcopy(objects)
    change(one(objs, kind, name))
    with pytest.raises(InvalidManifest) as info:
        check_objects(objs)
    return str(info.value)


def test_an_unknown_field_is_rejected_with_a_suggestion(objects: list[dict[str, Any]]) -> None:
    message = broken(objects, "ClusterQueue", "llama", lambda o: o["spec"].update(cohort="fair"))
    assert message.splitlines() == [message]  # one problem, one line
    assert message.startswith("ClusterQueue/llama: spec.cohort: unknown field 'cohort'; did you mean 'cohortName'?")
    assert message.endswith("[schema: unknown field]")


def test_an_unknown_field_deep_inside_is_rejected(objects: list[dict[str, Any]]) -> None:
    def typo(o: dict[str, Any]) -> None:
        o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQouta"] = "1"

    message = broken(objects, "ClusterQueue", "opt", typo)
    assert "ClusterQueue/opt: spec.resourceGroups[0].flavors[0].resources[0].nominalQouta: unknown field" in message
    assert "did you mean 'nominalQuota'?" in message


@pytest.mark.parametrize("value", ["12 GPUs", "1.5.0", 0.5, True])
def test_an_invalid_quantity_is_rejected(objects: list[dict[str, Any]], value: Any) -> None:
    def bad(o: dict[str, Any]) -> None:
        o["spec"]["resourceGroups"][0]["flavors"][1]["resources"][0]["nominalQuota"] = value

    message = broken(objects, "ClusterQueue", "llama", bad)
    assert (
        f"ClusterQueue/llama: spec.resourceGroups[0].flavors[1].resources[0].nominalQuota: {value!r} is not a "
        "Kubernetes quantity"
    ) in message
    assert "[schema: " in message


def _drop_cohort(o: dict[str, Any]) -> None:
    del o["spec"]["cohortName"]
    o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["borrowingLimit"] = "10"


def _extra_resource(o: dict[str, Any]) -> None:
    o["spec"]["resourceGroups"][0]["flavors"][0]["resources"].append({"name": "cpu", "nominalQuota": "1"})


def _borrow_without_reclaim(o: dict[str, Any]) -> None:  # reclaimWithinCohort defaults to Never
    o["spec"]["preemption"] = {"borrowWithinCohort": {"policy": "LowerPriority"}}


def _topology_without_labels(o: dict[str, Any]) -> None:
    o["spec"] = {"topologyName": "default"}


def _preference_without_try_next(o: dict[str, Any]) -> None:
    o["spec"]["flavorFungibility"] = {"preference": "BorrowingOverPreemption"}


@pytest.mark.parametrize(
    "kind, name, change, path, message",
    [
        ("ClusterQueue", "llama", _drop_cohort, "spec", "borrowingLimit must be nil when cohort is empty"),
        (
            "ClusterQueue",
            "llama",
            _extra_resource,
            "spec.resourceGroups[0]",
            "flavors must have the same number of resources as the coveredResources",
        ),
        (
            "Cohort",
            "fair",
            _extra_resource,
            "spec.resourceGroups[0]",
            "flavors must have the same number of resources as the coveredResources",
        ),
        (
            "ClusterQueue",
            "opt",
            _borrow_without_reclaim,
            "spec.preemption",
            "reclaimWithinCohort=Never and borrowWithinCohort.Policy!=Never",
        ),
        (
            "ClusterQueue",
            "opt",
            _preference_without_try_next,
            "spec.flavorFungibility",
            "preference can only be set when both whenCanBorrow and whenCanPreempt are TryNextFlavor",
        ),
        (
            "ResourceFlavor",
            "h100",
            _topology_without_labels,
            "spec",
            "at least one nodeLabel is required when topology is set",
        ),
    ],
)
def test_a_violated_cel_rule_is_caught(
    objects: list[dict[str, Any]],
    kind: str,
    name: str,
    change: Callable[[dict[str, Any]], None],
    path: str,
    message: str,
) -> None:
    text = broken(objects, kind, name, change)
    line = next(line for line in text.splitlines() if message in line)
    assert line.startswith(f"{kind}/{name}: {path}: {message} [CEL: ")


def test_kueue_webhook_rules_are_checked_too(objects: list[dict[str, Any]]) -> None:
    def lend_more_than_nominal(o: dict[str, Any]) -> None:
        o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["lendingLimit"] = "5000"

    text = broken(objects, "ClusterQueue", "llama", lend_more_than_nominal)
    assert (
        "ClusterQueue/llama: spec.resourceGroups[0].flavors[0].resources[0].lendingLimit: '5000' must be less "
        "than or equal to the nominalQuota ('977') [webhook: lendingLimit]"
    ) in text
    text = broken(objects, "Cohort", "meta", lambda o: o["spec"].update(fairSharing={"weight": "-1"}))
    assert "Cohort/meta: spec.fairSharing.weight: must be non-negative" in text


def test_duplicate_list_map_keys_are_caught(objects: list[dict[str, Any]]) -> None:
    def twice(o: dict[str, Any]) -> None:
        flavors = o["spec"]["resourceGroups"][0]["flavors"]
        flavors.append(copy.deepcopy(flavors[0]))

    text = broken(objects, "ClusterQueue", "feed", twice)
    assert "ClusterQueue/feed: spec.resourceGroups[0].flavors[3]: duplicate entry (name='v100', also at [0])" in text
    assert "[schema: x-kubernetes-list-type=map]" in text


def test_broken_references_between_objects_are_caught(objects: list[dict[str, Any]]) -> None:
    text = broken(objects, "LocalQueue", "reels", lambda o: o["spec"].update(clusterQueue="reel"))
    assert "LocalQueue/reels/reels: spec.clusterQueue: refers to ClusterQueue 'reel', which is not among" in text
    text = broken(objects, "Cohort", "meta", lambda o: o["spec"].update(parentName="fair"))
    assert "the cohort tree has a cycle: fair -> meta -> fair" in text


def test_metadata_is_checked(objects: list[dict[str, Any]]) -> None:
    text = broken(objects, "LocalQueue", "opt", lambda o: o["metadata"].pop("namespace"))
    assert "LocalQueue/opt: metadata.namespace: LocalQueue is namespaced: a namespace is required" in text
    text = broken(objects, "ClusterQueue", "ads", lambda o: o["metadata"].update(name="Ads"))
    assert "ClusterQueue/Ads: metadata.name: 'Ads' must be a lowercase DNS subdomain" in text
    text = broken(objects, "Cohort", "genai", lambda o: o.update(apiVersion="kueue.x-k8s.io/v1beta9"))
    assert "Cohort/genai: apiVersion: Cohort has no version 'v1beta9'" in text


def test_every_cel_rule_in_the_crds_can_be_evaluated_or_is_update_only() -> None:
    crds = CrdSchemas()
    rules = set()
    for kind in crds.kinds():
        for version in ("v1beta1", "v1beta2"):
            for node in _schema_nodes(crds.kind(kind, version).schema):
                rules |= {" ".join(r["rule"].split()) for r in node.get("x-kubernetes-validations", [])}
    assert rules, "found no CEL rules: the walk is broken"
    missing = {r for r in rules if not is_transition_rule(r) and not checkable(r)}
    assert missing == set()


def crds_with_rule(directory: Path, rule: dict[str, str], name: str = "lendingLimit") -> Path:
    """A copy of the bundled CRDs whose ClusterQueue v1beta2 resource quotas carry one more CEL rule."""
    shutil.copytree(BUNDLED_CRDS, directory)
    path = directory / "kueue.x-k8s.io_clusterqueues.yaml"
    crd = yaml.safe_load(path.read_text())
    (v1beta2,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    node = v1beta2["schema"]["openAPIV3Schema"]
    for key in ("spec", "resourceGroups", "flavors", "resources"):
        node = node["properties"][key]
        node = node.get("items", node)
    node.setdefault("x-kubernetes-validations", []).append(rule)
    path.write_text(yaml.safe_dump(crd))
    return directory


def test_a_rule_added_to_a_crd_file_is_enforced_without_code_changes(
    tmp_path: Path, objects: list[dict[str, Any]]
) -> None:
    rule = "!quantity(self.nominalQuota).isGreaterThan(quantity('0.6k'))"  # Kubernetes' quantity library
    crds = crds_with_rule(
        tmp_path / "crds",
        {
            "rule": rule,
            "fieldPath": ".nominalQuota",
            "messageExpression": "'nominalQuota ' + self.nominalQuota + ' is above 600 GPUs: ask the committee'",
        },
    )
    check_objects(objects)  # the bundled CRDs have no such rule
    with pytest.raises(InvalidManifest) as info:
        check_objects(objects, crds)
    assert str(info.value).splitlines() == [  # 977 A100s; 600 V100s (ads) is not above 600
        "ClusterQueue/llama: spec.resourceGroups[0].flavors[0].resources[0].nominalQuota: nominalQuota 977 is above "
        f"600 GPUs: ask the committee [CEL: {rule}]"
    ]


def test_a_rule_calling_a_function_fairshare_lacks_is_noted_not_failed(tmp_path: Path) -> None:
    rule = "self.name.lowerAscii() == self.name"  # Kubernetes' strings library: not registered here
    crds = crds_with_rule(tmp_path / "crds", {"rule": rule, "message": "lower case"})
    assert not checkable(rule)
    res = run(META, "--out", tmp_path / "k", "--crds", crds)
    assert res.exit_code == 0, res.output
    assert f"not checked offline (this CEL rule cannot be evaluated here): {rule}" in " ".join(res.output.split())
    assert schemas(crds).unchecked_rules == {rule}


@pytest.mark.parametrize(
    "rule, value",
    [
        ("quantity(self) == quantity('0.5')", "500m"),
        ("quantity(self).isLessThan(quantity('2Ki')) && quantity(self).asInteger() == 2000", "2k"),
        ("quantity(self).compareTo(quantity('1e3')) == 0 && quantity(self).isInteger()", "1000"),
        ("!quantity(self).isInteger() && quantity(self).sign() == 1", "1.5"),
        ("quantity(self).add(quantity('500m')).sub(1).asApproximateFloat() == 0.5", "1"),
        ("isQuantity(self[0]) && !isQuantity(self[1]) && !isQuantity(self[2])", ["8", "12 GPUs", "1.5.0"]),
    ],
)
def test_kubernetes_quantity_functions_are_available_to_crd_rules(rule: str, value: Any) -> None:
    assert checkable(rule)
    assert cel_evaluate({"rule": rule}, value).holds


def test_a_cel_rule_that_does_not_hold_or_fails_rejects_with_its_message() -> None:
    outcome = cel_evaluate({"rule": "self.size() <= 1", "message": "one at most"}, ["a", "b"])
    assert not outcome.holds and outcome.message == "one at most" and not outcome.unchecked
    outcome = cel_evaluate({"rule": "self.missing == 1"}, {})  # an evaluation error, as on the API server
    assert not outcome.holds and outcome.message == "failed rule: self.missing == 1"
    assert cel_evaluate({"rule": "quantity(self).isInteger()"}, "12 GPUs").holds is False


def _schema_nodes(schema: dict[str, Any]) -> list[dict[str, Any]]:
    nodes, stack = [], [schema]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack += list((node.get("properties") or {}).values())
        stack += [s for s in (node.get("items"), node.get("additionalProperties")) if isinstance(s, dict)]
    return nodes


def test_bundled_crds_are_the_shared_unmodified_ones() -> None:
    readme = (BUNDLED_CRDS / "README.md").read_text()
    for path in sorted(BUNDLED_CRDS.glob("*.yaml")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        kind = yaml.load(path.read_text(), Loader=loader)["spec"]["names"]["kind"]
        assert f"`{path.name}` | {kind} | {digest}" in readme
        if SHARED_CRDS.is_dir():
            assert path.read_bytes() == (SHARED_CRDS / path.name).read_bytes()
    assert (BUNDLED_CRDS / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_a_missing_crd_directory_is_a_clear_error(tmp_path: Path, objects: list[dict[str, Any]]) -> None:
    with pytest.raises(CrdError, match=f"Kueue CRD schemas not found: {tmp_path / 'nope'} is not a directory"):
        check_objects(objects, tmp_path / "nope")


def test_a_crd_directory_without_kueue_crds_is_a_clear_error(tmp_path: Path, objects: list[dict[str, Any]]) -> None:
    """Not "Kueue would reject every object": the directory is the mistake, and the message says so."""
    (tmp_path / "other.yaml").write_text("kind: CustomResourceDefinition\nspec: {group: example.com}\n")
    with pytest.raises(CrdError, match=f"no Kueue CRDs in {tmp_path}: expected kueue.x-k8s.io"):
        check_objects(objects, tmp_path)


@pytest.mark.skipif(not SHARED_CRDS.is_dir(), reason="../shared/kueue-crds is not beside the repo")
def test_the_shared_crds_validate_the_example_too(objects: list[dict[str, Any]]) -> None:
    check_objects(objects, SHARED_CRDS)


# --- applying: the requests the official client sends ---------------------------------------------


class FakePool:
    """Stands in for urllib3's pool manager: records requests, answers like an API server."""

    def __init__(self, answer: Callable[[str, str], tuple[int, dict[str, Any] | None]] | None = None):
        self.requests: list[dict[str, Any]] = []
        self.answer = answer or (lambda method, url: (200, None))

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **_: Any) -> urllib3.HTTPResponse:
        self.requests.append(
            {"method": method, "url": url, "headers": dict(headers or {}), "body": json.loads(body) if body else None}
        )
        status, payload = self.answer(method, url)
        data = json.dumps(payload if payload is not None else json.loads(body or "{}")).encode()
        return urllib3.HTTPResponse(
            body=data, status=status, reason="x", preload_content=True, headers={"content-type": "application/json"}
        )


def fake_api(pool: FakePool) -> tuple[k8s.ApiClient, k8s.CustomObjectsApi]:
    api_client = k8s.ApiClient(k8s.Configuration(host="https://kube.test"))
    api_client.rest_client.pool_manager = pool
    return api_client, k8s.CustomObjectsApi(api_client)


def test_apply_sends_one_server_side_apply_patch_per_object(objects: list[dict[str, Any]]) -> None:
    pool = FakePool()
    done = kueue.apply(objects, fake_api(pool)[1])
    assert len(done) == len(pool.requests) == len(objects)
    first, last = pool.requests[0], pool.requests[-1]
    assert first["method"] == "PATCH"
    assert first["url"] == (
        "https://kube.test/apis/kueue.x-k8s.io/v1beta2/resourceflavors/a100"
        "?fieldManager=fairshare&fieldValidation=Strict&force=true"
    )
    assert last["url"].startswith("https://kube.test/apis/kueue.x-k8s.io/v1beta2/namespaces/reels/localqueues/reels?")
    assert all(r["headers"]["Content-Type"] == "application/apply-patch+yaml" for r in pool.requests)
    assert [r["body"] for r in pool.requests] == objects  # the validated objects, as they are
    kinds = [r["url"].split("/v1beta2/")[1].split("/")[0] for r in pool.requests]
    assert kinds == sorted(kinds, key=["resourceflavors", "cohorts", "clusterqueues", "namespaces"].index)


def test_a_dry_run_asks_the_server_to_check_without_persisting(objects: list[dict[str, Any]]) -> None:
    pool = FakePool()
    kueue.apply(objects[:2], fake_api(pool)[1], dry_run=True)
    assert all("dryRun=All" in r["url"] for r in pool.requests)


def test_refusals_are_listed_per_object_with_what_to_do(objects: list[dict[str, Any]]) -> None:
    def answer(method: str, url: str) -> tuple[int, dict[str, Any] | None]:
        if "/namespaces/" in url:
            ns = url.split("/namespaces/")[1].split("/")[0]
            return 404, {"kind": "Status", "message": f'namespaces "{ns}" not found'}
        return 200, None

    with pytest.raises(kueue.ApplyError) as info:
        kueue.apply(objects, fake_api(FakePool(answer))[1], dry_run=True)
    assert len(info.value.failures) == 7 and info.value.dry_run
    assert str(info.value.failures[0]) == (
        'LocalQueue/llama/llama: namespaces "llama" not found: create namespace '
        "'llama' or map the team to an existing one with --namespace TEAM=NAMESPACE "
        "(HTTP 404)"
    )


def test_no_answer_from_the_server_is_unreachable(objects: list[dict[str, Any]]) -> None:
    class Down(FakePool):
        def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
            raise urllib3.exceptions.MaxRetryError(None, url, OSError("Connection refused"))

    with pytest.raises(kueue.Unreachable, match="Connection refused"):
        kueue.apply(objects, fake_api(Down())[1])


# --- the command ----------------------------------------------------------------------------------


def run(*args: str) -> Any:
    return runner.invoke(app, ["sync", "kueue", *map(str, args)])


def test_cli_writes_one_file_per_kind_that_revalidates(tmp_path: Path) -> None:
    res = run(META, "--out", tmp_path / "kueue", "--namespace", "llama=ml-llama")
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "kueue").iterdir())
    assert files == ["01-resourceflavors.yaml", "02-cohorts.yaml", "03-clusterqueues.yaml", "04-localqueues.yaml"]
    docs = [d for f in files for d in yaml.safe_load_all((tmp_path / "kueue" / f).read_text())]
    check_objects(docs)
    assert [d["kind"] for d in docs].count("ClusterQueue") == 7
    assert one(docs, "LocalQueue", "llama")["metadata"]["namespace"] == "ml-llama"
    assert "wrote 3 ResourceFlavors, 4 Cohorts, 7 ClusterQueues, 7 LocalQueues" in " ".join(res.output.split())


def test_cli_prints_the_manifests_without_out_or_apply() -> None:
    res = run(META)
    assert res.exit_code == 0, res.output
    docs = list(yaml.safe_load_all(res.stdout))
    check_objects(docs)
    assert len(docs) == 21


def test_cli_bad_scenario_path_exits_2_with_one_line(tmp_path: Path) -> None:
    res = run(tmp_path / "missing.yaml", "--out", tmp_path)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: no scenario file at {tmp_path / 'missing.yaml'}; give a scenario file or --round ID"
    ]


def test_cli_apply_without_a_cluster_exits_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    res = run(META, "--apply")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Kubernetes cluster to apply to: no kubeconfig at")
    assert "--out DIR" in lines[0] and "Traceback" not in res.output


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://kube.test:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: lab, context: {cluster: c, user: u}}, {name: other, context: {cluster: c, user: u}}]
current-context: lab
"""


def test_the_api_is_built_from_the_kubeconfig_and_names_its_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").write_text(KUBECONFIG)
    api, where = kueue.custom_objects_api(tmp_path / "config")
    assert isinstance(api, k8s.CustomObjectsApi) and where == "lab"
    assert api.api_client.configuration.host == "https://kube.test:6443"
    assert kueue.custom_objects_api(tmp_path / "config", "other")[1] == "other"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))  # the default, as for the service's push
    assert kueue.custom_objects_api()[1] == "lab"


def test_no_usable_cluster_is_one_line_saying_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with pytest.raises(
        kueue.NoCluster,
        match=r"^no Kubernetes cluster to apply to: no kubeconfig at .*/none and "
        r"not running in a pod$",
    ):
        kueue.custom_objects_api()
    (tmp_path / "config").write_text(KUBECONFIG)
    with pytest.raises(kueue.NoCluster, match=r"^cannot use the kubeconfig .*/config: .*nope"):
        kueue.custom_objects_api(tmp_path / "config", "nope")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # a pod without its service account's token
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(kueue.NoCluster, match="^cannot use the in-cluster service account: "):
        kueue.custom_objects_api()


def test_cli_apply_with_an_unusable_context_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(KUBECONFIG)
    res = run(META, "--apply", "--kubeconfig", tmp_path / "config", "--context", "nope")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot use the kubeconfig {tmp_path / 'config'}: ")
    assert "--out DIR" in lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--namespace", "llama"], "--namespace 'llama': expected TEAM=NAMESPACE"),
        (["--namespace", "lama=x"], "namespace mapping for 'lama', which is not a team"),
        (["--flavor-label", "A100=nvidia.com/gpu.product"], "expected GPU_TYPE=KEY=VALUE"),
        (["--resource", "not a resource"], "invalid resource or label name"),
    ],
)
def test_cli_bad_options_exit_2(args: list[str], message: str) -> None:
    res = run(META, *args)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_cli_without_scenario_or_round_is_a_usage_error() -> None:
    res = run()
    assert res.exit_code == 2 and "give either a scenario file or --round ID" in res.output


@pytest.fixture()
def published_round(tmp_path: Path) -> tuple[str, int]:
    """A database holding the example as a published round."""
    url = f"sqlite:///{tmp_path / 'fairshare.db'}"
    res = runner.invoke(app, ["import", str(META), "--round", "2023-03", "--db", url])
    assert res.exit_code == 0, res.output
    with session_factory(make_engine(url))() as session:
        rnd = session.scalars(select(m.Round).where(m.Round.name == "2023-03")).one()
        solve(session, rnd, trigger="test")
        rnd.state, rnd.published_at = "published", dt.datetime(2023, 3, 1, tzinfo=dt.UTC)
        session.commit()
        return url, rnd.id


def test_cli_round_gives_the_same_quotas_as_the_file(
    published_round: tuple[str, int], tmp_path: Path, objects: list[dict[str, Any]]
) -> None:
    url, round_id = published_round
    res = run("--round", round_id, "--db", url, "--out", tmp_path / "k")
    assert res.exit_code == 0, res.output
    docs = list(yaml.safe_load_all((tmp_path / "k" / "03-clusterqueues.yaml").read_text()))
    assert {d["metadata"]["name"]: quotas(d) for d in docs} == {
        o["metadata"]["name"]: quotas(o) for o in objects if o["kind"] == "ClusterQueue"
    }


def test_cli_apply_dry_runs_everything_then_applies_and_audits(
    published_round: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, round_id = published_round
    pool = FakePool()
    monkeypatch.setattr(kueue, "custom_objects_api", lambda kubeconfig, context: (fake_api(pool)[1], "test-context"))
    res = run("--round", round_id, "--db", url, "--apply")
    assert res.exit_code == 0, res.output
    assert "applied 3 ResourceFlavors, 4 Cohorts, 7 ClusterQueues, 7 LocalQueues to test-context" in res.output
    dry = [r for r in pool.requests if "dryRun=All" in r["url"]]
    assert len(dry) == 21 and pool.requests[:21] == dry and len(pool.requests) == 42
    with session_factory(make_engine(url))() as session:
        entry = session.scalars(select(m.AuditEntry).where(m.AuditEntry.action == "sync.kueue")).one()
        assert entry.entity_id == str(round_id) and entry.actor.startswith("cli")
        assert entry.after["result"] == "applied" and entry.after["objects"] == 21


def test_cli_apply_refused_by_the_dry_run_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = FakePool(
        lambda method, url: (403, {"message": "clusterqueues is forbidden"}) if "clusterqueues" in url else (200, None)
    )
    monkeypatch.setattr(kueue, "custom_objects_api", lambda kubeconfig, context: (fake_api(pool)[1], "test-context"))
    res = run(META, "--apply")
    assert res.exit_code == 1
    assert "the cluster refused 7 object(s) (nothing was changed)" in res.output
    assert all("dryRun=All" in r["url"] for r in pool.requests)


def test_the_docs_example_is_what_the_command_generates(objects: list[dict[str, Any]]) -> None:
    text = (ROOT / "docs" / "enforcement.md").read_text()
    kueue_section = text.split("\n## Kueue\n", 1)[1]
    blocks = [b.split("```", 1)[0] for b in kueue_section.split("```yaml\n")[1:]]
    shown = [d for b in blocks for d in yaml.safe_load_all(b) if d and d.get("apiVersion") == kueue.API_VERSION]
    assert len(shown) >= 5
    for doc in shown:
        assert doc["metadata"]["annotations"].pop("fairshare/source") == "examples/meta-ai-2023.yaml"
        generated = copy.deepcopy(one(objects, doc["kind"], doc["metadata"]["name"]))
        generated["metadata"]["annotations"].pop("fairshare/source")
        assert doc == generated, doc["metadata"]["name"]


def test_cli_refuses_to_write_an_invalid_manifest_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    render = kueue.render

    def with_a_typo(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        objs = render(*args, **kwargs)
        one(objs, "ClusterQueue", "opt")["spec"]["cohort"] = "fair"
        return objs

    monkeypatch.setattr(kueue, "render", with_a_typo)
    res = run(META, "--out", tmp_path / "k")
    assert res.exit_code == 2
    assert "Kueue would reject the generated objects (nothing written or applied):" in res.output
    assert "ClusterQueue/opt: spec.cohort: unknown field 'cohort'; did you mean 'cohortName'?" in " ".join(
        res.output.split()
    )
    assert "[schema: unknown field]" in res.output
    assert not (tmp_path / "k").exists()


def test_sync_is_one_reusable_step_for_the_service() -> None:
    pool = FakePool()
    result = kueue.sync(small(LAB, LAB_GPUS), fake_api(pool)[1])
    assert result == {"result": "applied", "source": "test", "objects": len(pool.requests) // 2}
    assert all("dryRun=All" in r["url"] for r in pool.requests[: result["objects"]])
    assert not any("dryRun" in r["url"] for r in pool.requests[result["objects"] :])


def test_an_archived_teams_queues_are_listed_for_deletion_not_rendered() -> None:
    text = """
name: t
pools: [{name: h, gpu: H100, gpus: 8}]
org: {name: lab, children: [{name: llama}, {name: opt}]}
"""
    pub = small(text, {"lab": {"H100": 8}, "llama": {"H100": 8}})
    pub.retired = ("opt",)
    p = kueue.plan(pub)
    assert [q.node for q in p.queues] == ["llama"]
    assert p.deletions == [("LocalQueue", "opt", "opt"), ("ClusterQueue", "opt", None)]
    assert any("delete ClusterQueue opt" in n and "managed-by=fairshare" in n for n in p.notes)
    names = {o["metadata"]["name"] for o in kueue.render(p, "test")}
    assert "opt" not in names and "llama" in names


ARCHIVED_OPT = """
name: t
pools: [{name: h, gpu: H100, gpus: 8}]
org: {name: lab, children: [{name: llama}, {name: opt}]}
"""


def _retired_opt() -> kueue.Plan:
    pub = small(ARCHIVED_OPT, {"lab": {"H100": 8}, "llama": {"H100": 8}})
    pub.retired = ("opt",)
    return kueue.plan(pub)


def test_out_writes_the_deletions_beside_the_directory_for_kubectl_delete(tmp_path: Path) -> None:
    refs = kueue.deletions(_retired_opt())
    written = kueue.write_deletions(refs, tmp_path / "kueue")
    assert written == tmp_path / "kueue-delete.yaml"  # not inside kueue/: applying that directory cannot recreate them
    docs = list(yaml.safe_load_all(written.read_text()))
    assert [(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs] == [
        ("LocalQueue", "opt", "opt"),
        ("ClusterQueue", "opt", None),
    ]
    assert all(d["apiVersion"] == kueue.API_VERSION and d["metadata"]["labels"] == kueue.MANAGED_BY for d in docs)
    assert kueue.write_deletions([], tmp_path / "kueue") is None and not written.exists()  # nothing left to delete


def _cluster(objects: dict[str, dict[str, Any] | None]) -> FakePool:
    """A fake API server holding `objects` (URL path suffix -> object; None: not there)."""

    def answer(method: str, url: str) -> tuple[int, dict[str, Any] | None]:
        path = url.split("/v1beta2/")[1].split("?")[0]
        if method in ("GET", "DELETE"):
            obj = objects.get(path)
            if obj is None:
                return 404, {"kind": "Status", "message": f"{path} not found"}
            return 200, obj
        return 200, None

    return FakePool(answer)


def _live(labels: dict[str, str], uid: str) -> dict[str, Any]:
    return {"metadata": {"labels": labels, "uid": uid, "resourceVersion": "7"}}


def test_apply_deletes_only_the_archived_objects_fairshare_manages() -> None:
    pool = _cluster(
        {
            "clusterqueues/opt": _live(dict(kueue.MANAGED_BY), "uid-cq"),
            "namespaces/opt/localqueues/opt": _live({"team": "opt"}, "uid-lq"),  # someone else's: kept
        }
    )
    retired = kueue.retire(kueue.deletions(_retired_opt()), fake_api(pool)[1])
    assert (retired.deleted, retired.gone, retired.kept) == (["ClusterQueue/opt"], [], ["LocalQueue/opt/opt"])
    deletes = [r for r in pool.requests if r["method"] == "DELETE"]
    assert [("dryRun=All" in r["url"], r["url"].split("/v1beta2/")[1].split("?")[0]) for r in deletes] == [
        (True, "clusterqueues/opt"),
        (False, "clusterqueues/opt"),
    ]
    assert all(r["body"]["preconditions"] == {"uid": "uid-cq", "resourceVersion": "7"} for r in deletes)


def test_an_archived_object_already_gone_is_reported_not_an_error() -> None:
    pool = _cluster({})
    retired = kueue.retire(kueue.deletions(_retired_opt()), fake_api(pool)[1])
    assert retired.deleted == [] and retired.gone == ["LocalQueue/opt/opt", "ClusterQueue/opt"]
    assert not any(r["method"] == "DELETE" for r in pool.requests)


def test_a_refused_deletion_in_the_dry_run_deletes_nothing() -> None:
    managed = dict(kueue.MANAGED_BY)

    def answer(method: str, url: str) -> tuple[int, dict[str, Any] | None]:
        if method == "DELETE" and "localqueues" in url:
            return 403, {"kind": "Status", "message": "forbidden"}
        return 200, _live(managed, "u")

    pool = FakePool(answer)
    with pytest.raises(kueue.ApplyError) as info:
        kueue.retire(kueue.deletions(_retired_opt()), fake_api(pool)[1])
    assert info.value.dry_run and "LocalQueue/opt/opt" in str(info.value)
    assert all("dryRun=All" in r["url"] for r in pool.requests if r["method"] == "DELETE")


def test_sync_applies_then_retires_and_says_so() -> None:
    pub = small(ARCHIVED_OPT, {"lab": {"H100": 8}, "llama": {"H100": 8}})
    pub.retired = ("opt",)
    pool = _cluster({"clusterqueues/opt": _live(dict(kueue.MANAGED_BY), "u1")})
    result = kueue.sync(pub, fake_api(pool)[1])
    assert result["deleted"] == ["ClusterQueue/opt"] and result["already_gone"] == ["LocalQueue/opt/opt"]
    methods = [r["method"] for r in pool.requests]
    assert methods.index("DELETE") > max(i for i, m in enumerate(methods) if m == "PATCH")  # applied first
