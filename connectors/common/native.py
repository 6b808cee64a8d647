"""Base and field types for native records.

Native models describe what a system puts on the wire, not what it means: every value stays
the string the system wrote ("2026/11/24", "1,200,000.00", "02"), so that reading it (and
refusing it with the field, the value and the rule) happens in one place, the mapping. The
models only check shape and size, which is where "oversize" rejections come from.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class NativeModel(BaseModel):
    # Unknown fields are refused rather than dropped: a field the mapping does not know is
    # data that would silently vanish on its way to the other systems.
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Canonical approval types this native entity carries (OA keeps several kinds apart).
    canonical_types: ClassVar[tuple[str, ...]] = ()


# Column widths as such systems declare them; a longer value is an "oversize" rejection.
S2 = Annotated[str, Field(max_length=2)]
S4 = Annotated[str, Field(max_length=4)]
S10 = Annotated[str, Field(max_length=10)]
S20 = Annotated[str, Field(max_length=20)]
S40 = Annotated[str, Field(max_length=40)]
S80 = Annotated[str, Field(max_length=80)]
S120 = Annotated[str, Field(max_length=120)]
S200 = Annotated[str, Field(max_length=200)]
S500 = Annotated[str, Field(max_length=500)]
S2000 = Annotated[str, Field(max_length=2000)]

Code = S10
DateStr = S20
DateTimeStr = Annotated[str, Field(max_length=25)]
AmountStr = Annotated[str, Field(max_length=30)]
