"""genguard inside other tools: each module here is an optional integration, imported by its own name."""
