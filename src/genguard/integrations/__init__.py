"""Integrations with other tools, each in its own module and imported by its own name (their dependencies are
optional extras): ``genguard.integrations.otel`` for OpenTelemetry."""
