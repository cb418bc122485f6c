"""Thin Ray adapters: datasources, map_batches callables, train loops, Tune, Serve."""
