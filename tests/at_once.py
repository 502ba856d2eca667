"""Jobs run from threads at once, for the tests that compare them with lone calls."""

from __future__ import annotations

import threading
from typing import Any


def run_threads(jobs: list[tuple[Any, tuple[Any, ...]]], timeout: float = 120) -> list[Any]:
    """``fn(*args)`` of each ``(fn, args)`` job, each on its own thread, started together;
    their results in order. A thread's exception is raised here, in the caller; a thread
    still running after ``timeout`` seconds fails (a deadlock must not hang CI)."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, fn: Any, args: tuple[Any, ...]) -> None:
        try:
            results[i] = fn(*args)
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(i, fn, args), daemon=True)
        for i, (fn, args) in enumerate(jobs)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung (deadlock?)"
    if errors:
        raise errors[0]
    return results
