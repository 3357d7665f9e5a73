"""Pure rollout planning for Agents: no I/O, no clock, no Kubernetes client.

Laid out the way Argo Rollouts lays out its controller:

* ``types``     enums and the strategy as the planner sees it
* ``state``     what the planner remembers between reconciles (pydantic: also the status schema)
* ``io``        observations, commands and ``PlanInputs`` in; ``Plan`` out
* ``revisions`` revision hash, ControllerRevision history, config merge
* ``replicas``  weight → replicas, queue-depth autoscaling
* ``verdicts``  analysis verdicts per metric and per run
* ``context``   the per-plan scratchpad and the steps all strategies share
* ``direct``    idle, first deploy, undo; ``canary``, ``bluegreen``, ``rolling``: one per strategy
* ``planner``   ``plan()``: the entry point
* ``loop``      ``step()``: plan → apply → measure → plan, as the handler and the simulator run it
* ``commands``  the annotation codec of promote / abort / retry / undo

The kopf handler observes the cluster, builds ``PlanInputs``, runs ``step`` and writes
``plan.state.status()``; everything that decides *what* should happen lives here.
"""

from .commands import command_annotation, encode_command, parse_command, pending_commands
from .io import (
    Command,
    ConditionSpec,
    DeploymentObservation,
    DeploymentTarget,
    EventSpec,
    Plan,
    PlanInputs,
)
from .loop import StepResult, step
from .planner import plan
from .replicas import canary_replicas, effective_weight, queue_depth_replicas, split_replicas
from .revisions import (
    REVISION_HASH_LENGTH,
    RevisionRecord,
    canonical_json,
    config_provenance,
    merge_config,
    next_revision_number,
    record_revision,
    resolve_undo_target,
    revision_hash,
    revisions_to_prune,
)
from .state import (
    MAX_MEASUREMENTS_KEPT,
    MAX_SYSTEM_COMMANDS,
    AnalysisRunState,
    CommandAck,
    Measurement,
    MetricState,
    RolloutBookkeeping,
    RolloutState,
    SystemCommand,
    evict_system_commands,
    merge_acks,
    record_measurement,
)
from .types import (
    FAILURE_REASONS,
    AnalysisPhase,
    AnalysisSpec,
    AnalysisStep,
    BlueGreenSpec,
    CanarySpec,
    MeasurementPhase,
    MetricSpec,
    PauseStep,
    Reason,
    Role,
    RollingSpec,
    RolloutPhase,
    SetWeightStep,
    Step,
    StrategySpec,
    StrategyType,
    Verb,
    describe_step,
)
from .verdicts import AnalysisVerdict, MetricVerdict, aggregate_analysis, annotated, metric_verdict

__all__ = [
    "FAILURE_REASONS", "MAX_MEASUREMENTS_KEPT", "MAX_SYSTEM_COMMANDS", "REVISION_HASH_LENGTH",
    "AnalysisPhase", "AnalysisRunState", "AnalysisSpec", "AnalysisStep", "AnalysisVerdict", "BlueGreenSpec",
    "CanarySpec", "Command", "CommandAck", "ConditionSpec", "DeploymentObservation", "DeploymentTarget",
    "EventSpec", "Measurement", "MeasurementPhase", "MetricSpec", "MetricState", "MetricVerdict", "PauseStep",
    "Plan", "PlanInputs", "Reason", "RevisionRecord", "Role", "RollingSpec", "RolloutBookkeeping",
    "RolloutPhase", "RolloutState", "SetWeightStep", "Step", "StepResult", "StrategySpec", "StrategyType",
    "SystemCommand", "Verb",
    "aggregate_analysis", "annotated", "canary_replicas", "canonical_json", "command_annotation",
    "config_provenance", "describe_step", "effective_weight", "encode_command", "evict_system_commands",
    "merge_acks", "merge_config",
    "metric_verdict", "next_revision_number", "parse_command", "pending_commands", "plan",
    "queue_depth_replicas", "record_measurement", "record_revision", "resolve_undo_target", "revision_hash",
    "revisions_to_prune", "split_replicas", "step",
]
