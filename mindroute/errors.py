"""Exceptions shared by services, pages and the API."""

from mindroute.validation import ValidationError


class PermissionDenied(Exception):
    """The signed-in user's role does not allow this action."""


class NotFound(Exception):
    """The thing asked for does not exist, or is not visible to the caller."""


__all__ = ["NotFound", "PermissionDenied", "ValidationError"]
