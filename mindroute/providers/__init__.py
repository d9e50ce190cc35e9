"""Adapters for the AI providers MindRoute sits in front of, one module per concern."""
