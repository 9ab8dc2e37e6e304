"""Typed records: dataclasses that are the JSON qparity writes, read back with their types checked.

A `Record` is a versioned top-level document (an engine result, the evaluation report, the
preflight verdict, the nightly report); a `Section` is a typed part of one (metrics, latency).
`to_json()` gives exactly the dict written to disk; `from_json()` reads one back and raises
`RecordError` naming the field and the problem (a missing field, a wrong type, a NaN where a
number is read, an unknown status, a schema version this qparity does not read). `json_schema()`
derives a JSON Schema (draft 2020-12) from the same type hints, so the published schema and the
reader can never disagree.

Field types understood: bool, int, float (finite only), str, None, Literal[...], list[T],
dict[str, T], unions of these, nested Sections, and Any (free-form, not checked: environment
facts and engine descriptions, whose keys belong to the engine library).

This module is bottom-level: standard library only, so reading a record never imports numpy,
OpenCV or pycocotools.
"""

from __future__ import annotations

import functools
import math
import types
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T", bound="Section")

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class RecordError(ValueError):
    """A JSON document that is not the record it claims to be; the message is one line naming
    the field and the problem, for the caller to prefix with the file's name."""


@dataclass
class Section:
    """A typed part of a record. Unknown keys are refused: a field qparity did not write is a
    file from elsewhere or a typo, and would otherwise be silently ignored."""

    #: Whether keys that are not fields are refused (True) or dropped (False).
    STRICT: ClassVar[bool] = True
    #: The fields this section holds, in the order it got them, as a dict would: the keys of
    #: the JSON it was read from (from_json) or given to `sparse()`, then those set since.
    #: None for a section built in code: it holds every field, in field order.
    _keys: ClassVar[tuple[str, ...] | None] = None

    def __setattr__(self, name: str, value: Any) -> None:
        keys = self._keys
        if keys is not None and name not in keys:  # set now: held from now on, last
            object.__setattr__(self, "_keys", (*keys, name))
        object.__setattr__(self, name, value)

    @classmethod
    def sparse(cls: type[T], **given: Any) -> T:
        """A section holding only the fields `given`, in that order (and those set later): the
        others take their defaults but stay out of `to_json(omit_absent=True)`."""
        obj = cls(**given)
        object.__setattr__(obj, "_keys", tuple(given))
        return obj

    def has(self, name: str) -> bool:
        """Whether the field was in the JSON read (or given to sparse(), or set since)."""
        return self._keys is None or name in self._keys

    def field_names(self) -> list[str]:
        """The fields this section holds, in order (see `has`)."""
        return [f.name for f in fields(self)] if self._keys is None else list(self._keys)

    def to_json(self, omit_absent: bool = False) -> dict[str, Any]:
        """The JSON of every field, in field order; with `omit_absent`, of the fields this
        section holds (`has`), in the order it got them, all the way down: a record read and
        written back is then the JSON it was read from, key for key. (A field it does not hold
        but whose default was changed in place, a list appended to, is written too, last.)"""
        if not omit_absent or self._keys is None:
            return {f.name: _dump(getattr(self, f.name), omit_absent) for f in fields(self)}
        names = [*self._keys, *(f.name for f in fields(self)
                                if f.name not in self._keys and not _is_default(self, f))]
        return {n: _dump(getattr(self, n), True) for n in names}

    @classmethod
    def from_json(cls: type[T], data: Any, where: str = "") -> T:
        if not isinstance(data, dict):
            raise RecordError(f"{where or cls.__name__} is not an object (a JSON "
                              f"{_json_type(data)})")
        hints = _hints(cls)
        names = {f.name for f in fields(cls)}
        skip = {"schema"} if issubclass(cls, Record) else set()
        unknown = sorted(k for k in data if k not in names and k not in skip)
        if unknown and cls.STRICT:
            raise RecordError(f"{_at(where, unknown[0])} is not a field of {cls.__name__}")
        kwargs = {}
        for f in fields(cls):
            path = _at(where, f.name)
            if f.name in data:
                kwargs[f.name] = _load(hints[f.name], data[f.name], path)
            elif f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
                raise RecordError(f"{path} is missing")
        obj = cls(**kwargs)
        object.__setattr__(obj, "_keys", tuple(k for k in data if k in names))
        return obj

    @classmethod
    def json_schema(cls, defs: dict[str, Any] | None = None) -> dict[str, Any]:
        """This section's schema; nested sections go into `defs` (by class name)."""
        own = defs is None
        defs = {} if own else defs
        hints = _hints(cls)
        props, required = {}, []
        for f in fields(cls):
            props[f.name] = _schema(hints[f.name], defs)
            doc = f.metadata.get("doc")
            if doc:
                props[f.name]["description"] = doc
            if f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
                required.append(f.name)
        out: dict[str, Any] = {"type": "object", "properties": props, "required": required,
                               "additionalProperties": not cls.STRICT}
        if cls.__doc__:
            out["description"] = " ".join(cls.__doc__.split())
        return out


