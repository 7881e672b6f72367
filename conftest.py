"""Names the executed docstring examples may use without importing them."""
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import deprl_theory.graphs as graphs

    doctest_namespace["np"] = np
    for name in graphs.__all__:
        doctest_namespace[name] = getattr(graphs, name)
