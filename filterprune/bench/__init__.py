"""Measuring models: MACs/params/seed FLOPs (counting) and latency (latency)."""
