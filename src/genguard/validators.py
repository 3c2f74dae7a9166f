"""Validators for silent failures: output that HTTP and ``finish_reason`` accept but your application does not.

Pass them to a call (``client.chat(..., validate=validators.labels(["yes", "no"]))``) or build them from the
CLI's spec strings. Each rejection becomes a ``silent`` Outcome with its own code (docs/failures.md).

>>> from genguard import Outcome, validators
>>> checks = validators.build_validators(labels=["yes", "no"])
>>> validators.apply_validators(Outcome.success(text="maybe", finish_reason="stop"), checks).code
'unexpected_label'
"""

from __future__ import annotations

from .core.validate import (
    Parsed,
    Problem,
    Validator,
    apply_validators,
    build_validators,
    custom,
    json_output,
    json_schema,
    labels,
    min_length,
    model,
    parse_validate_spec,
    pattern,
)

__all__ = [
    "Parsed",
    "Problem",
    "Validator",
    "apply_validators",
    "build_validators",
    "custom",
    "json_output",
    "json_schema",
    "labels",
    "min_length",
    "model",
    "parse_validate_spec",
    "pattern",
]
