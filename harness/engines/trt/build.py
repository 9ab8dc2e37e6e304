"""ONNX -> strongly typed TensorRT network -> serialized plan.

Every function takes the TensorRT module as its first argument, so the same code runs with
`tensorrt` in the engine and with `tensorrt_rtx` (whose builder and ONNX parser work without
a GPU) in the tests.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .settings import BuildSettings

#: Logger severities kept for error messages (INFO/VERBOSE are noise in a one-line reason).
KEPT_SEVERITIES = ("INTERNAL_ERROR", "ERROR", "WARNING")


class ParserRefusal(Exception):
    """TensorRT's ONNX parser refused the model; `messages` are the parser's own words."""

    def __init__(self, model: Path, messages: list[str]):
        self.model, self.messages = model, messages
        text = f"tensorrt's ONNX parser refused {Path(model).name}: " + " | ".join(messages)
        super().__init__(" ".join(text.split()))  # one line: it becomes the result's reason


class BuildError(Exception):
    """The builder returned no plan; the message carries what the builder logged."""


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold Python's cyclic garbage collector off during a TensorRT call that may log.

    TensorRT calls a Python logger from inside its own locks. A collection triggered by an
    allocation inside that callback can destroy an unreachable TensorRT object (a builder
    left in a reference cycle, e.g. by a stored traceback), whose destructor takes the same
    lock: the process hangs. Seen with tensorrt-rtx in the test suite (a builder and parser
    kept alive by a ParserRefusal's traceback, collected inside the next build's logging);
    pausing the collector, or freeing those objects before raising, each removed the hang.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# Keyed by the library's ILogger class: one entry per TensorRT library loaded (tensorrt,
# tensorrt_rtx), whatever name a module is imported under.
_LOGGER_CLASSES: dict[type, type] = {}
_LOGGERS: dict[type, Any] = {}


def _logger_class(trt: Any) -> type:
    """One class per TensorRT module, made once: a class built per call would itself be a
    reference cycle, i.e. more work for the collector (see gc_paused)."""
    key = trt.ILogger
    if key not in _LOGGER_CLASSES:

        class RecordingLogger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)  # pybind11 trampoline: the base must be initialised
                self.records: list[tuple[str, str]] = []

            def log(self, severity: Any, msg: str) -> None:
                name = getattr(severity, "name", str(severity)).rsplit(".", 1)[-1]
                if name in KEPT_SEVERITIES:
                    self.records.append((name, msg))
                    # what TensorRT's own logger would have printed; the records feed our
                    # messages, this keeps the full text in the log
                    print(f"[TensorRT] {name}: {msg}", file=sys.stderr)

            def errors(self, since: int = 0) -> list[str]:
                return [m for s, m in self.records[since:] if s != "WARNING"]

            def warnings(self, since: int = 0) -> list[str]:
                return [m for s, m in self.records[since:] if s == "WARNING"]

        _LOGGER_CLASSES[key] = RecordingLogger
    return _LOGGER_CLASSES[key]


def make_logger(trt: Any) -> Any:
    """The process's one TensorRT logger: it keeps warnings and errors, to put them into our
    messages; callers take `len(logger.records)` as a mark and read what came after it.

    One per process, for builders, parsers and runtimes alike, because TensorRT keeps a
    single global logger: the first one registered (by a Runtime, Builder or Refitter) is
    used for everything while any of them lives, and a different one passed later is
    ignored with the warning "The logger passed into createInferBuilder differs from one
    already registered". A native trt.Logger given to the Runtime first therefore swallowed
    every build message. It lives for the process (never collected, so TensorRT never calls
    into a freed object); call TensorRT under gc_paused() where it may log."""
    key = trt.ILogger
    if key not in _LOGGERS:
        _LOGGERS[key] = _logger_class(trt)()
    return _LOGGERS[key]


@dataclass
class ParserMessage:
    """One IParserError, copied out of the parser (the parser object does not outlive us)."""

    node: int
    node_name: str
    operator: str
    code: str
    desc: str

    def __str__(self) -> str:
        where = f"node {self.node}" if self.node >= 0 else "model"
        if self.operator:
            where += f" ({self.operator}{' ' + repr(self.node_name) if self.node_name else ''})"
        return f"{where}: {self.code}: {self.desc}"


def parser_messages(parser: Any) -> list[ParserMessage]:
    out = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        code = e.code()
        out.append(ParserMessage(node=int(e.node()), node_name=str(e.node_name()),
                                 operator=str(e.node_operator()),
                                 code=str(getattr(code, "name", code)), desc=str(e.desc())))
    return out


def network_flags(trt: Any) -> int:
    """STRONGLY_TYPED: tensor types come from the graph (Q/DQ nodes decide int8), the
    builder may not pick other precisions. TensorRT 11 is always strongly typed and still
    accepts the flag."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


