"""MindRoute: an admin and analytics console in front of AI providers."""

__version__ = "0.1.0"
