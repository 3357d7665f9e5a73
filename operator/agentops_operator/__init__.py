"""agentops: a Kubernetes operator that runs teams of AI agents (Agents, AgentTasks, Quotas)."""

GROUP = "agentops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


def _version() -> str:
    """The version lives in pyproject.toml only: installed metadata, else the source tree's file."""
    from importlib import metadata

    try:
        return metadata.version("agentops-operator")
    except metadata.PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        with pyproject.open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])


__version__ = _version()
