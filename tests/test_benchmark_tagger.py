"""The tagger benchmark's ``--arm NAME=JSON`` parsing (the benchmark itself is timed, so it
lives in benchmarks/, not here)."""

from __future__ import annotations

import pytest
from benchmarks.tagger import parse_arms


def test_without_arms_one_unnamed_arm_of_the_set_options() -> None:
    assert parse_arms([], {"crf": True}) == {"": {"crf": True}}


def test_arms_merge_over_the_set_options_in_order() -> None:
    arms = parse_arms(['plain={}', 'lm={"char_lm": "builtin:english", "crf": false}'],
                      {"crf": True, "hidden": 64})
    assert list(arms) == ["plain", "lm"]
    assert arms["plain"] == {"crf": True, "hidden": 64}
    assert arms["lm"] == {"crf": False, "hidden": 64, "char_lm": "builtin:english"}


@pytest.mark.parametrize("spec", ["plain", "=1", "a/b={}", "x=[1]", "x={bad"])
def test_bad_arms_are_one_line_errors(spec: str) -> None:
    with pytest.raises(SystemExit):
        parse_arms([spec], {})


def test_an_arm_named_twice_is_refused() -> None:
    with pytest.raises(SystemExit, match="twice"):
        parse_arms(["a={}", "a={}"], {})
