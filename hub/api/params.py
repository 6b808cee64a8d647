"""Bounds shared by the API's integer parameters: store ids are 64-bit, so a larger number is
a 422 at the edge, not an overflow (500) in the database driver."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import Field

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

RowId = Annotated[int, Field(ge=1, le=INT64_MAX)]
PathId = Annotated[int, Path(ge=1, le=INT64_MAX)]
