"""Moved to ``nasflow._payload`` (the engine packs, the worker loads: neither owns it, and
the engine importing ``nasflow.worker`` made a cycle); kept so that older imports work."""

from nasflow._payload import Payload as Payload
from nasflow._payload import SpilledPayload as SpilledPayload
from nasflow._payload import digest as digest
from nasflow._payload import load as load
from nasflow._payload import pack as pack
from nasflow._payload import read_spilled as read_spilled
from nasflow._payload import spill as spill
from nasflow.exceptions import PayloadError as PayloadError

__all__ = ["Payload", "PayloadError", "SpilledPayload", "digest", "load", "pack", "read_spilled",
           "spill"]
