"""Integrations with other tools, each in its own module and imported by its own name (their dependencies are
optional extras): ``genguard.integrations.openai_sdk`` for the official openai SDK (``genguard.wrap``,
``genguard.check``), ``genguard.integrations.otel`` for OpenTelemetry and ``genguard.integrations.ray_data``
for Ray Data."""
