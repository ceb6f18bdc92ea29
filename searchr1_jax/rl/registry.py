"""A tiny name -> function registry for the variants of one piece of RL maths.

Like tunix ``rl/algo_core.py``: advantage estimators, KL estimators and loss aggregations are
looked up by the name a config gives (``rl.kl_kind``, ``rl.loss_agg``, ``rl.algo``), and an
unknown name fails with the list of known ones.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Maps names to functions of one kind (``kind`` names the family in error messages)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._fns: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def add(fn: F) -> F:
            if name in self._fns:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._fns[name] = fn
            return fn
        return add

    def get(self, name: str) -> F:
        if name not in self._fns:
            raise ValueError(f"unknown {self.kind} {name!r}: must be one of {self.names()}")
        return self._fns[name]

    def names(self) -> list[str]:
        return sorted(self._fns)

    def __contains__(self, name: str) -> bool:
        return name in self._fns
