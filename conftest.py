"""Doctests of gpunet/ run with the test suite (``--doctest-modules``)."""

collect_ignore_glob = ["bench/*", "build/*", ".ci-venv/*", ".venv/*"]
