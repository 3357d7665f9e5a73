"""Window maths and grant decisions of quotawindow: examples at DST edges plus hypothesis properties."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentops_operator.quotawindow import (
    WINDOW_PATTERN,
    Window,
    decide,
    iter_windows,
    next_reset,
    parse_window,
    usage_state,
    window_at,
    windows_elapsed,
)

ZONES = [
    "UTC",
    "Europe/London",
    "America/New_York",
    "America/Santiago",
    "America/Havana",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",  # +12:45/+13:45: the 03:00 label falls inside the 02:45->03:45 gap
]
PERIODS = ["hourly", "daily", "weekly", "monthly"]
ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
H = timedelta(hours=1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def local(text: str, tz: str, fold: int = 0) -> datetime:
    """Aware UTC instant of a wall-clock time (which must exist) in tz."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


def wall(instant: datetime, tz: str) -> datetime:
    return instant.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def win(period: str, tz: str, now: datetime) -> Window:
    return window_at(parse_window(period), tz, now, ANCHOR)


def _transitions(tz: str, years: range) -> list[datetime]:
    """UTC instants where tz's offset changes (scan, then bisect to the second)."""
    zone = ZoneInfo(tz)
    step = timedelta(hours=6)
    out: list[datetime] = []
    t = datetime(years.start, 1, 1, tzinfo=UTC)
    end = datetime(years.stop, 1, 1, tzinfo=UTC)
    while t < end:
        if t.astimezone(zone).utcoffset() != (t + step).astimezone(zone).utcoffset():
            lo, hi = t, t + step
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                    lo = mid
                else:
                    hi = mid
            out.append(hi.replace(microsecond=0))
        t += step
    return out


TRANSITIONS = [(tz, t) for tz in ZONES for t in _transitions(tz, range(2023, 2031))]

instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC))


@st.composite
def near_transition(draw: st.DrawFn) -> tuple[str, datetime]:
    tz, t = draw(st.sampled_from(TRANSITIONS))
    offset = draw(st.integers(min_value=-40 * 3600 * 10**6, max_value=40 * 3600 * 10**6))
    return tz, t + timedelta(microseconds=offset)


zone_and_instant = st.one_of(near_transition(), st.tuples(st.sampled_from(ZONES), instants))


# --- parse_window -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("366d", timedelta(days=366)),
    ],
)
def test_parse_rolling(text: str, duration: timedelta) -> None:
    spec = parse_window(text)
    assert spec.duration == duration
    assert spec.period is None
    assert not spec.is_calendar


@pytest.mark.parametrize("text", PERIODS)
def test_parse_calendar(text: str) -> None:
    spec = parse_window(text)
    assert spec.period == text
    assert spec.duration is None
    assert spec.is_calendar