@dataclass
class ParsedNetwork:
    builder: Any
    network: Any
    parser: Any  # kept alive: the network may reference weights the parser owns
    strongly_typed: bool
    warnings: list[str] = field(default_factory=list)


def parse_onnx(trt: Any, model: Path, logger: Any) -> ParsedNetwork:
    """Parse `model` into a strongly typed network; raise ParserRefusal with the parser's
    errors (and the logger's error lines, which name the failing assertion) on refusal."""
    mark = len(getattr(logger, "records", []))
    with gc_paused():
        builder = trt.Builder(logger)
        network = builder.create_network(network_flags(trt))
        parser = trt.OnnxParser(network, logger)
        # parse_from_file, not parse(bytes): it resolves external weight files beside the model
        ok = parser.parse_from_file(str(model))
    if not ok:
        messages = [str(m) for m in parser_messages(parser)]
        if not messages and hasattr(logger, "errors"):
            messages = logger.errors(mark)
        # Free them now, by reference count: the exception's traceback would otherwise keep
        # them alive until some later garbage collection (see gc_paused).
        del parser, network, builder
        raise ParserRefusal(Path(model), messages or ["no error message (parse returned False)"])
    # Asked back from the network rather than assumed from the flags we passed.
    get_flag = getattr(network, "get_flag", None)
    strongly_typed = bool(get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
                          if get_flag else network_flags(trt) & getattr(network, "flags", 0))
    warnings = [m for s, m in getattr(logger, "records", [])[mark:] if s == "WARNING"]
    return ParsedNetwork(builder, network, parser, strongly_typed, warnings)


def builder_config(trt: Any, builder: Any, settings: BuildSettings) -> Any:
    config = builder.create_builder_config()
    config.builder_optimization_level = settings.optimization_level
    # TensorRT sets TF32 by default: float convolutions and matrix multiplies left by the
    # recipe (the float decode tail, float biases) may then run on TF32 tensor cores (10-bit
    # mantissa). The CPU engines and the golden compute those layers in fp32, so the
    # comparison keeps fp32 unless tf32=1 is asked for (recorded, part of the cache key).
    if settings.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    config.profiling_verbosity = getattr(trt.ProfilingVerbosity, settings.profiling_verbosity)
    if settings.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    return config


@dataclass
class BuildResult:
    plan: bytes
    timing_cache: bytes | None
    timing_cache_status: str  # "reused", "new", "rejected (…)", or "unsupported"


def _attach_timing_cache(config: Any, data: bytes | None) -> str:
    """Load a saved timing cache into the config. TensorRT checks that it matches this
    device/version (ignore_mismatch=False); a mismatching one is replaced by an empty one."""
    if data:
        try:
            cache = config.create_timing_cache(data)
            if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
                return "reused"
            status = "rejected by TensorRT (other device or version); started empty"
        except Exception as e:  # unreadable bytes: TensorRT may raise instead of refusing
            status = f"unreadable ({type(e).__name__}: {e}); started empty"
    else:
        status = "new"
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return status


def build_plan(trt: Any, parsed: ParsedNetwork, settings: BuildSettings, logger: Any,
               timing_cache: bytes | None = None) -> BuildResult:
    """build_serialized_network with our settings and the timing cache; plan bytes out."""
    mark = len(getattr(logger, "records", []))
    with gc_paused():
        config = builder_config(trt, parsed.builder, settings)
        status = _attach_timing_cache(config, timing_cache)
        serialized = parsed.builder.build_serialized_network(parsed.network, config)
    if serialized is None:
        errors = logger.errors(mark) if hasattr(logger, "errors") else []
        raise BuildError("tensorrt could not build the engine: "
                         + (" | ".join(errors) or "build_serialized_network returned None"))
    with gc_paused():
        new_cache = config.get_timing_cache()
        cache_bytes = bytes(memoryview(new_cache.serialize())) if new_cache is not None else None
    return BuildResult(bytes(memoryview(serialized)), cache_bytes, status)
