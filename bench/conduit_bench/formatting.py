"""Small helpers the report sections share."""

from __future__ import annotations


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def peak_rss(run: dict) -> float | None:
    """The peak RSS of a run on one replica, in MiB."""
    return next(iter(run.get("replica_peak_rss_mib", {}).values()), None)


def rounds_rps(run: dict) -> str:
    """Every round's req/s of a median run."""
    return ", ".join(fmt(x, 0) for x in run["rounds_rps"])


def ratio(numerator: float, denominator: float, digits: int = 2) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def split_list(text: str) -> list[str]:
    """A comma-separated flag's items; an empty flag is an empty list."""
    return [item for item in text.split(",") if item]