@pytest.mark.parametrize(
    "text", ["", "0s", "0h0m", "1h1d", "30m1h", "1w", "1H", " 1h", "1h ", "yearly", "Daily", "-1h", "1.5h", "367d"]
)
def test_parse_rejects_with_a_message_naming_value_and_forms(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_window(text)
    message = str(info.value)
    assert repr(text) in message
    assert "hourly, daily, weekly, monthly" in message
    assert "1h30m" in message


@given(
    d=st.integers(0, 366),
    h=st.integers(0, 999),
    m=st.integers(0, 999),
    s=st.integers(0, 999),
    parts=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_parse_roundtrip_and_crd_pattern_agree(d: int, h: int, m: int, s: int, parts: list[bool]) -> None:
    values = [v if keep else 0 for v, keep in zip((d, h, m, s), parts, strict=True)]
    text = "".join(f"{v}{u}" for v, u, keep in zip(values, "dhms", parts, strict=True) if keep)
    expected = timedelta(days=values[0], hours=values[1], minutes=values[2], seconds=values[3])
    # Everything parse_window accepts, the CRD pattern accepts; the rest is range checking.
    if text:
        assert re.fullmatch(WINDOW_PATTERN, text)
    if not text or expected <= timedelta(0) or expected > timedelta(days=366):
        with pytest.raises(ValueError):
            parse_window(text)
    else:
        assert parse_window(text).duration == expected


@given(st.text(max_size=12))
def test_parse_never_accepts_what_the_crd_pattern_refuses(text: str) -> None:
    if re.fullmatch(WINDOW_PATTERN, text) is None or text == "":
        with pytest.raises(ValueError):
            parse_window(text)


def test_naive_and_unknown_zone_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        win("daily", "UTC", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="Mars/Olympus"):
        win("daily", "Mars/Olympus", ANCHOR)


# --- calendar examples at DST edges ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "period", "now", "start", "end"),
    [
        # Europe/London: 23 h spring day, 25 h autumn day, hourly around both changes.
        ("Europe/London", "daily", "2024-03-31T12:00Z", "2024-03-31T00:00Z", "2024-03-31T23:00Z"),
        ("Europe/London", "daily", "2024-10-27T12:00Z", "2024-10-26T23:00Z", "2024-10-28T00:00Z"),
        ("Europe/London", "hourly", "2024-03-31T00:30Z", "2024-03-31T00:00Z", "2024-03-31T01:00Z"),
        ("Europe/London", "hourly", "2024-03-31T01:30Z", "2024-03-31T01:00Z", "2024-03-31T02:00Z"),
        # 01:00 repeats on 2024-10-27: both occurrences start an hourly window.
        ("Europe/London", "hourly", "2024-10-27T00:30Z", "2024-10-27T00:00Z", "2024-10-27T01:00Z"),
        ("Europe/London", "hourly", "2024-10-27T01:30Z", "2024-10-27T01:00Z", "2024-10-27T02:00Z"),
        # America/New_York: 02:00 does not exist on 2024-03-10, 01:00 repeats on 2024-11-03.
        ("America/New_York", "daily", "2024-03-10T12:00Z", "2024-03-10T05:00Z", "2024-03-11T04:00Z"),
        ("America/New_York", "daily", "2024-11-03T12:00Z", "2024-11-03T04:00Z", "2024-11-04T05:00Z"),
        ("America/New_York", "hourly", "2024-03-10T06:59Z", "2024-03-10T06:00Z", "2024-03-10T07:00Z"),
        ("America/New_York", "hourly", "2024-03-10T07:00Z", "2024-03-10T07:00Z", "2024-03-10T08:00Z"),
        ("America/New_York", "hourly", "2024-11-03T05:30Z", "2024-11-03T05:00Z", "2024-11-03T06:00Z"),
        ("America/New_York", "hourly", "2024-11-03T06:30Z", "2024-11-03T06:00Z", "2024-11-03T07:00Z"),
        # America/Santiago: midnight 2024-09-08 does not exist, the day starts at 01:00 -03.
        ("America/Santiago", "daily", "2024-09-08T12:00Z", "2024-09-08T04:00Z", "2024-09-09T03:00Z"),
        ("America/Santiago", "daily", "2024-09-08T03:59:59Z", "2024-09-07T04:00Z", "2024-09-08T04:00Z"),
        # ... and 23:00 repeats on 2024-04-06, a 25 h day ending at the single midnight.
        ("America/Santiago", "daily", "2024-04-06T12:00Z", "2024-04-06T03:00Z", "2024-04-07T04:00Z"),
        ("America/Santiago", "daily", "2024-04-07T03:30Z", "2024-04-06T03:00Z", "2024-04-07T04:00Z"),
        # Santiago weekly: Monday 2024-09-02 is an ordinary midnight; the Sunday gap doesn't matter.
        ("America/Santiago", "weekly", "2024-09-08T12:00Z", "2024-09-02T04:00Z", "2024-09-09T03:00Z"),
        # America/Havana: spring-forward at midnight, and midnight itself repeats in autumn.
        ("America/Havana", "daily", "2024-03-10T12:00Z", "2024-03-10T05:00Z", "2024-03-11T04:00Z"),
        ("America/Havana", "daily", "2024-11-03T04:30Z", "2024-11-03T04:00Z", "2024-11-04T05:00Z"),
        ("America/Havana", "daily", "2024-11-03T05:30Z", "2024-11-03T04:00Z", "2024-11-04T05:00Z"),
        ("America/Havana", "monthly", "2024-11-15T00:00Z", "2024-11-01T04:00Z", "2024-12-01T05:00Z"),
        # Australia/Lord_Howe: 30-minute shift, 02:00->02:30 in October and 02:00->01:30 in April.
        ("Australia/Lord_Howe", "daily", "2024-10-06T06:00Z", "2024-10-05T13:30Z", "2024-10-06T13:00Z"),
        ("Australia/Lord_Howe", "daily", "2024-04-07T06:00Z", "2024-04-06T13:00Z", "2024-04-07T13:30Z"),
        ("Australia/Lord_Howe", "hourly", "2024-10-05T15:10Z", "2024-10-05T14:30Z", "2024-10-05T15:30Z"),
        ("Australia/Lord_Howe", "hourly", "2024-10-05T15:40Z", "2024-10-05T15:30Z", "2024-10-05T16:00Z"),
        ("Australia/Lord_Howe", "hourly", "2024-04-06T15:10Z", "2024-04-06T14:00Z", "2024-04-06T15:30Z"),
        # Asia/Kolkata: +05:30 all year, hours start at :30 UTC, days at 18:30 UTC.
        ("Asia/Kolkata", "hourly", "2024-06-01T12:29Z", "2024-06-01T11:30Z", "2024-06-01T12:30Z"),
        ("Asia/Kolkata", "daily", "2024-06-01T18:29Z", "2024-05-31T18:30Z", "2024-06-01T18:30Z"),
        ("Asia/Kolkata", "daily", "2024-06-01T18:30Z", "2024-06-01T18:30Z", "2024-06-02T18:30Z"),
        # Pacific/Chatham: hour 03 begins at 03:45 on 2024-09-29, hour 02 lasts 45 minutes.
        ("Pacific/Chatham", "hourly", "2024-09-28T13:59Z", "2024-09-28T13:15Z", "2024-09-28T14:00Z"),
        ("Pacific/Chatham", "hourly", "2024-09-28T14:05Z", "2024-09-28T14:00Z", "2024-09-28T14:15Z"),
        ("Pacific/Chatham", "hourly", "2024-09-28T14:15Z", "2024-09-28T14:15Z", "2024-09-28T15:15Z"),
        # Month ends and the leap day 2028-02-29 (a Tuesday).
        ("UTC", "monthly", "2028-02-29T23:59:59Z", "2028-02-01T00:00Z", "2028-03-01T00:00Z"),
        ("UTC", "monthly", "2027-02-28T23:59:59Z", "2027-02-01T00:00Z", "2027-03-01T00:00Z"),
        ("UTC", "monthly", "2024-12-31T23:59:59.999999Z", "2024-12-01T00:00Z", "2025-01-01T00:00Z"),
        ("UTC", "monthly", "2025-01-01T00:00Z", "2025-01-01T00:00Z", "2025-02-01T00:00Z"),
        ("UTC", "daily", "2028-02-29T12:00Z", "2028-02-29T00:00Z", "2028-03-01T00:00Z"),
        ("UTC", "weekly", "2028-02-29T12:00Z", "2028-02-28T00:00Z", "2028-03-06T00:00Z"),
        ("Europe/London", "monthly", "2024-03-15T00:00Z", "2024-03-01T00:00Z", "2024-03-31T23:00Z"),
        ("Asia/Kolkata", "monthly", "2028-02-29T18:29Z", "2028-01-31T18:30Z", "2028-02-29T18:30Z"),
        # Weekly from Monday: Sunday 23:59 local is the old week, Monday 00:00 the new one.
        ("Europe/London", "weekly", "2024-06-09T22:59Z", "2024-06-02T23:00Z", "2024-06-09T23:00Z"),
        ("Europe/London", "weekly", "2024-06-09T23:00Z", "2024-06-09T23:00Z", "2024-06-16T23:00Z"),
        ("Europe/London", "weekly", "2024-10-26T12:00Z", "2024-10-20T23:00Z", "2024-10-28T00:00Z"),  # 7d 1h
    ],
)
def test_calendar_examples(tz: str, period: str, now: str, start: str, end: str) -> None:
    assert win(period, tz, utc(now)) == Window(utc(start), utc(end))


def test_santiago_missing_midnight_resolves_to_first_instant_of_the_date() -> None:
    w = win("daily", "America/Santiago", utc("2024-09-08T12:00Z"))
    assert w.start.astimezone(ZoneInfo("America/Santiago")).isoformat() == "2024-09-08T01:00:00-03:00"
    assert w.end - w.start == timedelta(hours=23)


def test_ambiguous_hour_uses_fold() -> None:
    first = local("2024-11-03T01:00", "America/New_York", fold=0)
    second = local("2024-11-03T01:00", "America/New_York", fold=1)
    assert second - first == H
    assert win("hourly", "America/New_York", first + 30 * timedelta(minutes=1)) == Window(first, second)
    assert win("hourly", "America/New_York", second) == Window(second, second + H)
    # Daily windows only start at the first occurrence of a repeated midnight (Havana).
    midnight = local("2024-11-03T00:00", "America/Havana", fold=0)
    assert win("daily", "America/Havana", local("2024-11-03T00:30", "America/Havana", fold=1)).start == midnight


def test_results_are_utc() -> None:
    now = datetime(2024, 6, 1, 12, tzinfo=ZoneInfo("Asia/Kolkata"))
    for period in [*PERIODS, "1h"]:
        w = win(period, "Asia/Kolkata", now)
        assert w.start.tzinfo is UTC and w.end.tzinfo is UTC
        assert w.start <= now < w.end


# --- calendar properties --------------------------------------------------------------------------


def _dst_shift(tz: str) -> timedelta:
    return timedelta(minutes=30) if tz == "Australia/Lord_Howe" else H


def _nominal(period: str, start_wall: datetime) -> timedelta:
    if period == "hourly":
        return H
    if period == "daily":
        return timedelta(days=1)
    if period == "weekly":
        return timedelta(days=7)
    nxt = date(start_wall.year + start_wall.month // 12, start_wall.month % 12 + 1, 1)
    return timedelta(days=(nxt - start_wall.date().replace(day=1)).days)


@settings(deadline=None, max_examples=300)
@given(zone_and_instant, st.sampled_from(PERIODS))
def test_calendar_window_contains_now_and_is_contiguous(zi: tuple[str, datetime], period: str) -> None:
    tz, now = zi
    w = win(period, tz, now)
    assert w.start <= now < w.end
    assert w.start.tzinfo is UTC and w.end.tzinfo is UTC
    # The same window from any of its instants; neighbours share its edges.
    assert win(period, tz, w.start) == w
    assert win(period, tz, w.end - US) == w
    assert win(period, tz, w.end).start == w.end
    assert win(period, tz, w.start - US).end == w.start
    assert next_reset(parse_window(period), tz, now, ANCHOR) == w.end


@settings(deadline=None, max_examples=300)
@given(zone_and_instant, st.sampled_from(PERIODS))
def test_calendar_window_starts_at_a_local_boundary(zi: tuple[str, datetime], period: str) -> None:
    tz, now = zi
    w = win(period, tz, now)
    start = wall(w.start, tz)
    before = wall(w.start - US, tz)
    if period == "hourly":
        # An hour start on the wall clock, or the end of a gap that swallowed one.
        on_the_hour = start == start.replace(minute=0, second=0, microsecond=0)
        assert on_the_hour or start.replace(minute=0, second=0, microsecond=0) > before
    else:
        # The first instant of a local date: the date changes here, and stays the same inside.
        assert start.date() > before.date()
        assert start.time() == datetime.min.time() or start - before > timedelta(seconds=1)
        assert wall(w.end - US, tz).date() >= start.date()
        if period == "weekly":
            assert start.weekday() == 0
        if period == "monthly":
            assert start.day == 1
    # Length is nominal, give or take one daylight-saving shift.
    length = w.end - w.start
    nominal = _nominal(period, start)
    shift = _dst_shift(tz) if tz not in ("UTC", "Asia/Kolkata") else timedelta(0)
    if period == "hourly" and tz not in ("Australia/Lord_Howe", "Pacific/Chatham"):
        assert length == H
    else:
        assert nominal - shift <= length <= nominal + shift


@settings(deadline=None)
@given(zone_and_instant, st.sampled_from(["daily", "weekly", "monthly"]), st.floats(0, 1))
def test_local_date_is_constant_inside_a_daily_window(zi: tuple[str, datetime], period: str, f: float) -> None:
    tz, now = zi
    w = win(period, tz, now)
    inside = w.start + (w.end - w.start - US) * f
    assert w.start <= inside < w.end
    assert win(period, tz, inside) == w
    first, here = wall(w.start, tz).date(), wall(inside, tz).date()
    assert first <= here < wall(w.end, tz).date()
    if period == "daily":
        assert here == first


@pytest.mark.parametrize("tz", ZONES)
def test_a_year_of_days_weeks_and_months(tz: str) -> None:
    """Walk 2028 (a leap year): 366 daily windows, 12 monthly, weekly ones all start on Monday."""
    start = local("2028-01-01T00:00", tz)
    end = local("2029-01-01T00:00", tz)
    days = [w for w in _walk("daily", tz, start, end)]
    assert len(days) == 366
    assert sum((w.end - w.start for w in days), timedelta(0)) == end - start
    assert wall(days[59].start, tz).date() == date(2028, 2, 29)
    months = list(_walk("monthly", tz, start, end))
    assert [wall(w.start, tz).date() for w in months] == [date(2028, m, 1) for m in range(1, 13)]
    weeks = list(_walk("weekly", tz, start, end))
    assert all(wall(w.start, tz).weekday() == 0 for w in weeks[1:])
    assert wall(weeks[1].start, tz).date() == date(2028, 1, 3)


def _walk(period: str, tz: str, start: datetime, end: datetime) -> list[Window]:
    out = []
    for w in iter_windows(parse_window(period), tz, start, ANCHOR):
        if w.start >= end:
            return out
        out.append(w)
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("tz", "transition"), [(tz, t) for tz, t in TRANSITIONS if t.year == 2024])
def test_hours_of_a_transition_day_add_up(tz: str, transition: datetime) -> None:
    day = win("daily", tz, transition)
    hours = _walk("hourly", tz, day.start, day.end)
    assert hours[0].start == day.start and hours[-1].end == day.end
    assert all(a.end == b.start for a, b in itertools.pairwise(hours))
    # 23 h and 25 h days have 23 and 25 hourly windows (a repeated hour is its own window);
    # Lord Howe's 23.5 h and 24.5 h days have 24, one of them 30 or 90 minutes long; Chatham's
    # 23 h day has 24 since its skipped 02:45-03:45 still leaves hour 03 a quarter of an hour.
    expected = {23: 23, 25: 25, 23.5: 24, 24.5: 24}[(day.end - day.start) / H]
    if tz == "Pacific/Chatham" and expected == 23:
        expected = 24
    assert len(hours) == expected


# --- rolling windows ------------------------------------------------------------------------------


@given(
    anchor=instants,
    now=instants,
    seconds=st.integers(1, 366 * 86400),
    tz=st.sampled_from(ZONES),
)
def test_rolling_window_is_anchored_and_fixed_length(anchor: datetime, now: datetime, seconds: int, tz: str) -> None:
    spec = parse_window(f"{seconds}s") if seconds <= 999999 else parse_window(f"{seconds // 86400}d")
    duration = spec.duration
    assert duration is not None
    w = window_at(spec, tz, now, anchor)
    assert w.start <= now < w.end
    assert w.end - w.start == duration
    assert (w.start - anchor) % duration == timedelta(0)
    assert window_at(spec, tz, w.end, anchor).start == w.end


def test_rolling_ignores_time_zone_and_dst() -> None:
    spec = parse_window("24h")
    anchor = local("2024-03-30T00:00", "Europe/London")
    w = window_at(spec, "Europe/London", utc("2024-03-31T23:30Z"), anchor)
    # Rolling 24h drifts from London midnight after the change; daily does not.
    assert w == Window(utc("2024-03-31T00:00Z"), utc("2024-04-01T00:00Z"))
    assert win("daily", "Europe/London", utc("2024-03-31T23:30Z")) == Window(
        utc("2024-03-31T23:00Z"), utc("2024-04-01T23:00Z")
    )


@given(now=instants, k=st.integers(-1000, 1000))
def test_rolling_matches_calendar_where_they_should(now: datetime, k: int) -> None:
    # In UTC (and in Kolkata, which has no DST) an aligned rolling window is the calendar window.
    hour_anchor = datetime(2024, 1, 1, tzinfo=UTC) + k * H
    assert window_at(parse_window("1h"), "UTC", now, hour_anchor) == win("hourly", "UTC", now)
    day_anchor = datetime(2024, 1, 1, tzinfo=UTC) + k * timedelta(days=1)
    assert window_at(parse_window("24h"), "UTC", now, day_anchor) == win("daily", "UTC", now)
    monday = datetime(2024, 1, 1, tzinfo=UTC) + k * timedelta(days=7)  # 2024-01-01 is a Monday
    assert window_at(parse_window("7d"), "UTC", now, monday) == win("weekly", "UTC", now)
    kolkata = local("2024-01-01T00:00", "Asia/Kolkata") + k * timedelta(days=1)
    assert window_at(parse_window("1d"), "Asia/Kolkata", now, kolkata) == win("daily", "Asia/Kolkata", now)
    kolkata_hour = local("2024-01-01T00:00", "Asia/Kolkata") + k * H
    assert window_at(parse_window("60m"), "UTC", now, kolkata_hour) == win("hourly", "Asia/Kolkata", now)


def test_rolling_before_anchor() -> None:
    spec = parse_window("20s")
    w = window_at(spec, "UTC", ANCHOR - timedelta(seconds=1), ANCHOR)
    assert w == Window(ANCHOR - timedelta(seconds=20), ANCHOR)


# --- catch-up counts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "tz", "last", "now", "count"),
    [
        ("daily", "Europe/London", "2024-06-07T09:00Z", "2024-06-10T08:00Z", 3),  # Fri 10:00 -> Mon 09:00
        ("daily", "Europe/London", "2024-06-07T09:00Z", "2024-06-07T22:59Z", 0),
        ("daily", "Europe/London", "2024-06-07T09:00Z", "2024-06-07T23:00Z", 1),
        ("hourly", "America/New_York", "2024-11-03T04:30Z", "2024-11-03T07:30Z", 3),  # across the repeat
        ("hourly", "America/New_York", "2024-03-10T06:30Z", "2024-03-10T08:30Z", 2),  # across the gap
        ("hourly", "Australia/Lord_Howe", "2024-10-05T14:45Z", "2024-10-05T16:10Z", 2),
        ("weekly", "UTC", "2028-02-29T00:00Z", "2028-03-31T00:00Z", 4),
        ("monthly", "UTC", "2028-01-31T00:00Z", "2028-03-01T00:00Z", 2),
        ("monthly", "UTC", "2028-01-31T00:00Z", "2028-02-29T23:59Z", 1),
        ("monthly", "America/Santiago", "2024-01-15T00:00Z", "2025-01-15T00:00Z", 12),
        ("hourly", "Europe/London", "2024-01-01T00:00Z", "2025-01-01T00:00Z", 366 * 24),
        ("daily", "America/Santiago", "2024-01-01T12:00Z", "2025-01-01T12:00Z", 366),
    ],
)
def test_windows_elapsed_examples(period: str, tz: str, last: str, now: str, count: int) -> None:
    assert windows_elapsed(parse_window(period), tz, utc(last), utc(now), ANCHOR) == count


