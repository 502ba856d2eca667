"""Doctests of gpunet/ run with the test suite (``--doctest-modules``)."""

# tests/toy_layer.py registers a layer type: imported once, by the tests that use it
collect_ignore_glob = ["bench/*", "build/*", ".ci-venv/*", ".venv/*", "tests/toy_layer.py"]
