"""The settings blocks of a configuration: providers (API keys, endpoints), backend, emulator
and policy, merged across files, interpolated and validated.

A mixin of the loader: it reads the merged sections the loader collected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from reconciler.budget import BudgetPolicy
from reconciler.config.attributes import given_fields
from reconciler.config.diagnostics import FieldIssue, Origin, did_you_mean, issue_from_validation_error
from reconciler.config.interpolation import Interpolator
from reconciler.config.resolution import _Entry
from reconciler.config.schema import BackendBlock, EmulatorBlock, PolicyBlock, ProviderBlock
from reconciler.errors import ConfigError
from reconciler.identity import is_postgres_url
from reconciler.model import Address, Kind, Resource
from reconciler.provider_spec import find_provider, provider_names
from reconciler.providers.base import ProviderSettings
from reconciler.providers.http import api_key_problem

# ProviderBlock fields -> the ProviderSettings options they set, when given.
_PROVIDER_OPTIONS = {
    "rate_limit": "rate_limit_per_second",
    "timeout": "timeout_seconds",
    "max_retries": "max_retries",
    "list_consistency_seconds": "list_consistency_seconds",
}
_BlockT = TypeVar("_BlockT", bound=BaseModel)  # one block of settings, merged key by key across files


def api_key_env_var(provider: str) -> str:
    """The environment variable that supplies a provider's API key by default."""
    spec = find_provider(provider)
    return spec.api_key_env_var if spec is not None else f"{provider.upper()}_API_KEY"



@dataclass(frozen=True)
class BackendSettings:
    """Where state lives. `url` may hold a password, so it is kept out of repr."""

    type: Literal["local", "postgres"]
    path: str | None = None
    url: str | None = field(default=None, repr=False)
    schema: str = "reconciler"
    stack: str | None = None




