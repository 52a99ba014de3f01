"""Payloads decoded for display, never executed: ``payload`` (the zlib, base64,
JSON and msgpack layers, and the entry point ``decode``), ``pickles`` (pickles
read by walking their opcodes), ``values`` (the display values and ``render``),
``tracebacks`` (exception type and message out of traceback text)."""
