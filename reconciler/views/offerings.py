"""`reconciler offerings` output: the offerings found, as a table or as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from reconciler.model import Offering


def offering_json(o: Offering) -> dict[str, Any]:
    return {
        "provider": o.provider,
        "id": o.id,
        "cloud": o.cloud,
        "region": o.region,
        "gpu_type": o.gpu_type,
        "num_gpus": o.num_gpus,
        "vram_per_gpu_gb": o.vram_per_gpu_gb,
        "vcpus": o.vcpus,
        "memory_gb": o.memory_gb,
        "storage_gb": o.storage_gb,
        "interconnect": o.interconnect,
        "boot_seconds": o.boot_seconds,
        "rental_type": o.rental_type,
        "deployment_type": o.deployment_type,
        "hourly_price": o.hourly_price,
        "price_per_gpu_hour": o.price_per_gpu_hour,
        "available": o.available,
        "pin": o.pin,
    }


def _text(value: object, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def _boot(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds // 60}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds}s"


def offerings_table(rows: Sequence[Offering]) -> Table:
    table = Table(title=f"{len(rows)} offerings")
    numeric = ("gpus", "VRAM", "vCPUs", "RAM", "disk", "boot", "$/h", "$/GPU-h")
    columns = ("provider", "cloud", "region", "gpu", "gpus", "VRAM", "vCPUs", "RAM", "disk", "interconnect",
               "boot", "rental", "$/h", "$/GPU-h", "available", "pin")
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left")
    for o in rows:
        table.add_row(
            o.provider, o.cloud, o.region, o.gpu_type, str(o.num_gpus), _text(o.vram_per_gpu_gb, " GB"),
            _text(o.vcpus), _text(o.memory_gb, " GB"), _text(o.storage_gb, " GB"), _text(o.interconnect),
            _boot(o.boot_seconds), o.rental_type, f"${o.hourly_price:,.2f}", f"${o.price_per_gpu_hour:,.2f}",
            "yes" if o.available else "no", " ".join(f"{k}={v}" for k, v in o.pin.items()),
        )
    return table
