"""A total deadline on one network exchange, which requests cannot give by itself.

requests' timeouts bound the connect and each read, not the whole exchange: a server that
sends one byte every few seconds never times out, and a step waiting on it hangs forever.
:func:`within` runs the exchange in a helper thread and waits for it at most so long; the
CA's transport (:mod:`common.transport`) and the cloud APIs (:mod:`common.alibaba_api`) both
go through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ExpiredError(Exception):
    """The exchange had no complete answer when its time was up."""


def within(seconds: float, exchange: Callable[[], T], name: str = "exchange") -> T:
    """``exchange()``'s result, or its exception, if it ends within ``seconds``; else :class:`ExpiredError`.

    A late exchange is left to finish in its (daemon) thread: its result is dropped, and it
    cannot keep the process from exiting.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["done"] = exchange()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(max(seconds, 0.0))
    if worker.is_alive():
        raise ExpiredError(f"no complete answer within {seconds:.0f} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["done"]  # type: ignore[return-value]
