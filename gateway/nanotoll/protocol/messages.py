"""Message schemas of protocol version 1: fixed CBOR arrays, validated on decode.

Every decoder raises ``ProtocolError`` with the code a gateway or device should report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from . import PROTOCOL_VERSION, cbor
from .eip712 import MAX_AMOUNT, catalog_digest, check_amount, check_channel_id, receipt_digest
from .errors import ErrorCode, ProtocolError
from .signing import SignatureError, recover_address, sign_compact
from .voucher import Voucher, VoucherError, unpack

MAX_REQUEST = 512
MAX_RESPONSE = 8192
MAX_CATALOG = 2048
MAX_PARAMS = 16
MAX_REQUEST_ID = (1 << 32) - 1
PRODUCT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
PARAM_KEY = re.compile(r"[a-z][a-z0-9_]{0,15}")


def _fail(message: str, code: ErrorCode = ErrorCode.MALFORMED) -> ProtocolError:
    return ProtocolError(code, message)


def _decode(data: bytes, limit: int) -> Any:
    if len(data) > limit:
        raise _fail(f"{len(data)} bytes, limit {limit}", ErrorCode.TOO_LARGE)
    try:
        return cbor.loads(data, max_size=limit)
    except cbor.CBORError as exc:
        code = ErrorCode.TOO_LARGE if exc.reason == "too-large" else ErrorCode.MALFORMED
        raise _fail(str(exc), code) from exc


def _array(value: Any, length: int, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(f"{what} must be an array")
    if value and value[0] != PROTOCOL_VERSION and isinstance(value[0], int):
        raise _fail(f"{what} version {value[0]}", ErrorCode.UNSUPPORTED_VERSION)
    if len(value) != length:
        raise _fail(f"{what} must have {length} elements, got {len(value)}")
    return value


def _uint(value: Any, what: str, maximum: int = MAX_AMOUNT) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise _fail(f"{what} must be an unsigned integer up to {maximum}")
    return value


def _bytes(value: Any, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise _fail(f"{what} must be {length} bytes")
    return value


def _check_params(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict) or len(params) > MAX_PARAMS:
        raise _fail(f"params must be a map of at most {MAX_PARAMS} entries")
    for key, value in params.items():
        if not isinstance(key, str) or not PARAM_KEY.fullmatch(key):
            raise _fail(f"param key {key!r} is not [a-z][a-z0-9_]{{0,15}}")
        if isinstance(value, dict):
            raise _fail(f"param {key} must not be a map")
    return params


@dataclass(frozen=True, slots=True)
class Request:
    """[1, request_id, product, params, price, catalog_seq, voucher]"""

    request_id: int
    product: str
    params: dict[str, Any]
    price: int
    catalog_seq: int
    voucher: Voucher

    def encode(self) -> bytes:
        return cbor.dumps(
            [
                PROTOCOL_VERSION,
                self.request_id,
                self.product,
                self.params,
                self.price,
                self.catalog_seq,
                self.voucher.pack(),
            ]
        )


def request_hash(encoded_request: bytes) -> bytes:
    return keccak(encoded_request)


def decode_request(data: bytes) -> Request:
    fields = _array(_decode(data, MAX_REQUEST), 7, "request")
    _, request_id, product, params, price, seq, raw_voucher = fields
    _uint(request_id, "request id", MAX_REQUEST_ID)
    if not isinstance(product, str) or not PRODUCT_NAME.fullmatch(product):
        raise _fail("product must be a name matching [a-z][a-z0-9_]{0,31}")
    _check_params(params)
    _uint(price, "price")
    _uint(seq, "catalog seq")
    try:
        voucher = unpack(_bytes(raw_voucher, 76, "voucher"))
    except VoucherError as exc:
        raise _fail(str(exc)) from exc
    return Request(request_id, product, params, price, seq, voucher)


@dataclass(frozen=True, slots=True)
class Receipt:
    """[channel_id, cumulative, request_hash, data_hash, provider_signature]"""

    channel_id: int
    cumulative: int
    request_hash: bytes
    data_hash: bytes
    signature: bytes

    def as_array(self) -> list[Any]:
        return [self.channel_id, self.cumulative, self.request_hash, self.data_hash, self.signature]

    def digest(self, separator: bytes) -> bytes:
        return receipt_digest(
            separator, self.channel_id, self.cumulative, self.request_hash, self.data_hash
        )

    def signer(self, separator: bytes) -> str:
        return recover_address(self.digest(separator), self.signature)


def sign_receipt(
    secret: bytes,
    separator: bytes,
    channel_id: int,
    cumulative: int,
    request_hash_: bytes,
    data: bytes,
) -> Receipt:
    data_hash = keccak(data)
    digest = receipt_digest(separator, channel_id, cumulative, request_hash_, data_hash)
    return Receipt(channel_id, cumulative, request_hash_, data_hash, sign_compact(secret, digest))


def _decode_receipt(value: Any) -> Receipt:
    fields = value if isinstance(value, list) and len(value) == 5 else None
    if fields is None:
        raise _fail("receipt must be an array of 5")
    try:
        check_channel_id(fields[0])
        check_amount(fields[1])
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    return Receipt(
        fields[0],
        fields[1],
        _bytes(fields[2], 32, "request hash"),
        _bytes(fields[3], 32, "data hash"),
        _bytes(fields[4], 64, "receipt signature"),
    )


@dataclass(frozen=True, slots=True)
class Response:
    """[1, request_id, 0, [data, receipt]] or [1, request_id, code, [message, detail]]"""

    request_id: int
    code: ErrorCode
    data: bytes = b""
    receipt: Receipt | None = None
    message: str = ""
    detail: Any = None

    def encode(self) -> bytes:
        if self.code == ErrorCode.OK:
            if self.receipt is None:
                raise ValueError("a successful response carries a receipt")
            body: list[Any] = [self.data, self.receipt.as_array()]
        else:
            body = [self.message, self.detail]
        return cbor.dumps([PROTOCOL_VERSION, self.request_id, int(self.code), body])


def error_response(request_id: int, error: ProtocolError) -> Response:
    return Response(request_id, error.code, message=error.message[:200], detail=error.detail)


def decode_response(data: bytes) -> Response:
    fields = _array(_decode(data, MAX_RESPONSE), 4, "response")
    _, request_id, code, body = fields
    _uint(request_id, "request id", MAX_REQUEST_ID)
    _uint(code, "code", 255)
    if not isinstance(body, list) or len(body) != 2:
        raise _fail("response body must be an array of 2")
    try:
        error_code = ErrorCode(code)
    except ValueError as exc:
        raise _fail(f"unknown error code {code}") from exc
    if error_code == ErrorCode.OK:
        if not isinstance(body[0], bytes):
            raise _fail("response data must be a byte string")
        return Response(request_id, error_code, data=body[0], receipt=_decode_receipt(body[1]))
    if not isinstance(body[0], str):
        raise _fail("error message must be text")
    return Response(request_id, error_code, message=body[0], detail=body[1])


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    unit_price: int
    description: str

    def as_array(self) -> list[Any]:
        return [self.name, self.unit_price, self.description]


@dataclass(frozen=True, slots=True)
class Catalog:
    """[1, provider, seq, valid_from, valid_until, products, signature]"""

    provider: bytes
    seq: int
    valid_from: int
    valid_until: int
    products: tuple[Product, ...]
    signature: bytes

    def products_hash(self) -> bytes:
        return keccak(cbor.dumps([p.as_array() for p in self.products]))

    def digest(self, separator: bytes) -> bytes:
        return catalog_digest(
            separator, self.seq, self.valid_from, self.valid_until, self.products_hash()
        )

    def encode(self) -> bytes:
        return cbor.dumps(
            [
                PROTOCOL_VERSION,
                self.provider,
                self.seq,
                self.valid_from,
                self.valid_until,
                [p.as_array() for p in self.products],
                self.signature,
            ]
        )

    def price_of(self, product: str) -> int | None:
        for item in self.products:
            if item.name == product:
                return item.unit_price
        return None

    def verify(self, separator: bytes) -> None:
        """Raise SignatureError unless the provider address signed this catalog."""
        signer = recover_address(self.digest(separator), self.signature)
        if bytes.fromhex(signer[2:]) != self.provider:
            raise SignatureError(f"catalog signed by {signer}, not its provider")


def sign_catalog(
    secret: bytes,
    separator: bytes,
    provider: bytes,
    seq: int,
    valid_from: int,
    valid_until: int,
    products: tuple[Product, ...],
) -> Catalog:
    unsigned = Catalog(provider, seq, valid_from, valid_until, products, bytes(64))
    signature = sign_compact(secret, unsigned.digest(separator))
    return Catalog(provider, seq, valid_from, valid_until, products, signature)


def decode_catalog(data: bytes) -> Catalog:
    fields = _array(_decode(data, MAX_CATALOG), 7, "catalog")
    _, provider, seq, valid_from, valid_until, products, signature = fields
    if not isinstance(products, list) or not 1 <= len(products) <= 32:
        raise _fail("catalog products must be an array of 1..32")
    parsed = []
    for item in products:
        if not isinstance(item, list) or len(item) != 3:
            raise _fail("a product is [name, unit_price, description]")
        name, price, description = item
        if not isinstance(name, str) or not PRODUCT_NAME.fullmatch(name):
            raise _fail(f"product name {name!r}")
        if not isinstance(description, str) or len(description) > 64:
            raise _fail("product description must be text of at most 64 characters")
        try:
            check_amount(price)
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        parsed.append(Product(name, price, description))
    catalog = Catalog(
        _bytes(provider, 20, "provider"),
        _uint(seq, "seq"),
        _uint(valid_from, "valid_from"),
        _uint(valid_until, "valid_until"),
        tuple(parsed),
        _bytes(signature, 64, "catalog signature"),
    )
    return catalog


__all__ = [
    "Catalog",
    "Product",
    "Receipt",
    "Request",
    "Response",
    "SignatureError",
    "decode_catalog",
    "decode_request",
    "decode_response",
    "error_response",
    "request_hash",
    "sign_catalog",
    "sign_receipt",
]
