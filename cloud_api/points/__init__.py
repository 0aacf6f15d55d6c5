"""Points: the ledger's HTTP face (staff movements with insider controls, residents' history and
proofs, public roots and totals)."""
