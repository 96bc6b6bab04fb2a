"""gkd: distil an LLM's reading of a text-attributed graph into a small GNN, on Ray."""

__version__ = "0.1.0"
