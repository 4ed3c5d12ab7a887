"""Read a plain InferenceService dict into the kserve SDK's typed model, and back.

kserve's own ApiClient cannot deserialize the Kubernetes types its models embed (it looks
V1ObjectMeta, V1Container... up in kserve.models only), so this resolves each OpenAPI type name in
kserve.models, then kubernetes.client.models. A field the models do not know is dropped on the way
in, so comparing the round trip with the input finds every unknown or misspelt field.
"""

from __future__ import annotations

import re
from typing import Any

import kserve
import kubernetes.client

_LIST = re.compile(r"list\[(.+)\]")
_DICT = re.compile(r"dict\((.+?), (.+)\)")
_PRIMITIVES = {"str", "int", "float", "bool", "object", "date", "datetime"}


def _model_class(name: str) -> type:
    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"no kserve or kubernetes model named {name}")


def from_dict(data: Any, type_name: str) -> Any:
    if data is None:
        return None
    if m := _LIST.fullmatch(type_name):
        return [from_dict(v, m.group(1)) for v in data]
    if m := _DICT.fullmatch(type_name):
        return {k: from_dict(v, m.group(2)) for k, v in data.items()}
    if type_name in _PRIMITIVES:
        return data
    cls = _model_class(type_name)
    kwargs = {
        attr: from_dict(data[json_key], cls.openapi_types[attr])
        for attr, json_key in cls.attribute_map.items()
        if json_key in data
    }
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    return kserve.ApiClient().sanitize_for_serialization(obj)


def round_trip_inference_service(body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    model = from_dict(body, "V1beta1InferenceService")
    return model, to_dict(model)
