"""Property-based fuzzing of spec files (hypothesis): whatever a user writes, loading it gives a
valid spec or one SpecError paragraph naming what is wrong; never another exception."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import TINY_SPEC
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reliability import record_cases

from raysweep.spec import SpecError
from raysweep.spec_loader import load_spec

pytestmark = pytest.mark.fault
OUTCOMES = {"valid": 0, "clear errors": 0}


@pytest.fixture(scope="module", autouse=True)
def record_outcomes():
    yield
    record_cases("malformed spec files (hypothesis)", OUTCOMES)


# Values of every shape a YAML file can hold.
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: (st.lists(inner, max_size=3)
                   | st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def paths(value, prefix=()):
    """Every (nested) key path of a spec dict, list items included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, prefix + (index,))


ALL_PATHS = [p for p in paths(TINY_SPEC) if p]


@st.composite
def mutated_specs(draw):
    spec = copy.deepcopy(TINY_SPEC)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = spec
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(yaml_values)
            elif action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, dict):
                key = draw(st.sampled_from(["preset", "extends", "checkpoints", "tokens"])
                           | st.text(min_size=1, max_size=8) | st.integers(-3, 3))
                parent[key] = draw(yaml_values)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path's parent
    return spec


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_specs())
def test_any_mutation_of_a_spec_loads_or_gives_one_clear_error(data, tmp_path):
    path = tmp_path / "fuzzed.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        load_spec(path)
        event("valid")
        OUTCOMES["valid"] += 1
    except SpecError as err:
        event("SpecError")
        OUTCOMES["clear errors"] += 1
        message = str(err)
        assert message.startswith(str(path)) and "\n" not in message.strip(), message
        assert "Traceback" not in message


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_any_file_content_loads_or_gives_one_clear_error(text, tmp_path):
    path = tmp_path / "garbage.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
        OUTCOMES["valid"] += 1
    except SpecError as err:
        OUTCOMES["clear errors"] += 1
        assert str(err).startswith(str(path))
