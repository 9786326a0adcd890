"""Money and elapsed time as every view writes them: `$1,234.56`, `$2.40/h`, `1m30s`."""

from __future__ import annotations

from reconciler.model import HOURS_PER_MONTH


def format_money(amount: float, *, signed: bool = False) -> str:
    """`$1,234.56`; with `signed`, `+$1,234.56` / `-$1,234.56` (a change, not a level)."""
    cents = round(amount, 2)
    if cents == 0:
        cents = 0.0
    text = f"${abs(cents):,.2f}"
    if cents < 0:
        return f"-{text}"
    return f"+{text}" if signed else text


def format_hourly(amount: float, *, signed: bool = False) -> str:
    """`$2.40/h`: the unit every price in reconciler is quoted in."""
    return f"{format_money(amount, signed=signed)}/h"


def cost_fields(hourly_before: float, hourly_after: float) -> dict[str, float]:
    delta = hourly_after - hourly_before
    return {
        "hourly_before": round(hourly_before, 6),
        "hourly_after": round(hourly_after, 6),
        "hourly_delta": round(delta, 6),
        "monthly_delta": round(delta * HOURS_PER_MONTH, 6),
    }


def format_elapsed(seconds: float) -> str:
    """`3s`, `1m30s`, `2h0m5s`: Terraform's elapsed-time style."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
