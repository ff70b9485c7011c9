"""Bridges between rhlab and other evaluation frameworks (each an optional extra)."""
