"""Configuration: YAML files -> a validated, resolved Config (see loader.py for the steps)."""

from reconciler.config.loader import BackendSettings, Config, api_key_env_var, load_config
from reconciler.config.schema import config_json_schema

__all__ = [
    "BackendSettings",
    "Config",
    "api_key_env_var",
    "config_json_schema",
    "load_config",
]
