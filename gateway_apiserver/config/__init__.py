"""The command line and configuration: flags compatible with cluster-gateway's whole command line.

`parser` declares every flag, `options` checks them into a `Config`; `checks` holds the cross-flag rules, `flag_values`
Go-style value parsing, `feature_gates` the gates, and `reference_flags` the flags the reference's
binary accepts that mean nothing here (accepted with one warning each).
"""

from .checks import ConfigError
from .feature_gates import FEATURE_GATES, parse_feature_gates
from .flag_values import parse_duration
from .options import Config, build_parser, parse_config

__all__ = ["FEATURE_GATES", "Config", "ConfigError", "build_parser", "parse_config", "parse_duration", "parse_feature_gates"]
