"""Helpers shared by the CLI subcommands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubernetes import config
from kubernetes.client.rest import ApiException

from .. import kube


def namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    try:
        _, active = config.list_kube_config_contexts()
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, FileNotFoundError):
        return "default"


def current_user() -> str:
    """Who the API server says we are (SelfSubjectReview), for the `by` and `approver` fields."""
    from kubernetes import client

    review = client.AuthenticationV1Api(kube.api_client()).create_self_subject_review(
        client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
    )
    return str(review.status.user_info.username)


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def api_error(exc: ApiException) -> int:
    import json

    try:
        body: Any = json.loads(exc.body or "{}")
        message = body.get("message") or exc.reason
    except ValueError:
        message = exc.reason
    return fail(str(message))
