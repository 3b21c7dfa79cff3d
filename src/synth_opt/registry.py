"""A registry of named strategies (parent selectors, acceptance and stopping rules, proposer backends): a dict from
name to strategy that refuses to give a taken name to another strategy and names the registered ones when asked for
an unknown one."""

from __future__ import annotations

from typing import Protocol, TypeVar

__all__ = ["Named", "Registry"]


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(dict[str, T]):
    """``kind`` names what it holds in messages (``"candidate_selector"``, ``"acceptance rule"``)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, item: T) -> T:
        """Register ``item`` under its name; a name already taken by another item is a ``ValueError``."""
        known = self.get(item.name)
        if known is not None and known != item:
            raise ValueError(f"a {self.kind} named {item.name!r} is already registered")
        self[item.name] = item
        return item

    def named(self, name: str) -> T:
        """The item registered as ``name``; an unknown name is a ``ValueError`` listing the known ones."""
        item = self.get(name)
        if item is None:
            raise ValueError(f"unknown {self.kind} {name!r}; use one of {', '.join(self)}")
        return item

    def known_name(self, name: str) -> str:
        """``name`` when it is registered (a config validator), else the ``ValueError`` of :meth:`named`."""
        self.named(name)
        return name
