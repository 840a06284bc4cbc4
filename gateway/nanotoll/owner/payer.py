"""The payer's account: a keystore file whose password is in the environment, or a raw key
in the environment. Never from the command line, where other users and shell histories
would see it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from .errors import OwnerError

PAYER_KEY_ENV = "NANOTOLL_OWNER_KEY"
KEYSTORE_PASSWORD_ENV = "NANOTOLL_KEYSTORE_PASSWORD"


def payer_account(keystore: str | Path | None,
                  environ: Mapping[str, str] | None = None) -> LocalAccount:
    """The account from ``keystore`` (password in NANOTOLL_KEYSTORE_PASSWORD) when one is
    given, else from NANOTOLL_OWNER_KEY."""
    env = os.environ if environ is None else environ
    if keystore is not None:
        return _from_keystore(Path(keystore), env.get(KEYSTORE_PASSWORD_ENV))
    raw = env.get(PAYER_KEY_ENV, "").strip()
    if not raw:
        raise OwnerError(f"no payer key: pass --keystore FILE (its password in "
                         f"{KEYSTORE_PASSWORD_ENV}) or set {PAYER_KEY_ENV}")
    try:
        account: LocalAccount = Account.from_key(raw)
    except (ValueError, TypeError):
        raise OwnerError(f"{PAYER_KEY_ENV} does not hold a private key (64 hex digits)") from None
    return account


def _from_keystore(path: Path, password: str | None) -> LocalAccount:
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise OwnerError(f"keystore {path}: cannot read it ({exc.strerror})") from None
    except ValueError:
        raise OwnerError(f"keystore {path}: not a JSON keystore file") from None
    if password is None:
        raise OwnerError(f"keystore {path}: set {KEYSTORE_PASSWORD_ENV} to its password")
    try:
        key = Account.decrypt(document, password)
    except ValueError as exc:
        # eth-account says "MAC mismatch" for a wrong password; anything else is a damaged file.
        if "MAC mismatch" in str(exc):
            raise OwnerError(f"keystore {path}: wrong password (check "
                             f"{KEYSTORE_PASSWORD_ENV})") from None
        raise OwnerError(f"keystore {path}: cannot decrypt it ({exc})") from None
    except (KeyError, TypeError) as exc:
        raise OwnerError(f"keystore {path}: not a keystore file (missing {exc})") from None
    account: LocalAccount = Account.from_key(key)
    return account
