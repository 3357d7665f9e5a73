"""`kubectl agentops task ...`."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    sub.add_parser("task", help="move, approve and inspect AgentTasks")
