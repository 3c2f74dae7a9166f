"""The failure model, sans I/O: bytes, status and headers in, an Outcome out. Imports no httpx, socket or sqlite3."""
