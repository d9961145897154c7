"""The library's docstring examples run and hold (they are documentation: a stale one misleads).

The napari widgets are left out (their examples need a viewer); the GUI tests drive them.
"""

import doctest
import importlib
import pkgutil

import pytest

import napari_tubediff

SKIP = ("napari_tubediff.widgets", "napari_tubediff.io_hooks", "napari_tubediff.sample_data")
MODULES = sorted(m.name for m in pkgutil.walk_packages(napari_tubediff.__path__, "napari_tubediff.")
                 if not m.name.startswith(SKIP))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (see pytest --doctest-modules)"
