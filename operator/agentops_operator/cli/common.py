"""Helpers shared by the CLI subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kubernetes import config
from kubernetes.client.rest import ApiException

from .. import kube


class CLIError(Exception):
    """A refusal the CLI reports as one line on stderr and exit code 1 (no traceback)."""


def namespace(args: argparse.Namespace) -> str:
    if getattr(args, "namespace", None):
        return str(args.namespace)
    try:
        _, active = config.list_kube_config_contexts()
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, FileNotFoundError):
        return "default"


def scope(args: argparse.Namespace) -> str | None:
    """The namespace to list in, or None with -A/--all-namespaces (explicit, never implied)."""
    return None if getattr(args, "all_namespaces", False) else namespace(args)


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


def api_message(exc: ApiException) -> str:
    try:
        body: Any = json.loads(exc.body or "{}")
        message = body.get("message") or exc.reason
    except (ValueError, AttributeError):
        message = exc.reason
    return str(message)


def api_error(exc: ApiException) -> int:
    return fail(api_message(exc))


def add_all_namespaces(p: argparse.ArgumentParser) -> None:
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="every namespace you may list (default: only -n / the kubeconfig's namespace)")


def add_output(p: argparse.ArgumentParser, *choices: str) -> None:
    p.add_argument("-o", "--output", choices=list(choices), default=choices[0], help="output format")
