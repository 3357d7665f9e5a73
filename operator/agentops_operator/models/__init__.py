"""Pydantic models of the three custom resources; crdgen renders them into crds/."""

from . import agent, quota, task
from .base import CRDInfo

ALL_CRDS: tuple[CRDInfo, ...] = (agent.CRD, task.CRD, quota.CRD)
