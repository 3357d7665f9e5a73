"""Pure token accounting: OpenTelemetry GenAI usage data points -> idempotent Quota charges. No I/O.

Agents report LLM usage with the GenAI semantic conventions: the histogram `gen_ai.client.token.usage`
(unit `{token}`) with the attributes `gen_ai.token.type` (input/output), `gen_ai.request.model` and
`gen_ai.provider.name`. One *series* is one attribute set (type, model, provider). The exporter in
`tokenexport` feeds the data points of each collection here and charges what `due()` returns, one
charge at a time, through `quota_client.charge_for` (reserve on every matching Quota, then commit).

Idempotency. A charge's holder names exactly what it charges, so a retry of the same charge (an
export retried, a call whose outcome was lost) is the same holder and the Quota ledger charges it once:

- cumulative temporality (the default we ask the SDK for): a point carries the series' running sum
  since `start_time_unix_nano`. The charge moves the series' charged level from `a` to `b`:
  holder `Tokens/<agent>/<instance>/<type>/<model>/<start>/c<a>-<b>`. A re-export of the same or an
  older collection has `sum <= charged` and charges nothing; an export that failed is healed by the
  next one (its sum includes what the failed one carried), so no usage is lost on a transient error.
- delta temporality: a point carries the sum of one interval [start, end): holder
  `.../d<start>-<end>`; intervals at or before the last charged end are re-exports and are skipped.

A charge whose outcome is unknown (the API call failed) stays *pending* and is retried with the same
holder before anything newer of its series, so a lost response never charges twice. A refused charge
(a Hard quota) is written off: never charged (never over the limit), counted in `refused`, and the
series moves on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from .quotaledger import RESOURCE_PATTERN

METRIC = "gen_ai.client.token.usage"
ATTR_TYPE = "gen_ai.token.type"
ATTR_MODEL = "gen_ai.request.model"
ATTR_RESPONSE_MODEL = "gen_ai.response.model"
ATTR_PROVIDER = "gen_ai.provider.name"
ATTR_PROVIDER_OLD = "gen_ai.system"  # the attribute's name before semantic conventions 1.37
RESOURCE = "tokens"
HOLDER_PREFIX = "Tokens/"  # the admission policy binds `Tokens/<agent>/` to the ServiceAccount agent-<agent>
TOKEN_TYPES = ("input", "output")
MAX_HOLDER = 512  # QuotaReservation.holder's max_length
MAX_MODEL_IN_HOLDER = 160
_RESOURCE_RE = re.compile(RESOURCE_PATTERN)
_SEGMENT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Point:
    """One histogram data point of `gen_ai.client.token.usage`, reduced to what charging needs."""

    attributes: Mapping[str, object]
    start_ns: int
    time_ns: int
    total: float  # the histogram's sum: tokens
    cumulative: bool


@dataclass(frozen=True, order=True)
class SeriesKey:
    token_type: str
    model: str
    provider: str
    start_ns: int  # cumulative: the series' start (a new process is a new series); delta: 0


@dataclass(frozen=True)
class Charge:
    holder: str
    amount: int
    resources: tuple[str, ...]
    series: SeriesKey
    to: int  # cumulative: the level reached; delta: the interval's end


def token_type(attrs: Mapping[str, object]) -> str:
    """input, output, or `other` for anything else (bounded label values)."""
    t = str(attrs.get(ATTR_TYPE) or "")
    return t if t in TOKEN_TYPES else "other"


def model_of(attrs: Mapping[str, object]) -> str:
    return str(attrs.get(ATTR_MODEL) or attrs.get(ATTR_RESPONSE_MODEL) or "")


def resources_for(model: str) -> tuple[str, ...]:
    """`tokens`, and `tokens/<model>` when the model name can be a Quota resource."""
    scoped = f"{RESOURCE}/{model}"
    return (RESOURCE, scoped) if model and _RESOURCE_RE.match(scoped) else (RESOURCE,)


def valid_resource(resource: str) -> bool:
    return bool(_RESOURCE_RE.match(resource))


def _model_segment(model: str) -> str:
    q = quote(model, safe="")
    if len(q) <= MAX_MODEL_IN_HOLDER:
        return q
    return "~" + hashlib.sha256(model.encode()).hexdigest()[:32]  # too long to name: a stable digest


def holder(agent: str, instance: str, key: SeriesKey, mark: str) -> str:
    h = f"{HOLDER_PREFIX}{agent}/{instance}/{key.token_type}/{_model_segment(key.model) or '-'}/{key.start_ns}/{mark}"
    if len(h) > MAX_HOLDER:
        raise ValueError(f"holder too long ({len(h)} > {MAX_HOLDER}): agent {agent!r}, instance {instance!r}")
    return h


@dataclass(frozen=True)
class HolderInfo:
    agent: str
    token_type: str
    model: str  # "" when none was reported; a `~digest` for names too long to carry


def parse_holder(h: str) -> HolderInfo | None:
    """What a token charge's holder says (agent, type, model); None for any other holder."""
    if not h.startswith(HOLDER_PREFIX):
        return None
    parts = h[len(HOLDER_PREFIX):].split("/")
    if len(parts) != 6 or not _SEGMENT_RE.match(parts[0]):
        return None
    model = "" if parts[3] == "-" else parts[3] if parts[3].startswith("~") else unquote(parts[3])
    return HolderInfo(parts[0], parts[2] if parts[2] in TOKEN_TYPES else "other", model)


