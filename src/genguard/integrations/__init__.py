"""genguard on top of other libraries: the official openai SDK (``genguard.wrap``, ``genguard.check``)."""
