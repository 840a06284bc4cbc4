"""Reading an agent URI: http and https only, a bounded size and a bounded time.

ipfs://, data: and the rest are refused by name rather than half-supported: a device's
tool that follows any scheme it is handed would read local files (file://) on request.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

from .errors import IdentityError
from .registration import MAX_REGISTRATION_BYTES

FETCHED_SCHEMES = ("http", "https")
FETCH_TIMEOUT = 10.0  # seconds for the connection and each read


def fetch_document(uri: str, limit: int = MAX_REGISTRATION_BYTES,
                   timeout: float = FETCH_TIMEOUT) -> bytes:
    """The body at ``uri``; :class:`IdentityError` for another scheme, an unreachable
    host, a status other than 200 or a body over ``limit`` bytes."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme not in FETCHED_SCHEMES:
        raise IdentityError(f"agent URI {uri!r}: scheme {scheme or '(none)'!r} is not "
                            f"fetched (only {' and '.join(FETCHED_SCHEMES)})")
    request = urllib.request.Request(uri, headers={"Accept": "application/json"})
    # No redirects: a 3xx to file:// or another scheme must not be followed quietly.
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            if response.status != 200:
                raise IdentityError(f"agent URI {uri}: HTTP {response.status}")
            body = bytes(response.read(limit + 1))
    except urllib.error.HTTPError as exc:
        raise IdentityError(f"agent URI {uri}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise IdentityError(f"agent URI {uri} is unreachable: {reason}") from None
    if len(body) > limit:
        raise IdentityError(f"agent URI {uri}: the document is over {limit} bytes")
    return body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} not followed",
                                     headers, fp)
