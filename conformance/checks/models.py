"""Model objects as clients read them: every `/v1/models` item, and `GET /v1/models/{model}`.

SDKs parse `id`, `object`, `created` and `owned_by` of each item (`models.list()`), and clients
look one model up by id (`models.retrieve()`) to learn whether it is served; neither costs a token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from conformance.checks.base import ProbeContext, as_dict, as_list, check
from conformance.results import Observation, inconclusive, observe

#: The fields OpenAI's `Model` requires, with the JSON type each must have.
MODEL_FIELDS: dict[str, type] = {"id": str, "object": str, "created": int, "owned_by": str}


def model_problems(item: Any) -> list[str]:
    """What is missing or mistyped in one model object (bool is not an integer in JSON)."""
    if not isinstance(item, dict):
        return [f"not an object: {str(item)[:80]}"]
    problems = [f"`{name}` missing" if name not in item else f"`{name}` is {item[name]!r}"
                for name, kind in MODEL_FIELDS.items()
                if name not in item or type(item[name]) is not kind]
    if item.get("object", "model") != "model":
        problems.append(f"`object` is {item['object']!r}, not 'model'")
    return problems


@check("models-object-shape", variant="models")
def models_object_shape(ctx: ProbeContext) -> Observation:
    listing = ctx.require_success(ctx.send("models", method="GET"), "GET /models")
    items = as_list(listing.get("data"))
    if not items:
        return inconclusive("GET /models lists no models, so there is no model object to judge")
    broken = {str(as_dict(item).get("id", position)): problems for position, item in enumerate(items)
              if (problems := model_problems(item))}
    if broken:
        shown = list(broken.items())[:5]
        return observe("other", "; ".join(f"{name}: {', '.join(problems)}" for name, problems in shown),
                       broken=len(broken))
    listed = next((item for item in items if item["id"] == ctx.model), items[0])
    lookup = ctx.send(f"models/{quote(listed['id'], safe='/')}", method="GET")
    if lookup.status in (404, 405):
        return observe("unsupported", f"all {len(items)} listed models are complete, but GET /models/{listed['id']} "
                       f"answered {lookup.describe_status()}")
    retrieved = ctx.require_success(lookup, f"GET /models/{listed['id']}")
    problems = model_problems(retrieved)
    if problems or retrieved.get("id") != listed["id"]:
        return observe("other", f"GET /models/{listed['id']} answered another or a broken object: "
                       f"{', '.join(problems) or 'id ' + repr(retrieved.get('id'))}")
    return observe("openai", f"all {len(items)} listed models have id, object, created and owned_by; "
                   f"GET /models/{listed['id']} answers the same model")