@dataclass
class Meter:
    """What one agent process has charged, per series; decides the next charges. Not thread-safe: the
    exporter calls it under its lock."""

    agent: str
    instance: str  # distinguishes this process's holders from another process of the same agent
    charged: dict[SeriesKey, int] = field(default_factory=dict)  # cumulative level, or last delta end
    latest: dict[SeriesKey, int] = field(default_factory=dict)  # cumulative: the newest level seen
    queued: dict[SeriesKey, list[tuple[int, int, int]]] = field(default_factory=dict)  # delta: (start, end, n)
    pending: dict[SeriesKey, Charge] = field(default_factory=dict)  # outcome unknown: retry as is
    charged_tokens: int = 0
    refused_tokens: int = 0

    def __post_init__(self) -> None:
        if not _SEGMENT_RE.match(self.agent) or len(self.agent) > 63:
            raise ValueError(f"agent {self.agent!r}: expected an Agent name (lowercase DNS label)")
        if not re.match(r"^[a-z0-9]{1,32}$", self.instance):
            raise ValueError(f"instance {self.instance!r}: expected 1-32 lowercase letters or digits")

    def observe(self, points: Iterable[Point]) -> None:
        for p in points:
            n = round(p.total)
            if n < 0 or p.time_ns < p.start_ns:
                continue  # a histogram's sum of token counts is never negative: ignore garbage
            attrs = p.attributes
            provider = str(attrs.get(ATTR_PROVIDER) or attrs.get(ATTR_PROVIDER_OLD) or "")
            if p.cumulative:
                key = SeriesKey(token_type(attrs), model_of(attrs), provider, p.start_ns)
                self.latest[key] = max(self.latest.get(key, 0), n)
                continue
            key = SeriesKey(token_type(attrs), model_of(attrs), provider, 0)
            q = self.queued.setdefault(key, [])
            done = self.charged.get(key, 0)
            waiting = self.pending.get(key)
            if n == 0 or p.time_ns <= done or (waiting and p.time_ns <= waiting.to) or \
                    any(end >= p.time_ns for _, end, _ in q):
                continue  # empty, or an interval already charged or queued: a re-export
            q.append((p.start_ns, p.time_ns, n))

    def due(self) -> list[Charge]:
        """The next charge of every series that has one: its pending charge first, else its next usage."""
        out = []
        for key in sorted({*self.latest, *self.queued, *self.pending}):
            if key in self.pending:
                out.append(self.pending[key])
                continue
            if key in self.latest:
                a, b = self.charged.get(key, 0), self.latest[key]
                if b > a:
                    out.append(self._charge(key, b - a, f"c{a}-{b}", b))
            elif self.queued.get(key):
                start, end, n = self.queued[key][0]
                out.append(self._charge(key, n, f"d{start}-{end}", end))
        for c in out:
            self.pending[c.series] = c  # until settled: a failure leaves it to be retried as is
        return out

    def _charge(self, key: SeriesKey, amount: int, mark: str, to: int) -> Charge:
        return Charge(holder(self.agent, self.instance, key, mark), amount, resources_for(key.model), key, to)

    def settle(self, charge: Charge, granted: bool) -> None:
        """The charge's outcome is known: charged (granted) or refused (written off)."""
        key = charge.series
        if self.pending.get(key) == charge:
            del self.pending[key]
        if self.charged.get(key, 0) >= charge.to:
            return  # settled before
        self.charged[key] = charge.to
        q = self.queued.get(key)
        if q:
            self.queued[key] = [x for x in q if x[1] > charge.to]
        if granted:
            self.charged_tokens += charge.amount
        else:
            self.refused_tokens += charge.amount

    def outstanding(self) -> int:
        """Tokens observed and not yet charged or refused (pending included)."""
        cum = sum(max(0, b - self.charged.get(k, 0)) for k, b in self.latest.items())
        return cum + sum(n for q in self.queued.values() for _, _, n in q)
