"""The examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

# by name: nqm.risk is also the re-exported function, which shadows the module attribute
MODULES = ["nqm.risk", "nqm.steps", "nqm.tuning", "nqm.sweep", "nqm.critical", "nqm.bounds", "nqm.fit"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
