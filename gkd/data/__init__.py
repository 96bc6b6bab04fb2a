"""Graph data layer: sources -> canonical graph store (Parquet + CSR + features) -> TAG view."""
