"""The payer's key: a keystore with its password in the environment, or a raw key there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from nanotoll.owner.errors import OwnerError
from nanotoll.owner.payer import KEYSTORE_PASSWORD_ENV, PAYER_KEY_ENV, payer_account

KEY = "0x" + "11" * 32


def _keystore(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "payer.json"
    # pbkdf2 with few rounds keeps the test fast; the format is the same as a real one.
    path.write_text(json.dumps(Account.encrypt(KEY, password, kdf="pbkdf2", iterations=2)))
    return path


def test_keystore_with_its_password(tmp_path: Path) -> None:
    path = _keystore(tmp_path, "right")
    account = payer_account(path, {KEYSTORE_PASSWORD_ENV: "right"})
    assert account.address == Account.from_key(KEY).address


def test_keystore_with_the_wrong_password_says_so(tmp_path: Path) -> None:
    path = _keystore(tmp_path, "right")
    with pytest.raises(OwnerError, match=f"wrong password .*{KEYSTORE_PASSWORD_ENV}"):
        payer_account(path, {KEYSTORE_PASSWORD_ENV: "wrong"})


def test_keystore_without_a_password_or_file(tmp_path: Path) -> None:
    path = _keystore(tmp_path, "right")
    with pytest.raises(OwnerError, match=f"set {KEYSTORE_PASSWORD_ENV}"):
        payer_account(path, {})
    with pytest.raises(OwnerError, match="cannot read it"):
        payer_account(tmp_path / "missing.json", {KEYSTORE_PASSWORD_ENV: "x"})
    (tmp_path / "notes.json").write_text("not json")
    with pytest.raises(OwnerError, match="not a JSON keystore"):
        payer_account(tmp_path / "notes.json", {KEYSTORE_PASSWORD_ENV: "x"})


def test_raw_key_from_the_environment() -> None:
    assert payer_account(None, {PAYER_KEY_ENV: KEY}).address == Account.from_key(KEY).address
    with pytest.raises(OwnerError, match="--keystore FILE"):
        payer_account(None, {})
    with pytest.raises(OwnerError, match="does not hold a private key"):
        payer_account(None, {PAYER_KEY_ENV: "0x1234"})
