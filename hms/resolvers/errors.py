"""GraphQL errors a client can act on; each carries a stable ``extensions.code``."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError


class ClientError(GraphQLError):
    """Base for errors caused by the request (never masked, never include internals)."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": self.code, **extensions})


class BadUserInput(ClientError):
    code = "BAD_USER_INPUT"


class Forbidden(ClientError):
    code = "FORBIDDEN"
