"""The collections a partner's TAXII server offers (pure).

``all`` holds every object of every stored bulletin. One collection per category holds the
objects of that category's bulletins, shared objects included (the markings, identities and
country locations a report refers to), so each collection is whole on its own: a client that
follows only ``cyber`` still resolves every reference. Collections are fixed (every category,
even one with nothing yet), so a client configured once never sees one vanish.

Ids are UUIDv5 of the collection's name under Enlace's namespace: the same on every partner's
server and across restarts, so a client configured with an id keeps it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from schemas.vocab import Category

TAXII_NAMESPACE = uuid.UUID("0b6f1a51-7c5e-4a4f-9d7e-6a3c2f1e8b90")
ALL = "all"


@dataclass(frozen=True)
class Collection:
    name: str  # the key rows carry in the index
    title: str
    description: str

    @property
    def id(self) -> str:
        return str(uuid.uuid5(TAXII_NAMESPACE, self.name))


def category_collection(category: Category) -> str:
    return f"category-{category.value.lower().replace('_', '-')}"


def _catalog() -> tuple[Collection, ...]:
    whole = Collection(
        ALL, "Enlace feed", "Every bulletin this agency received, as STIX 2.1 objects."
    )
    per_category = tuple(
        Collection(
            category_collection(category),
            f"Enlace feed: {category.value.replace('_', ' ').lower()}",
            f"The bulletins of category {category.value} this agency received.",
        )
        for category in Category
    )
    return (whole, *per_category)


CATALOG: tuple[Collection, ...] = _catalog()
BY_ID: Mapping[str, Collection] = {c.id: c for c in CATALOG}


def collections_of(category: Category) -> tuple[str, str]:
    """The collections a bulletin of ``category`` adds its objects to."""
    return (ALL, category_collection(category))