def test_windows_elapsed_rolling_examples() -> None:
    spec = parse_window("20s")
    at = ANCHOR + timedelta(seconds=5)
    assert windows_elapsed(spec, "UTC", at, at + timedelta(seconds=14), ANCHOR) == 0
    assert windows_elapsed(spec, "UTC", at, at + timedelta(seconds=15), ANCHOR) == 1
    assert windows_elapsed(spec, "UTC", at, at + timedelta(seconds=65), ANCHOR) == 3
    assert windows_elapsed(spec, "UTC", at, at - timedelta(seconds=65), ANCHOR) == 0


NOMINAL = {"hourly": H, "daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=31)}


@settings(deadline=None)
@given(
    text=st.sampled_from([*PERIODS, "90s", "15m", "1h", "24h", "7d", "1h30m"]),
    zi=zone_and_instant,
    gaps=st.lists(st.floats(0, 40), min_size=2, max_size=2),
)
def test_windows_elapsed_counts_steps_and_adds_up(text: str, zi: tuple[str, datetime], gaps: list[float]) -> None:
    spec = parse_window(text)
    unit = spec.duration or NOMINAL[text]
    tz, a = zi
    b = a + unit * gaps[0]  # spans of up to 40 windows each
    c = b + unit * gaps[1]
    ab = windows_elapsed(spec, tz, a, b, ANCHOR)
    assert ab + windows_elapsed(spec, tz, b, c, ANCHOR) == windows_elapsed(spec, tz, a, c, ANCHOR)
    assert windows_elapsed(spec, tz, a, a, ANCHOR) == 0
    assert windows_elapsed(spec, tz, b, a, ANCHOR) == 0
    # Stepping window by window from a reaches b's window after exactly `ab` resets.
    target = window_at(spec, tz, b, ANCHOR)
    steps = 0
    for w in iter_windows(spec, tz, a, ANCHOR):
        if w == target:
            break
        steps += 1
        assert steps <= 200
    assert steps == ab


# --- decisions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "used", "reserved", "amount", "enforcement", "granted", "over"),
    [
        (10, 0, 0, 10, "Hard", True, False),
        (10, 9, 0, 1, "Hard", True, False),
        (10, 9, 1, 1, "Hard", False, True),
        (10, 5, 4, 2, "Hard", False, True),
        (0, 0, 0, 1, "Hard", False, True),
        (10, 12, 0, 1, "Hard", False, True),  # limit lowered below usage
        (10, 10, 0, 1, "Soft", True, True),
        (10, 3, 0, 5, "Soft", True, False),
    ],
)
def test_decide_examples(
    limit: int, used: int, reserved: int, amount: int, enforcement: str, granted: bool, over: bool
) -> None:
    d = decide(limit, used, reserved, amount, enforcement)  # type: ignore[arg-type]
    assert (d.granted, d.over_limit) == (granted, over)
    if not granted:
        assert d.reason.startswith("QuotaExceeded")


