"""Tracking: per-SA state machines that turn decode events into the model."""
