"""Base class of every params.yaml section: strict, so a typo is an error, not a default."""

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# YAML has no path type: a path field takes a string (strict mode would refuse it).
PathField = Annotated[Path, Field(strict=False)]


class Section(BaseModel):
    """Unknown keys are refused and values are not coerced across types (no "3" for 3)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
