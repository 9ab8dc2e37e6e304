"""The JSON documents qparity writes, as typed records (see base.py); bottom-level, stdlib only."""

from .base import Record, RecordError, Section, version_message

__all__ = ["Record", "RecordError", "Section", "version_message"]
