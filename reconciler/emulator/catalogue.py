"""What the emulated clouds sell: a fixed, deterministic catalogue exposed as data.

Tests and benchmarks pick valid (or deliberately sold-out) combinations from these
tuples instead of hard-coding names, so the catalogue can grow without breaking them.

Shadeform (clouds from the OpenAPI `Cloud` enum): lambdalabs, datacrunch, massedcompute,
paperspace, runpod. Shade instance types are `<GPU>` for one GPU and `<GPU>x<N>` for N
GPUs (A100_80Gx8), as Shadeform names them. Prices are integer cents per hour.
Availability rules (the same for Forward Compute):

- 4- and 8-GPU types are sold out in each cloud's last region;
- 8xH100 is sold out everywhere except the first region of the first cloud offering it;
- datacrunch ICE-01 and Forward's crusoe/eu-north-1 are sold out entirely.

Spot: runpod and datacrunch also sell spot capacity at 45% of the on-demand price,
wherever on-demand is available and the type has fewer than 8 GPUs.

Forward Compute sells offerings (`spot_coff_...`) per provider, region and instance type
(`H100x8`); ids are derived from those three, so they are stable across runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SHADEFORM_OS_OPTIONS = ("ubuntu22.04_cuda12.2_shade_os", "ubuntu20.04_cuda12.0_shade_os")
SPOT_PRICE_RATIO = 0.45


@dataclass(frozen=True)
class GpuSpec:
    gpu_type: str
    vram_per_gpu_gb: int
    vcpus_per_gpu: int
    memory_per_gpu_gb: int
    storage_per_gpu_gb: int
    cents_per_gpu_hour: int


GPUS: dict[str, GpuSpec] = {
    spec.gpu_type: spec
    for spec in (
        GpuSpec("A10", 24, 30, 200, 512, 75),
        GpuSpec("A6000", 48, 14, 46, 512, 80),
        GpuSpec("L40S", 48, 16, 64, 512, 99),
        GpuSpec("A100", 40, 30, 200, 512, 129),
        GpuSpec("A100_80G", 80, 30, 225, 1024, 179),
        GpuSpec("H100", 80, 26, 225, 1024, 249),
    )
}
GPU_COUNTS = (1, 2, 4, 8)
_NVLINK_GPUS = frozenset({"A100", "A100_80G", "H100"})


def _interconnect(gpu_type: str, num_gpus: int) -> str:
    return "nvlink" if num_gpus > 1 and gpu_type in _NVLINK_GPUS else "pcie"


def _stable_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("/".join(parts).encode()).hexdigest()[:12]


SOLD_OUT_REGIONS = frozenset({"ICE-01", "eu-north-1"})


def _sold_out(regions: tuple[str, ...], region: str, gpu_type: str, num_gpus: int, h100x8_home: bool) -> bool:
    if region in SOLD_OUT_REGIONS:
        return True
    if num_gpus >= 4 and region == regions[-1]:
        return True
    return gpu_type == "H100" and num_gpus == 8 and not (h100x8_home and region == regions[0])


# --------------------------------------------------------------------------- Shadeform


@dataclass(frozen=True)
class RegionAvailability:
    """One region of an instance type: on-demand availability and the spot market, if any."""

    region: str
    available: bool
    spot_available: bool | None = None
    spot_price_cents: int | None = None


@dataclass(frozen=True)
class ShadeformInstanceType:
    cloud: str
    shade_instance_type: str
    cloud_instance_type: str
    gpu_type: str
    num_gpus: int
    vram_per_gpu_gb: int
    vcpus: int
    memory_gb: int
    storage_gb: int
    interconnect: str
    hourly_price_cents: int
    availability: tuple[RegionAvailability, ...]
    os_options: tuple[str, ...] = SHADEFORM_OS_OPTIONS

    def region(self, region: str) -> RegionAvailability | None:
        return next((a for a in self.availability if a.region == region), None)


@dataclass(frozen=True)
class ShadeformVolumeType:
    cloud: str
    region: str
    supports_multi_mount: bool
    fixed_size: bool
    price_per_gb_per_hour: float


@dataclass(frozen=True)
class ShadeformPlacement:
    """One purchasable (cloud, region, shade_instance_type): what a create request pins."""

    cloud: str
    region: str
    shade_instance_type: str
    gpu_type: str
    num_gpus: int
    hourly_price_cents: int
    available: bool


@dataclass(frozen=True)
class _Seller:
    """Who sells machines in a catalogue: a Shadeform cloud, a Forward provider."""

    name: str
    regions: tuple[str, ...]
    gpus: tuple[str, ...]
    price_factor: float


@dataclass(frozen=True)
class _ShadeformCloud(_Seller):
    instance_type_format: str
    spot: bool
    volume_multi_mount: bool
    volume_fixed_size: bool
    volume_price_per_gb_per_hour: float


_SHADEFORM_CLOUDS = (
    _ShadeformCloud(
        "lambdalabs",
        ("us-east-1", "us-west-1", "us-south-1"),
        ("A10", "A6000", "A100", "A100_80G", "H100"),
        1.0,
        "gpu_{n}x_{gpu_lower}",
        False,
        True,
        True,
        0.00028,
    ),
    _ShadeformCloud(
        "datacrunch",
        ("FIN-01", "FIN-02", "ICE-01"),
        ("A6000", "L40S", "A100_80G", "H100"),
        0.95,
        "{n}{gpu}.{vcpus}V",
        True,
        False,
        False,
        0.00027,
    ),
    _ShadeformCloud(
        "massedcompute",
        ("us-central-1", "us-central-2"),
        ("A6000", "L40S", "A100_80G", "H100"),
        0.9,
        "gpu_{n}x_{gpu_lower}",
        False,
        False,
        True,
        0.00020,
    ),
    _ShadeformCloud(
        "paperspace",
        ("NY2", "CA1", "AMS1"),
        ("A6000", "A100", "A100_80G", "H100"),
        1.1,
        "{gpu}x{n}",
        False,
        True,
        False,
        0.00040,
    ),
    _ShadeformCloud(
        "runpod",
        ("us-ks-2", "eu-ro-1"),
        ("A6000", "L40S", "A100_80G", "H100"),
        0.85,
        "{n}x-{gpu_lower}",
        True,
        False,
        True,
        0.00010,
    ),
)


def _shadeform_instance_types() -> tuple[ShadeformInstanceType, ...]:
    types: list[ShadeformInstanceType] = []
    h100x8_home_taken = False
    for cloud in _SHADEFORM_CLOUDS:
        h100x8_home = "H100" in cloud.gpus and not h100x8_home_taken
        h100x8_home_taken = h100x8_home_taken or h100x8_home
        for gpu_type in cloud.gpus:
            spec = GPUS[gpu_type]
            for num_gpus in GPU_COUNTS:
                vcpus = spec.vcpus_per_gpu * num_gpus
                price = round(spec.cents_per_gpu_hour * num_gpus * cloud.price_factor)
                availability = []
                for region in cloud.regions:
                    available = not _sold_out(cloud.regions, region, gpu_type, num_gpus, h100x8_home)
                    if cloud.spot:
                        spot_ok = available and num_gpus < 8
                        availability.append(
                            RegionAvailability(region, available, spot_ok, round(price * SPOT_PRICE_RATIO))
                        )
                    else:
                        availability.append(RegionAvailability(region, available))
                types.append(
                    ShadeformInstanceType(
                        cloud=cloud.name,
                        shade_instance_type=gpu_type if num_gpus == 1 else f"{gpu_type}x{num_gpus}",
                        cloud_instance_type=cloud.instance_type_format.format(
                            n=num_gpus, gpu=gpu_type, gpu_lower=gpu_type.lower(), vcpus=vcpus
                        ),
                        gpu_type=gpu_type,
                        num_gpus=num_gpus,
                        vram_per_gpu_gb=spec.vram_per_gpu_gb,
                        vcpus=vcpus,
                        memory_gb=spec.memory_per_gpu_gb * num_gpus,
                        storage_gb=spec.storage_per_gpu_gb * num_gpus,
                        interconnect=_interconnect(gpu_type, num_gpus),
                        hourly_price_cents=price,
                        availability=tuple(availability),
                    )
                )
    return tuple(types)


SHADEFORM_CLOUDS: tuple[str, ...] = tuple(c.name for c in _SHADEFORM_CLOUDS)
SHADEFORM_INSTANCE_TYPES: tuple[ShadeformInstanceType, ...] = _shadeform_instance_types()
SHADEFORM_VOLUME_TYPES: tuple[ShadeformVolumeType, ...] = tuple(
    ShadeformVolumeType(
        c.name, region, c.volume_multi_mount, c.volume_fixed_size, c.volume_price_per_gb_per_hour
    )
    for c in _SHADEFORM_CLOUDS
    for region in c.regions
)
SHADEFORM_PLACEMENTS: tuple[ShadeformPlacement, ...] = tuple(
    ShadeformPlacement(
        t.cloud, a.region, t.shade_instance_type, t.gpu_type, t.num_gpus, t.hourly_price_cents, a.available
    )
    for t in SHADEFORM_INSTANCE_TYPES
    for a in t.availability
)

_SHADEFORM_TYPE_INDEX = {(t.cloud, t.shade_instance_type): t for t in SHADEFORM_INSTANCE_TYPES}
_SHADEFORM_VOLUME_INDEX = {(v.cloud, v.region): v for v in SHADEFORM_VOLUME_TYPES}


def shadeform_instance_type(cloud: str, shade_instance_type: str) -> ShadeformInstanceType | None:
    return _SHADEFORM_TYPE_INDEX.get((cloud, shade_instance_type))


def shadeform_volume_type(cloud: str, region: str) -> ShadeformVolumeType | None:
    return _SHADEFORM_VOLUME_INDEX.get((cloud, region))


def shadeform_placements(*, available: bool | None = None) -> list[ShadeformPlacement]:
    """Every (cloud, region, type), cheapest first; `available` filters on on-demand capacity."""
    chosen = [p for p in SHADEFORM_PLACEMENTS if available is None or p.available is available]
    return sorted(chosen, key=lambda p: (p.hourly_price_cents, p.cloud, p.region, p.shade_instance_type))


# --------------------------------------------------------------------------- Forward Compute

REGION_DISPLAY_NAMES = {
    "us-east-1": "US East (Virginia)",
    "us-west-2": "US West (Oregon)",
    "eu-central-1": "EU Central (Frankfurt)",
    "eu-north-1": "EU North (Stockholm)",
}


_SHADEFORM_REGION_NAMES = {
    "us-east-1": "US, Virginia",
    "us-west-1": "US, California",
    "us-south-1": "US, Texas",
    "FIN-01": "Finland, Helsinki 1",
    "FIN-02": "Finland, Helsinki 2",
    "ICE-01": "Iceland, Keflavik",
    "us-central-1": "US, Wichita, KS",
    "us-central-2": "US, Kansas City, MO",
    "NY2": "US, New York",
    "CA1": "US, Santa Clara, CA",
    "AMS1": "Netherlands, Amsterdam",
    "us-ks-2": "US, Kansas",
    "eu-ro-1": "Romania, Bucharest",
}


def region_display_name(region: str) -> str:
    """A Shadeform region's display name (`Availability.display_name`)."""
    return _SHADEFORM_REGION_NAMES.get(region, region)


