"""A plugin module whose import fails with an unexpected error (a bug, not a missing library)."""

raise RuntimeError("plugin module is broken on purpose")
