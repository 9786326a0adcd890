"""A price cap below every offering that otherwise matches is a plan-time warning."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console

from reconciler.config.diagnostics import ConfigWarning
from reconciler.model import Address, Kind, Offering, OfferingRequest, Resource
from reconciler.price_caps import price_cap_warnings
from reconciler.views.diagnostics import render_plan_warnings


def offering(gpu: str, n: int, price: float, available: bool = True) -> Offering:
    return Offering("forward", f"{gpu}-{n}-{price}", gpu, n, price, "r", "c", available, {"offering_id": "x"})


CATALOGUE = {"forward": [offering("H100", 8, 20.0), offering("H100", 8, 24.0, available=False), offering("A100", 1, 1.0)]}


def instance(name: str, request: OfferingRequest, index: int | None = None) -> tuple[Address, Resource]:
    address = Address(Kind.INSTANCE, name, index)
    return address, Resource(address=address, provider="forward", attributes={"name": name}, offering=request)


def test_caps_below_every_matching_offering_are_reported_once_per_entry() -> None:
    resources = dict(
        [
            instance("cheap", OfferingRequest(gpu_type="H100", num_gpus=8, max_hourly_price=10)),
            instance("per-gpu", OfferingRequest(gpu_type="H100", max_price_per_gpu_hour=2.0)),
            instance("fine", OfferingRequest(gpu_type="H100", num_gpus=8, max_hourly_price=21)),
            instance("uncapped", OfferingRequest(gpu_type="H100")),
            instance("nothing", OfferingRequest(gpu_type="B200", max_hourly_price=1)),
            instance("fleet", OfferingRequest(gpu_type="H100", max_hourly_price=5), 0),
            instance("fleet", OfferingRequest(gpu_type="H100", max_hourly_price=5), 1),
        ]
    )
    warnings = price_cap_warnings(resources, CATALOGUE)
    assert [str(address) for address, _ in warnings] == ["instances.cheap", "instances.fleet[0]", "instances.per-gpu"]
    message = dict((str(a), m) for a, m in warnings)["instances.cheap"]
    assert message.startswith("instances.cheap: max_hourly_price 10 is below every matching forward offering")
    assert "the cheapest is $20.00/h, $2.50/GPU-h" in message
    assert dict((str(a), m) for a, m in warnings)["instances.fleet[0]"].startswith("instances.fleet: ")
    assert price_cap_warnings(resources, {}) == []


def test_plan_warnings_render_as_warnings() -> None:
    console = Console(record=True, width=200, file=io.StringIO())
    secret_file = ConfigWarning("main.yaml holds a secret", hint="chmod 600 main.yaml")
    render_plan_warnings(
        [(Address(Kind.INSTANCE, "x"), "instances.x: max_hourly_price 1 is below ...")], [secret_file], console
    )
    assert console.export_text() == (
        "Warning: main.yaml holds a secret\n  hint: chmod 600 main.yaml\n\n"
        "Warning: instances.x: max_hourly_price 1 is below ...\n"
        "  hint: raise the cap, or see the prices with `reconciler offerings`\n"
    )


def test_an_instance_choosing_its_provider_is_warned_over_every_provider_it_may_use() -> None:
    request = OfferingRequest(gpu_type="H100", num_gpus=8, max_hourly_price=19, providers=("shadeform", "forward"))
    address, res = instance("anywhere", request)
    shadeform = [Offering("shadeform", "s", "H100", 8, 18.0, "r", "c", True, {"cloud": "c"})]
    assert price_cap_warnings({address: res}, {**CATALOGUE, "shadeform": shadeform}) == []  # Shadeform meets it
    (warning,) = price_cap_warnings({address: res}, CATALOGUE)
    assert "below every matching forward offering" in warning[1]
    capped = {address: replace(res, offering=replace(request, max_hourly_price=10))}
    (both,) = price_cap_warnings(capped, {**CATALOGUE, "shadeform": shadeform})
    assert "below every matching shadeform or forward offering (the cheapest is $18.00/h" in both[1]
