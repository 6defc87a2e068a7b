"""Domain failures. Each carries a stable code; the web layer turns codes into translated
messages and HTTP statuses in one error handler."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal the user can understand and act on (never a programming error)."""

    code = "DOMAIN_ERROR"
    status = 400

    def __init__(self, detail: str | None = None, **params: object):
        super().__init__(detail or self.code)
        self.detail = detail
        self.params = params


class NotFound(DomainError):
    code = "NOT_FOUND"
    status = 404


class ValidationFailed(DomainError):
    code = "VALIDATION_FAILED"
    status = 422


class Conflict(DomainError):
    code = "CONFLICT"
    status = 409


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"
    status = 403


class LoginRefused(DomainError):
    """Wrong credentials, a locked or an inactive account; the code says which."""

    code = "LOGIN_FAILED"
    status = 401


class AccountLocked(LoginRefused):
    code = "ACCOUNT_LOCKED"
    status = 423


class ReauthenticationFailed(DomainError):
    code = "REAUTH_FAILED"
    status = 403
