"""The scenario: the one typed description of an allocation problem (pools, org tree, requests,
policy) that the CLI, the service, the simulator and the connectors all share.

`model` holds the pydantic model, `files` reads and writes YAML/JSON with line numbers, `synthetic`
builds labs of any size for tests and benchmarks.
"""

from fairshare.scenario.model import (
    MAX_GPUS,
    MAX_SPREAD,
    MAX_WEIGHT,
    NAME_MAX,
    NAME_PATTERN,
    GpuCounts,
    History,
    Name,
    NodeHistory,
    Normalize,
    OrgNode,
    Policy,
    Pool,
    Priority,
    Request,
    Scenario,
    ScenarioError,
    Sharing,
    Urgency,
    history_boost,
    request_reference_errors,
    request_weight,
    urgency,
)

__all__ = [
    "MAX_GPUS",
    "MAX_SPREAD",
    "MAX_WEIGHT",
    "NAME_MAX",
    "NAME_PATTERN",
    "GpuCounts",
    "History",
    "Name",
    "NodeHistory",
    "Normalize",
    "OrgNode",
    "Policy",
    "Pool",
    "Priority",
    "Request",
    "Scenario",
    "ScenarioError",
    "Sharing",
    "Urgency",
    "history_boost",
    "request_reference_errors",
    "request_weight",
    "urgency",
]
