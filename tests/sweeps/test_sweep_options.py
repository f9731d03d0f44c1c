"""The sweep's typed options (tune/options.py): one field per flag of the parser, whose defaults come from them."""

import dataclasses

import pytest

from tune.driver.run import build_parser, parse_options
from tune.options import SweepOptions


def test_options__one_field_per_flag_with_the_parsers_default():
    parsed = build_parser("negatives").parse_args([])
    assert [f.name for f in dataclasses.fields(SweepOptions)] == list(vars(parsed))
    assert SweepOptions.from_namespace(parsed) == SweepOptions()


def test_options__repeated_flags_are_tuples_and_the_options_frozen():
    options = parse_options("negatives", ["--set", "a=1", "--set", "b=2", "--row", "K=128", "--method", "lord"])
    assert (options.set, options.row, options.method) == (("a=1", "b=2"), ("K=128",), ("lord",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.trainer = "tune"


@pytest.mark.parametrize("address, local", [(None, True), ("", True), ("local", True), ("auto", False),
                                            ("10.0.0.1:6379", False)])
def test_options__local_ray_without_an_address(address, local):
    assert SweepOptions(address=address).local_ray is local
