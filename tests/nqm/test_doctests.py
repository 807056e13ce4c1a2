"""The examples in the public docstrings run and print what they say."""

import doctest

import pytest

import nqm.bounds
import nqm.critical
import nqm.risk
import nqm.steps
import nqm.sweep
import nqm.tuning


@pytest.mark.parametrize("module", [nqm.risk, nqm.steps, nqm.tuning, nqm.sweep, nqm.critical,
                                    nqm.bounds])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
