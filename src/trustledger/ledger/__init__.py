"""The ledger area."""
