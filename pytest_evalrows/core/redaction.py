"""Keeping secrets out of everything the plugin saves or prints. Pure: imports no pytest.

A secret reaches a command line in many ways, and the attempt record keeps the command line:
``--eval-api-key KEY``, ``--eval-api-key=KEY``, ``-o eval_api_key=KEY`` (also
``-oeval_api_key=KEY``, ``--override-ini`` with a space or ``=``), credentials in a URL
(``--eval-store http://user:KEY@host``, in any argument), and the like for other tools
(``evalrows serve --token``). ``redacted`` hides each of them; ``scrub_url_credentials`` hides
a URL's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

HIDDEN = "***"

# Options whose value is always a secret: given as the next argument or after "=".
SECRET_FLAGS = frozenset({"--eval-api-key", "--token"})
# Other options and ini keys are taken for secrets by their name: --openai-api-key,
# --hf-token, -o my_plugin_password=... A secret shown is worse than a setting hidden.
_SECRET_FLAG = re.compile(r"--(?:[\w-]*[-_])?(?:api-?key|key|token|secret|password)", re.I)
# -o/--override-ini, alone or ending a cluster of short flags (-vo): the next argument is
# an ini override.
_OVERRIDE_FLAG = re.compile(r"--override-ini|-[A-Za-z]*o")
# An ini key set through -o/--override-ini ("-o" "k=v", "-ok=v", "--override-ini=k=v",
# "-vok=v"): everything after its "=" is the value.
_SECRET_INI = re.compile(
    r"(?P<key>(?:eval_api_key|[\w.-]*[_.](?:api_?key|key|token|secret|password))\s*=).*",
    re.IGNORECASE | re.DOTALL,
)
# user:password@ or token@ in a URL's authority: from "scheme://" to its last "@" before
# the path, query, fragment or a space (a password may hold an unescaped "@").
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]+@")
# A query parameter named like a credential: ?api_key=..., &token=..., &X-Amz-Signature=...
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&;][^=&#\s]*(?:key|token|secret|passw|pwd|auth|signature|credential)"
    r"[^=&#\s]*=)[^&#\s]*",
    re.IGNORECASE,
)


def redacted(args: Iterable[object]) -> list[str]:
    """The command line as recorded: every secret in it replaced by ``***``."""
    result: list[str] = []
    hide_next = hide_value = override_next = False
    for arg in map(str, args):
        if hide_next or (hide_value and not arg.startswith("-")):
            hide_next = hide_value = False
            result.append(HIDDEN)
            continue
        hide_value = False
        name, equals, _ = arg.partition("=")
        if name in SECRET_FLAGS or _SECRET_FLAG.fullmatch(name):
            if equals:
                result.append(f"{name}={HIDDEN}")
            else:
                result.append(arg)
                # Ours take a value whatever it looks like; a flag only named like a secret
                # may take none, so an option after it is kept.
                hide_next = name in SECRET_FLAGS
                hide_value = not hide_next
            continue
        if override_next or arg.startswith("-"):
            # Test paths and node ids are left alone, even one like test_x[sort_key=a].
            arg = _SECRET_INI.sub(rf"\g<key>{HIDDEN}", arg, count=1)
        override_next = _OVERRIDE_FLAG.fullmatch(arg) is not None
        result.append(scrub_url_credentials(arg))
    return result


def scrub_url_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it hidden: ``scheme://***@host``, and
    ``***`` for the value of a query parameter named like a credential."""
    if "://" not in text:  # most text holds no URL: leave it at one scan
        return text
    text = _USERINFO.sub(rf"\g<scheme>{HIDDEN}@", text)
    return _QUERY_SECRET.sub(rf"\g<name>{HIDDEN}", text)


def public_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to print."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