class SettingsReader:
    """Reads the providers, backend, emulator and policy sections."""

    maps: dict[str, dict[str, tuple[Any, Origin]]]
    entries: dict[Kind, dict[str, _Entry]]
    environ: Mapping[str, str]
    secrets: set[str]

    # -- providers and backend ---------------------------------------------------------

    def _providers(
        self, resources: dict[Address, Resource], interpolator: Interpolator
    ) -> dict[str, ProviderSettings]:
        declared = self.maps["providers"]
        first_user: dict[str, Address] = {}
        for address, resource in resources.items():
            for provider in resource.providers:
                first_user.setdefault(provider, address)
        known = provider_names()
        for name, (_, place) in declared.items():
            if name not in known:
                raise place.error(
                    FieldIssue(
                        (),
                        f"unknown provider {name!r}",
                        did_you_mean(name, known) or "one of " + ", ".join(known),
                        at_key=True,
                    )
                )
        settings: dict[str, ProviderSettings] = {}
        for name in known:
            if name not in declared and name not in first_user:
                continue
            origin: Origin | None = None
            block = ProviderBlock()
            if name in declared:
                raw, origin = declared[name]
                block = self._provider_block(name, raw, origin, interpolator)
            api_key = block.api_key or self.environ.get(api_key_env_var(name)) or None
            if api_key:
                self._check_api_key(name, api_key, origin if block.api_key else None)
            endpoint = block.endpoint
            if name in first_user and endpoint != "embedded" and not api_key:
                self._missing_api_key(name, origin, first_user[name], resources)
            options = given_fields(block, _PROVIDER_OPTIONS)
            settings[name] = ProviderSettings(name=name, endpoint=endpoint, api_key=api_key, **options)
            if api_key:
                self.secrets.add(api_key)
        return settings

    def _provider_block(
        self, name: str, raw: Any, origin: Origin, interpolator: Interpolator
    ) -> ProviderBlock:
        data = {} if raw is None else raw
        if not isinstance(data, dict):
            raise origin.fail((), f"providers.{name} must be a map (api_key, endpoint, ...)")
        try:
            data = interpolator.render(data, origin.document.path.parent).value
            return ProviderBlock.model_validate(data)
        except FieldIssue as issue:
            raise origin.error(issue) from None
        except ValidationError as exc:
            raise origin.error(issue_from_validation_error(exc, data, ProviderBlock)) from None

    def _check_api_key(self, name: str, api_key: str, origin: Origin | None) -> None:
        """Refuse a key that cannot be sent as it is, naming where it came from, never the key."""
        problem = api_key_problem(api_key)
        if problem is None:
            return
        self.secrets.add(api_key)
        variable = api_key_env_var(name)
        fix = "without surrounding spaces or line breaks (in a shell: printf '%s' \"$KEY\"; in CI, store the "
        fix += "secret without its final newline); nothing was sent"
        if origin is None:
            raise ConfigError(
                f"the API key of provider {name} in the environment variable {variable} {problem}",
                hint=f"set {variable} to the key alone, {fix}",
            )
        raise ConfigError(
            f"the API key of provider {name} {problem}",
            origin.mark(("api_key",)),
            f"providers.{name}.api_key",
            f"give the key alone, {fix}",
        )

    def _missing_api_key(
        self, name: str, origin: Origin | None, user: Address, resources: dict[Address, Resource]
    ) -> None:
        variable = api_key_env_var(name)
        hint = (
            f"set {variable}, or providers.{name}.api_key (e.g. api_key: ${{env:{variable}}}); "
            "or use endpoint: embedded for the built-in emulator"
        )
        message = f"missing API key for provider {name} (used by {user})"
        if origin is not None:
            raise ConfigError(message, origin.mark(), f"providers.{name}.api_key", hint)
        entry = self.entries[user.kind][user.name]
        raise ConfigError(message, entry.origin.mark(("provider",)), entry.origin.field(("provider",)), hint)

    def _settings_block(
        self, section: str, model: type[_BlockT], interpolator: Interpolator
    ) -> tuple[_BlockT, Callable[[FieldIssue], Origin]] | None:
        """A keyed section (backend, emulator) merged across files, interpolated and validated."""
        entries = self.maps[section]
        if not entries:
            return None
        first_origin = next(iter(entries.values()))[1]
        data: dict[str, Any] = {}
        for key, (value, origin) in entries.items():
            try:
                data[key] = interpolator.render(value, origin.document.path.parent).value
            except FieldIssue as failure:
                raise origin.error(FieldIssue((key, *failure.path), failure.message, failure.hint)) from None

        def origin_of(issue: FieldIssue) -> Origin:
            if issue.path and issue.path[0] in entries:
                return entries[str(issue.path[0])][1]
            return first_origin

        try:
            return model.model_validate(data), origin_of
        except ValidationError as exc:
            issue = issue_from_validation_error(exc, data, model)
            raise origin_of(issue).error(issue) from None

    def _emulator(self, interpolator: Interpolator) -> dict[str, Any]:
        parsed = self._settings_block("emulator", EmulatorBlock, interpolator)
        if parsed is None:
            return {}
        block, origin_of = parsed
        if block.faults is not None:
            from reconciler.emulator.faults import FaultConfig, FaultSpecError

            try:
                FaultConfig.parse(block.faults, block.seed or 0)
            except FaultSpecError as exc:
                problem = FieldIssue(("faults",), str(exc))
                raise origin_of(problem).error(problem) from None
        return block.model_dump(exclude_none=True)

    def _policy(self, interpolator: Interpolator) -> BudgetPolicy | None:
        parsed = self._settings_block("policy", PolicyBlock, interpolator)
        if parsed is None:
            return None
        block = parsed[0]
        return BudgetPolicy(max_hourly_spend=block.max_hourly_spend, max_monthly_spend=block.max_monthly_spend)

    def _backend(self, interpolator: Interpolator) -> BackendSettings | None:
        parsed = self._settings_block("backend", BackendBlock, interpolator)
        if parsed is None:
            return None
        block, origin_of = parsed
        entries = self.maps["backend"]
        if block.type == "local" and block.url is not None:
            problem = FieldIssue(
                ("url",), "a local backend takes path, not url", hint="or set type: postgres"
            )
            raise origin_of(problem).error(problem)
        if block.type == "postgres":
            if block.url is None:
                problem = FieldIssue(
                    ("url",), "a postgres backend needs url", hint="for example url: ${env:DATABASE_URL}"
                )
                raise origin_of(problem).error(problem)
            if block.path is not None:
                problem = FieldIssue(("path",), "a postgres backend takes url, not path")
                raise origin_of(problem).error(problem)
            if not is_postgres_url(block.url):
                problem = FieldIssue(("url",), "url must start with postgresql:// (or postgres://)")
                raise origin_of(problem).error(problem)
            password = urlsplit(block.url).password
            if password:
                self.secrets.add(password)
        path = None
        if block.path is not None:
            base_dir = entries["path"][1].document.path.parent
            path = str((base_dir / Path(block.path).expanduser()).absolute())
        return BackendSettings(
            type=block.type,
            path=path,
            url=block.url,
            schema=block.schema_name,
            stack=block.stack,
        )