@dataclass
class Record(Section):
    """A top-level document with a kind and a schema version, written as `"schema": VERSION`."""

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def to_json(self, omit_absent: bool = False) -> dict[str, Any]:
        return {"schema": self.VERSION, **super().to_json(omit_absent)}

    @classmethod
    def from_json(cls: type[T], data: Any, where: str = "") -> T:
        if isinstance(data, dict):
            v = data.get("schema")
            if v != cls.VERSION:  # type: ignore[attr-defined]
                raise RecordError(version_message(cls.KIND, v, cls.VERSION))  # type: ignore[attr-defined]
        elif data is not None:
            raise RecordError(f"not a {cls.KIND} record (a JSON {_json_type(data)})")  # type: ignore[attr-defined]
        return super().from_json(data, where)  # type: ignore[misc]

    @classmethod
    def json_schema(cls, defs: dict[str, Any] | None = None) -> dict[str, Any]:
        own = {} if defs is None else defs
        body = super().json_schema(own)
        body["properties"] = {"schema": {"const": cls.VERSION,
                                         "description": f"{cls.KIND} schema version"},
                              **body["properties"]}
        body["required"] = ["schema", *body["required"]]
        if defs is not None:
            return body
        return {"$schema": JSON_SCHEMA_DIALECT, "$id": f"qparity.{cls.KIND}.v{cls.VERSION}",
                "title": f"qparity {cls.KIND}, schema version {cls.VERSION}", **body,
                **({"$defs": dict(sorted(own.items()))} if own else {})}


def version_message(kind: str, found: Any, reads: int) -> str:
    if isinstance(found, int) and not isinstance(found, bool) and found < reads:
        return (f"{kind} schema version {found} was written by an older qparity; this one reads "
                f"version {reads}: re-run it, or read it with the qparity that wrote it")
    if isinstance(found, int) and not isinstance(found, bool) and found > reads:
        return (f"{kind} schema version {found} was written by a newer qparity; this one reads "
                f"version {reads}: upgrade qparity to read it")
    return f"schema is {found!r}, not a {kind} record of version {reads}"


# --- conversion -------------------------------------------------------------------------------

@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # resolved once per class: get_type_hints evaluates every annotation string each call,
    # which was most of the time `qparity collect` spent reading its records
    return get_type_hints(cls, include_extras=False)


def _at(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), type(v).__name__)


def _dump(v: Any, omit_absent: bool = False) -> Any:
    if isinstance(v, Section):
        return v.to_json(omit_absent)
    if isinstance(v, list):
        return [_dump(x, omit_absent) for x in v]
    if isinstance(v, dict):
        return {k: _dump(x, omit_absent) for k, x in v.items()}
    return v


def _is_default(obj: Section, f: Any) -> bool:
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    return getattr(obj, f.name) == default


def dig(data: Any, *keys: str) -> Any:
    """The value at `keys` in free-form JSON (a result's `env`, `engine_info`, `census`, whose
    keys belong to a library): None where a level is missing or not an object."""
    for k in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(k)
    return data


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _load(tp: Any, v: Any, where: str) -> Any:
    if tp is Any:
        return v
    if _is_union(tp):
        args = get_args(tp)
        if v is None:
            if type(None) in args:
                return None
            raise RecordError(f"{where} is null")
        problems = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _load(a, v, where)
            except RecordError as e:
                problems.append(str(e))
        raise RecordError(problems[0] if len(problems) == 1 else
                          f"{where} is {_json_type(v)} {_short(v)}, not "
                          f"{' or '.join(_type_name(a) for a in args)}")
    if tp is type(None):
        if v is not None:
            raise RecordError(f"{where} is {_short(v)}, not null")
        return None
    origin = get_origin(tp)
    if origin is Literal:
        if v not in get_args(tp) or isinstance(v, bool) != any(isinstance(a, bool) for a in get_args(tp)):
            raise RecordError(f"{where} is {_short(v)}, not one of "
                              f"{', '.join(repr(a) for a in get_args(tp))}")
        return v
    if origin is list:
        if not isinstance(v, list):
            raise RecordError(f"{where} is {_json_type(v)}, not an array")
        (item,) = get_args(tp) or (Any,)
        return [_load(item, x, f"{where}[{i}]") for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, dict):
            raise RecordError(f"{where} is {_json_type(v)}, not an object")
        _, item = get_args(tp) or (str, Any)
        return {k: _load(item, x, _at(where, k)) for k, x in v.items()}
    if isinstance(tp, type) and issubclass(tp, Section):
        return tp.from_json(v, where)
    if tp is bool:
        if not isinstance(v, bool):
            raise RecordError(f"{where} is {_json_type(v)} {_short(v)}, not a boolean")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise RecordError(f"{where} is {_json_type(v)} {_short(v)}, not an integer")
        return v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RecordError(f"{where} is {_json_type(v)} {_short(v)}, not a number")
        if not math.isfinite(v):
            raise RecordError(f"{where} is {v}, not a finite number")
        return v  # an integer stays one (it is a number): written back, the JSON is unchanged
    if tp is str:
        if not isinstance(v, str):
            raise RecordError(f"{where} is {_json_type(v)} {_short(v)}, not a string")
        return v
    raise TypeError(f"record field type {tp!r} at {where} is not supported")  # a coding error


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return "an array"
    if get_origin(tp) is dict:
        return "an object"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if tp is Any:
        return {}
    if _is_union(tp):
        return {"anyOf": [_schema(a, defs) for a in get_args(tp)]}
    if tp is type(None):
        return {"type": "null"}
    origin = get_origin(tp)
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        return {"type": "array", "items": _schema(item, defs)}
    if origin is dict:
        _, item = get_args(tp) or (str, Any)
        return {"type": "object", "additionalProperties": _schema(item, defs)}
    if isinstance(tp, type) and issubclass(tp, Section):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder first: a section may refer to itself
            defs[name] = tp.json_schema(defs)
        return {"$ref": f"#/$defs/{name}"}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if tp in simple:
        return {"type": simple[tp]}
    raise TypeError(f"record field type {tp!r} is not supported")


__all__ = ["Record", "RecordError", "Section", "dig", "version_message"]
