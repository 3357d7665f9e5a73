"""The chaos suite runs on the e2e fixtures (one cluster, one session operator, a namespace per test)."""

from tests.e2e.conftest import _needs_kwok, cluster, kwok_present, ns, operator  # noqa: F401
