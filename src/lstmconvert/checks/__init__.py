"""Numeric proof in the real runtimes: ``verify`` (does DST compute what SRC computes?) and
``roundtrip`` (does a model survive a trip through each format, bit for bit?).

Importing this package imports no framework; running a check imports the formats it touches.
"""

from .check import verify
from .report import CaseResult, HopResult, RoundtripReport, VerifyReport
from .roundtrip import roundtrip

__all__ = ["verify", "roundtrip", "VerifyReport", "RoundtripReport", "CaseResult", "HopResult"]
