"""The JSON documents qparity writes, as typed records (see base.py); bottom-level, stdlib only.

Published records (their JSON Schemas in docs/schema, see docs/records.md): the engine result
(result.py), the evaluation report (report.py) and the preflight verdict (preflight.py).
"""

from .base import Record, RecordError, Section, version_message
from .preflight import PreflightVerdict, read_preflight
from .report import EvalReport, read_report, read_report_record
from .result import EngineResult

__all__ = ["EngineResult", "EvalReport", "PreflightVerdict", "Record", "RecordError", "Section",
           "read_preflight", "read_report", "read_report_record", "version_message"]
