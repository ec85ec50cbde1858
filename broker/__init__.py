"""The router: verification, trust scoring, release policy, transactions, audit."""