@dataclass(frozen=True)
class ForwardComputeOffering:
    id: str
    provider: str
    region: str
    instance_type: str
    gpu_type: str
    num_gpus: int
    vram_per_gpu_gb: int
    vcpus: int
    memory_gb: int
    storage_gb: int
    interconnect: str
    hourly_price_cents: int
    available: bool
    deployment_type: str = "vm"
    boot_min_seconds: int = 60
    boot_max_seconds: int = 300

    @property
    def region_display_name(self) -> str:
        return REGION_DISPLAY_NAMES.get(self.region, self.region)

    @property
    def hourly_price(self) -> str:
        """Dollars as a decimal string, as the API sends prices."""
        return f"{self.hourly_price_cents / 100:.2f}"

    @property
    def price_per_gpu_hour(self) -> str:
        return f"{self.hourly_price_cents / 100 / self.num_gpus:.4f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class ForwardVolumeOffering:
    id: str
    provider: str
    region: str
    price_per_gb_per_hour: str
    fixed_size: bool
    supports_multi_mount: bool


@dataclass(frozen=True)
class ForwardModel:
    id: str
    display_name: str
    model_type: str
    owned_by: str
    provider: str
    context_length: int
    created: int
    input_price: float
    output_price: float
    description: str
    license: str
    link: str


