"""Moved to the kernel (``nasflow._kernel``); kept so that older imports keep working."""

from nasflow._kernel._objective import Objective as Objective
from nasflow._kernel._objective import to_number as to_number

__all__ = ["Objective", "to_number"]
