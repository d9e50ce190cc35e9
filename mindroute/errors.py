"""Exceptions shared by services, pages and the API."""

from mindroute.validation import ValidationError


class PermissionDenied(Exception):  # noqa: N818 - reads better at the raise site
    """The signed-in user's role does not allow this action."""


class NotFound(Exception):  # noqa: N818 - reads better at the raise site
    """The thing asked for does not exist, or is not visible to the caller."""


class ConflictError(Exception):
    """The row changed since the editor loaded it: saving would silently undo someone else's change."""


class CommandError(Exception):
    """A command-line command failed in a way the user can fix; printed as one line."""


__all__ = ["CommandError", "ConflictError", "NotFound", "PermissionDenied", "ValidationError"]
