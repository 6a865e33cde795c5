"""trustledger: trust scores with reasons, consent and contestability built in."""

from trustledger.errors import TrustLedgerError

__all__ = ["TrustLedgerError", "__version__"]
__version__ = "0.1.0"
