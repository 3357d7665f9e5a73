"""The pydantic base of everything the operator reads from or writes to the API as a model.

It sits below both the CRD models (``models/``) and the pure planners that keep their state in
status (``rollout.state``), so neither has to import the other to share the wire convention.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class K8sModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are rejected by the API server."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