@dataclass(frozen=True)
class _ForwardProvider(_Seller):
    volume_price_per_gb_per_hour: str
    volume_multi_mount: bool


_FORWARD_PROVIDERS = (
    _ForwardProvider(
        "shadeform", ("us-east-1", "us-west-2"), ("A6000", "L40S", "A100", "H100"), 1.05, "0.00014", False
    ),
    _ForwardProvider(
        "hyperstack", ("eu-central-1", "us-east-1"), ("A6000", "A100", "H100"), 0.95, "0.00011", True
    ),
    _ForwardProvider("crusoe", ("us-west-2", "eu-north-1"), ("L40S", "A100", "H100"), 0.9, "0.00009", False),
)


def _forward_compute_offerings() -> tuple[ForwardComputeOffering, ...]:
    offerings: list[ForwardComputeOffering] = []
    h100x8_home_taken = False
    for provider in _FORWARD_PROVIDERS:
        h100x8_home = "H100" in provider.gpus and not h100x8_home_taken
        h100x8_home_taken = h100x8_home_taken or h100x8_home
        for region in provider.regions:
            for gpu_type in provider.gpus:
                spec = GPUS[gpu_type]
                for num_gpus in GPU_COUNTS:
                    instance_type = f"{gpu_type}x{num_gpus}"
                    offerings.append(
                        ForwardComputeOffering(
                            id=_stable_id("spot_coff_", provider.name, region, instance_type),
                            provider=provider.name,
                            region=region,
                            instance_type=instance_type,
                            gpu_type=gpu_type,
                            num_gpus=num_gpus,
                            vram_per_gpu_gb=spec.vram_per_gpu_gb,
                            vcpus=spec.vcpus_per_gpu * num_gpus,
                            memory_gb=spec.memory_per_gpu_gb * num_gpus,
                            storage_gb=spec.storage_per_gpu_gb * num_gpus,
                            interconnect="NVLink"
                            if _interconnect(gpu_type, num_gpus) == "nvlink"
                            else "PCIe",
                            hourly_price_cents=round(
                                spec.cents_per_gpu_hour * num_gpus * provider.price_factor
                            ),
                            available=not _sold_out(
                                provider.regions, region, gpu_type, num_gpus, h100x8_home
                            ),
                            boot_min_seconds=60 * (1 + num_gpus // 4),
                            boot_max_seconds=300 * (1 + num_gpus // 4),
                        )
                    )
    return tuple(offerings)


FORWARD_PROVIDERS: tuple[str, ...] = tuple(p.name for p in _FORWARD_PROVIDERS)
FORWARD_COMPUTE_OFFERINGS: tuple[ForwardComputeOffering, ...] = _forward_compute_offerings()
FORWARD_VOLUME_OFFERINGS: tuple[ForwardVolumeOffering, ...] = tuple(
    ForwardVolumeOffering(
        id=_stable_id("spot_voff_", p.name, region),
        provider=p.name,
        region=region,
        price_per_gb_per_hour=p.volume_price_per_gb_per_hour,
        fixed_size=False,
        supports_multi_mount=p.volume_multi_mount,
    )
    for p in _FORWARD_PROVIDERS
    for region in p.regions
)
FORWARD_MODELS: tuple[ForwardModel, ...] = (
    ForwardModel(
        "meta-llama/llama-3.3-70b-instruct-turbo",
        "Llama 3.3 70B Instruct Turbo",
        "chat",
        "meta",
        "together",
        131072,
        1733443200,
        0.88,
        0.88,
        "Multilingual instruction-tuned 70B model.",
        "llama3.3",
        "https://huggingface.co/meta-llama/Llama-3.3-70B-Instruct",
    ),
    ForwardModel(
        "mistralai/mistral-7b-instruct-v0.3",
        "Mistral 7B Instruct v0.3",
        "chat",
        "mistralai",
        "together",
        32768,
        1716422400,
        0.2,
        0.2,
        "Small instruction-tuned model.",
        "apache-2.0",
        "https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.3",
    ),
    ForwardModel(
        "baai/bge-large-en-v1.5",
        "BGE Large EN v1.5",
        "embedding",
        "baai",
        "together",
        512,
        1694649600,
        0.02,
        0.0,
        "English text embedding model.",
        "mit",
        "https://huggingface.co/BAAI/bge-large-en-v1.5",
    ),
)

_FORWARD_COMPUTE_INDEX = {o.id: o for o in FORWARD_COMPUTE_OFFERINGS}
_FORWARD_VOLUME_INDEX = {o.id: o for o in FORWARD_VOLUME_OFFERINGS}
_FORWARD_VOLUME_PLACE_INDEX = {(o.provider, o.region): o for o in FORWARD_VOLUME_OFFERINGS}
_FORWARD_MODEL_INDEX = {m.id: m for m in FORWARD_MODELS}


def forward_compute_offering(offering_id: str) -> ForwardComputeOffering | None:
    return _FORWARD_COMPUTE_INDEX.get(offering_id)


def forward_volume_offering(offering_id: str) -> ForwardVolumeOffering | None:
    return _FORWARD_VOLUME_INDEX.get(offering_id)


def forward_volume_offering_at(provider: str, region: str) -> ForwardVolumeOffering | None:
    return _FORWARD_VOLUME_PLACE_INDEX.get((provider, region))


def forward_model(model_id: str) -> ForwardModel | None:
    return _FORWARD_MODEL_INDEX.get(model_id)


def forward_offerings(*, available: bool | None = None) -> list[ForwardComputeOffering]:
    """Compute offerings, cheapest first; `available` filters on capacity."""
    chosen = [o for o in FORWARD_COMPUTE_OFFERINGS if available is None or o.available is available]
    return sorted(chosen, key=lambda o: (o.hourly_price_cents, o.provider, o.region, o.instance_type))
