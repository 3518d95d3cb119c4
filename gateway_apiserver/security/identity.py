"""Who is calling: the user info that authentication produces and authorization and impersonation consume."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A Kubernetes user: name, uid, groups and extra attributes (as in `user.Info`)."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def with_authenticated_group(self) -> UserInfo:
        """Every authenticated user also belongs to system:authenticated, as in the kube-apiserver."""
        if AUTHENTICATED in self.groups or self.name == ANONYMOUS.name:
            return self
        return UserInfo(self.name, self.uid, (*self.groups, AUTHENTICATED), self.extra)


ANONYMOUS = UserInfo("system:anonymous", groups=(UNAUTHENTICATED,))
USER_KEY = web.RequestKey("user", UserInfo)


def request_user(request: web.Request) -> UserInfo:
    """The caller of this request, as authentication established it (anonymous if it did not run)."""
    user = request.get(USER_KEY)
    return user if isinstance(user, UserInfo) else ANONYMOUS


def authenticated_name(request: web.BaseRequest) -> str:
    """The name authentication gave the caller of `request`; "" before it ran or when it refused the caller.

    As in the kube-apiserver's audit log: a request refused with 401 has no user, while an anonymous
    request (no credential, and anonymous access allowed) is `system:anonymous`.
    """
    user = request.get(USER_KEY)
    return user.name if isinstance(user, UserInfo) else ""
