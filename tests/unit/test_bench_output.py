"""The benchmark modules' shared command-line pieces (bench.output)."""
import argparse

import pytest

from bench.output import int_list


def test_integer_lists_parse_and_a_bad_one_is_refused_with_an_example():
    assert int_list("1000,10000") == [1000, 10000] and int_list("3") == [3]
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated integers, e.g. 1000,10000"):
        int_list("1,a")
