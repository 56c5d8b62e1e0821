"""payguard: the payment-security layer of InstaBids, and the tooling that deploys and tests it."""

__version__ = "0.1.0"
