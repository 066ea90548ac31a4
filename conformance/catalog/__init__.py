"""The catalog of documented differences, loaded from `differences.toml` and linted on load.

The catalog is data so it can be reviewed without running anything (test262 frontmatter,
Kubernetes `conformance.yaml`): which behaviours an entry distinguishes, and which document
revision promises which behaviour, with a citation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from conformance._toml import toml_reader
from conformance.schemas import file_problems

SHIPPED_CATALOG = "conformance/catalog/differences.toml"

#: Words a check may report besides an entry's own behaviours.
GENERIC_BEHAVIOURS = ("other", "unsupported", "inconclusive")
#: An entry belongs to one of conformance.families.API_FAMILIES, named after its reference vendor:
#: every entry of a family names that vendor's behaviour (`openai`, `anthropic`) and cites that
#: vendor's documents, and Fireworks' (which serves both families).
#: The one reserved word a document may say: that the vendor does not offer the feature at all.
DOCUMENTED_ABSENCE = "unsupported"


class CatalogError(ValueError):
    """The catalog data is inconsistent (a dangling source, an unknown behaviour, a duplicate id)."""


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    url: str
    revision: str
    vendor: str

    def cite(self, section: str) -> str:
        return f"{self.title}, {self.revision}, {section} <{self.url}>"


@dataclass(frozen=True)
class DocumentClaim:
    """One document revision promising one behaviour of an entry."""

    source: Source
    section: str
    says: str

    @property
    def label(self) -> str:
        return f"{self.source.key} ({self.source.title}, {self.source.revision})"


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    area: str
    openai: str
    fireworks: str
    behaviours: dict[str, str]
    documents: tuple[DocumentClaim, ...]
    #: The API family (API_FAMILIES); its name is also the behaviour its reference vendor documents.
    api: str = "openai"
    #: What Anthropic documents (entries of the anthropic family).
    anthropic: str = ""

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every word a check of this entry may report."""
        return (*self.behaviours, *GENERIC_BEHAVIOURS)

    def documents_saying(self, behaviour: str) -> list[DocumentClaim]:
        """The document revisions that promise `behaviour`: what an observation matches."""
        return [claim for claim in self.documents if claim.says == behaviour]

    def vendor_behaviours(self, vendor: str) -> list[str]:
        """Behaviours some revision of `vendor`'s documents promises (several when docs drifted)."""
        seen: list[str] = []
        for claim in self.documents:
            if claim.source.vendor == vendor and claim.says not in seen:
                seen.append(claim.says)
        return seen


@dataclass(frozen=True)
class Catalog:
    sources: dict[str, Source]
    entries: dict[str, Entry]

    def __getitem__(self, entry_id: str) -> Entry:
        return self.entries[entry_id]

    def __iter__(self):
        return iter(self.entries.values())


def parse_catalog(data: dict, origin: str = SHIPPED_CATALOG) -> Catalog:
    """Build a Catalog from parsed TOML, raising CatalogError on any inconsistency: first anything
    `schemas/catalog.schema.json` does not describe (naming the key), then dangling references."""
    problems = file_problems("catalog.schema.json", data)
    if problems:
        raise CatalogError(f"catalog {origin}: {'; '.join(problems[:3])} (see schemas/catalog.schema.json)")
    sources = {
        key: Source(key, raw["title"], raw["url"], raw["revision"], raw["vendor"])
        for key, raw in data.get("sources", {}).items()
    }
    entries: dict[str, Entry] = {}
    for raw in data.get("entry", []):
        entry_id = raw["id"]
        if entry_id in entries:
            raise CatalogError(f"duplicate catalog entry id {entry_id!r}")
        behaviours = dict(raw["behaviours"])
        family = raw.get("api", "openai")
        if family not in behaviours:
            raise CatalogError(f"{entry_id}: every entry describes its family's reference behaviour `{family}`")
        clash = set(behaviours) & set(GENERIC_BEHAVIOURS)
        if clash:
            raise CatalogError(f"{entry_id}: behaviours {sorted(clash)} are reserved words")
        claims = []
        for doc in raw.get("documents", []):
            if doc["source"] not in sources:
                raise CatalogError(f"{entry_id}: unknown source {doc['source']!r}")
            if doc["says"] not in (*behaviours, DOCUMENTED_ABSENCE):
                raise CatalogError(f"{entry_id}: {doc['source']} says unknown behaviour {doc['says']!r}")
            claims.append(DocumentClaim(sources[doc["source"]], doc["section"], doc["says"]))
        vendors = {claim.source.vendor for claim in claims}
        if not {family, "fireworks"} <= vendors:
            raise CatalogError(f"{entry_id}: needs a citation from both {family}'s and Fireworks' documents")
        entries[entry_id] = Entry(
            id=entry_id,
            title=raw["title"],
            area=raw["area"],
            openai=raw["openai"],
            fireworks=raw["fireworks"],
            behaviours=behaviours,
            documents=tuple(claims),
            api=family,
            anthropic=raw.get("anthropic", ""),
        )
    return Catalog(sources, entries)


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The catalog shipped with the package."""
    text = resources.files(__package__).joinpath("differences.toml").read_text(encoding="utf-8")
    return parse_catalog(toml_reader.loads(text))
