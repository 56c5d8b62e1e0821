"""payguard: the payment-security layer of InstaBids, and the tooling that deploys and tests it."""

from importlib.metadata import version

__version__ = version("payguard")