def test_decide_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        decide(10, 0, 0, 0, "Hard")
    with pytest.raises(ValueError):
        decide(10, -1, 0, 1, "Hard")


ops = st.lists(
    st.tuples(st.sampled_from(["consume", "reserve", "commit", "release"]), st.integers(1, 50)),
    max_size=200,
)


@given(limit=st.integers(0, 500), ops=ops, enforcement=st.sampled_from(["Hard", "Soft"]))
def test_decide_never_over_grants_under_hard(limit: int, ops: list[tuple[str, int]], enforcement: str) -> None:
    """Drive a ledger with decide(): Hard keeps used + reserved <= limit and refuses only when it must."""
    used = 0
    reservations: list[int] = []
    for op, amount in ops:
        reserved = sum(reservations)
        if op in ("consume", "reserve"):
            d = decide(limit, used, reserved, amount, enforcement)  # type: ignore[arg-type]
            fits = used + reserved + amount <= limit
            assert d.over_limit == (not fits)
            assert d.granted == (fits or enforcement == "Soft")
            if d.granted:
                if op == "consume":
                    used += amount
                else:
                    reservations.append(amount)
        elif reservations and op == "commit":
            used += reservations.pop(0)
        elif reservations:
            reservations.pop(0)
        if enforcement == "Hard":
            assert used + sum(reservations) <= limit


@given(used=st.integers(0, 10**6), reserved=st.integers(0, 10**6), limit=st.integers(0, 10**6), pct=st.integers(1, 100))
def test_usage_state_matches_exact_fractions(used: int, reserved: int, limit: int, pct: int) -> None:
    exhausted, warning = usage_state(used, reserved, limit, pct)
    taken = used + reserved
    assert exhausted == (taken >= limit)
    if limit:
        assert warning == (Fraction(taken, limit) >= Fraction(pct, 100))
    else:
        assert warning


def test_usage_state_threshold_edges() -> None:
    assert usage_state(7, 0, 10, 80) == (False, False)
    assert usage_state(7, 1, 10, 80) == (False, True)
    assert usage_state(10, 0, 10, 80) == (True, True)
    assert usage_state(0, 0, 3, 34) == (False, False)
    assert usage_state(1, 0, 3, 34) == (False, False)  # 33.3% < 34%
    assert usage_state(1, 0, 3, 33) == (False, True)
