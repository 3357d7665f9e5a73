"""agentops: a Kubernetes operator that runs teams of AI agents (Agents, AgentTasks, Quotas)."""

GROUP = "agentops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
__version__ = "0.1.0"
