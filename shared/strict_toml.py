"""Strict reading of TOML configuration: every key is typed, and an unknown key is an error.

A `Table` wraps one TOML table. Readers take keys out of it by name and type; `finish()`
raises if any key was left unread, which is how misspelled keys are caught. Every error names
the file and the dotted key, so an administrator can find the line at once.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_MISSING = object()


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


def load_toml(path: Path) -> Table:
    """Parse a TOML file into a root `Table`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the configuration file is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return Table(data, file=path, prefix="")


class Table:
    """One TOML table being read; see the module docstring."""

    def __init__(self, data: dict[str, object], *, file: Path, prefix: str) -> None:
        self._data = dict(data)
        self.file = file
        self.prefix = prefix

    def key_name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> ConfigError:
        """An error about `key` in this table, naming the file and the dotted key."""
        return ConfigError(f"{self.file}: {self.key_name(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self._data

    def _take(self, key: str, default: object) -> object:
        if key in self._data:
            return self._data.pop(key)
        if default is _MISSING:
            raise self.error(key, "is required")
        return default

    def string(self, key: str, default: str | object = _MISSING) -> str:
        value = self._take(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_describe(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        if key not in self._data:
            return None
        return self.string(key)

    def integer(
        self,
        key: str,
        default: int | object = _MISSING,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self._take(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"expected an integer, got {_describe(value)}")
        _check_range(self, key, value, minimum, maximum)
        return value

    def number(
        self,
        key: str,
        default: float | object = _MISSING,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self._take(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.error(key, f"expected a number, got {_describe(value)}")
        _check_range(self, key, float(value), minimum, maximum)
        return float(value)

    def boolean(self, key: str, default: bool | object = _MISSING) -> bool:
        value = self._take(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_describe(value)}")
        return value

    def string_list(self, key: str, default: list[str] | object = _MISSING) -> list[str]:
        value = self._take(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected a list of strings, got {_describe(value)}")
        return list(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str | object = _MISSING) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def table(self, key: str, *, required: bool = False) -> Table:
        """A sub-table; an absent optional one reads as empty."""
        value = self._take(key, _MISSING if required else {})
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {_describe(value)}")
        return Table(value, file=self.file, prefix=self.key_name(key))

    def tables(self, key: str) -> list[Table]:
        """An array of tables (`[[key]]`); absent reads as an empty list."""
        value = self._take(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, f"expected an array of tables, got {_describe(value)}")
        return [
            Table(item, file=self.file, prefix=f"{self.key_name(key)}[{index}]")
            for index, item in enumerate(value)
        ]

    def parsed(self, key: str, parse: Callable[[str], T], default: T | object = _MISSING) -> T:
        """A string converted by `parse`; a ValueError from it becomes a ConfigError."""
        if key not in self._data:
            if default is _MISSING:
                raise self.error(key, "is required")
            return default  # type: ignore[return-value]
        text = self.string(key)
        try:
            return parse(text)
        except ValueError as exc:
            raise self.error(key, str(exc)) from exc

    def finish(self) -> None:
        """Raise on the first key nobody read (a misspelling or an unsupported option)."""
        for key in self._data:
            raise self.error(key, "unknown key")


def _check_range(
    table: Table, key: str, value: float, minimum: float | None, maximum: float | None
) -> None:
    if minimum is not None and value < minimum:
        raise table.error(key, f"must be at least {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise table.error(key, f"must be at most {maximum}; got {value}")


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return f"{type(value).__name__} {value!r}"
