"""The root of the platform's user-facing errors.

The CLI turns any `MlopsError` (and the library errors listed in `USER_ERRORS`) into one red line
and a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from components.registry import RegistryError
from components.schema import SchemaError


class MlopsError(RuntimeError):
    """A user-facing failure whose message says what was expected and what to do next."""


USER_ERRORS: tuple[type[Exception], ...] = (MlopsError, RegistryError, SchemaError)
