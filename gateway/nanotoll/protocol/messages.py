"""Message schemas of protocol version 1: fixed CBOR arrays, validated on decode.

Every decoder raises ``ProtocolError`` with the code a gateway or device should report.

The gateway's per-request work takes narrow paths inside this module, each giving what
the generic path gives: :func:`decode_request` reads the common request (integer params)
with a reader of that one shape and lets the strict decoder judge everything else; an OK
response is written with its heads laid out in order; :func:`peek_request_id` reads the
id of a request that does not decode, to address its error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import PROTOCOL_VERSION, cbor
from .cbor import CBORError, encode_head, read_uint_head
from .eip712 import (
    MAX_AMOUNT,
    MAX_CHANNEL_ID,
    catalog_digest,
    check_amount,
    check_channel_id,
    error_digest,
    receipt_digest,
)
from .errors import ErrorCode, ProtocolError
from .keccak import keccak256
from .signing import SignatureError, Signer, recover_address, recover_signer
from .voucher import VOUCHER_LEN, Voucher, VoucherError, unpack

MAX_REQUEST = 512
MAX_RESPONSE = 8192
MAX_CATALOG = 2048
MAX_PARAMS = 16
MAX_REQUEST_ID = (1 << 32) - 1
MAX_ERROR_MESSAGE = 200  # characters
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
    # Another integer is a version we do not speak; anything else (true too, which
    # Python would compare equal to 1) is no version at all.
    version = value[0] if value else None
    if type(version) is int and version != PROTOCOL_VERSION:
        raise _fail(f"{what} version {version}", ErrorCode.UNSUPPORTED_VERSION)
    if len(value) != length:
        raise _fail(f"{what} must have {length} elements, got {len(value)}")
    if type(version) is not int:
        raise _fail(f"{what} version must be the integer {PROTOCOL_VERSION}")
    return value


def _uint(value: Any, what: str, maximum: int = MAX_AMOUNT) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise _fail(f"{what} must be an unsigned integer up to {maximum}")
    return value


def _bytes(value: Any, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise _fail(f"{what} must be {length} bytes")
    return value


_PARAM_SCALARS = (int, str, bytes)  # bool is an int


def _check_params(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict) or len(params) > MAX_PARAMS:
        raise _fail(f"params must be a map of at most {MAX_PARAMS} entries")
    for key, value in params.items():
        if not isinstance(key, str) or not PARAM_KEY.fullmatch(key):
            raise _fail(f"param key {key!r} is not [a-z][a-z0-9_]{{0,15}}")
        items = value if isinstance(value, list) else (value,)
        if not all(isinstance(item, _PARAM_SCALARS) for item in items):
            raise _fail(f"param {key} must be integers, text, bytes, booleans or an array of them")
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
    return keccak256(encoded_request)


def decode_request(data: bytes) -> Request:
    """The request in ``data``, or ProtocolError with the code to answer."""
    return _read_common_request(data) or _decode_request_strictly(data)


def _decode_request_strictly(data: bytes) -> Request:
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


_REQUEST_START = encode_head(4, 7) + encode_head(0, PROTOCOL_VERSION)
_VOUCHER_HEAD = encode_head(2, VOUCHER_LEN)


def _read_common_request(data: bytes) -> Request | None:
    """The common request read by walking its one shape: version 1, a product name,
    params whose values are all integers, the 76-byte voucher, everything in canonical
    form. None for anything else or anything doubtful: the strict decoder then judges
    and gives the error. What this accepts, the strict decoder accepts as the same
    Request (tests/protocol/test_fast_paths.py)."""
    if len(data) > MAX_REQUEST or data[:2] != _REQUEST_START:
        return None
    try:
        request_id, pos = read_uint_head(data, 2, 0)
        if request_id > MAX_REQUEST_ID:
            return None
        length, pos = read_uint_head(data, pos, 3)
        product = data[pos : pos + length].decode("ascii")
        pos += length
        if not PRODUCT_NAME.fullmatch(product):
            return None
        count, pos = read_uint_head(data, pos, 5)
        if count > MAX_PARAMS:
            return None
        params: dict[str, Any] = {}
        previous = b""
        for _ in range(count):
            start = pos
            length, pos = read_uint_head(data, pos, 3)
            key_bytes = data[start : pos + length]
            key = data[pos : pos + length].decode("ascii")
            pos += length
            if key_bytes <= previous or not PARAM_KEY.fullmatch(key):
                return None
            previous = key_bytes
            major = data[pos] >> 5
            if major > 1:  # not an integer: the strict decoder's case
                return None
            value, pos = read_uint_head(data, pos, major)
            params[key] = value if major == 0 else -1 - value
        price, pos = read_uint_head(data, pos, 0)
        seq, pos = read_uint_head(data, pos, 0)
        voucher_start = pos + len(_VOUCHER_HEAD)
        if data[pos:voucher_start] != _VOUCHER_HEAD or voucher_start + VOUCHER_LEN != len(data):
            return None
        voucher = unpack(data[voucher_start:])
    except (ValueError, IndexError):  # CBORError, VoucherError, UnicodeDecodeError among them
        return None
    return Request(request_id, product, params, price, seq, voucher)


def peek_request_id(payload: bytes) -> int:
    """The request id of a message that does not decode (or is too large), to address its
    error: read from the first bytes alone, ``[version, request_id, ...`` as a request
    starts, whatever follows. 0 when even that much is not there or not canonical."""
    data = bytes(payload[:16])
    try:
        _, pos = read_uint_head(data, 0, 4)  # an array, of any length
        if pos >= len(data) or data[pos] >= 24:  # a version: any uint below 24
            return 0
        request_id, _ = read_uint_head(data, pos + 1, 0)
    except CBORError:
        return 0
    return request_id if request_id <= MAX_REQUEST_ID else 0


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
    key: Signer | bytes,
    separator: bytes,
    channel_id: int,
    cumulative: int,
    request_hash_: bytes,
    data: bytes,
) -> Receipt:
    """The provider's receipt for ``data``; ``key`` is a kept Signer or a raw private key."""
    signer = key if isinstance(key, Signer) else Signer(key)
    data_hash = keccak256(data)
    digest = receipt_digest(separator, channel_id, cumulative, request_hash_, data_hash)
    return Receipt(channel_id, cumulative, request_hash_, data_hash, signer.sign(digest))


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
    """[1, request_id, 0, [data, receipt]] or
    [1, request_id, code, [message, detail, channel_id, request_hash, signature]]: an error
    is the provider's error receipt over (channel_id, request_hash, code, detail)."""

    request_id: int
    code: ErrorCode
    data: bytes = b""
    receipt: Receipt | None = None
    message: str = ""
    detail: Any = None
    channel_id: int = 0  # an error's: 0 when the request named no channel
    request_hash: bytes = b""  # an error's: keccak256 of the request it answers
    signature: bytes = b""  # an error's: the provider's, over error_digest

    def encode(self) -> bytes:
        if self.code == ErrorCode.OK:
            if self.receipt is None:
                raise ValueError("a successful response carries a receipt")
            return _encode_ok_response(self.request_id, self.data, self.receipt)
        body = [self.message, self.detail, self.channel_id, self.request_hash, self.signature]
        return cbor.dumps([PROTOCOL_VERSION, self.request_id, int(self.code), body])

    def error_digest(self, separator: bytes) -> bytes:
        return error_digest(separator, self.channel_id, self.request_hash, int(self.code),
                            detail_hash(self.detail))

    def verify_error(self, separator: bytes, provider: bytes) -> None:
        """Raise SignatureError unless ``provider`` (20 bytes) signed this error."""
        signer = recover_signer(self.error_digest(separator), self.signature)
        if signer != provider:
            raise SignatureError(f"error signed by 0x{signer.hex()}, not the provider")


_OK_START = encode_head(4, 4) + encode_head(0, PROTOCOL_VERSION)
_OK_CODE_AND_BODY = encode_head(0, int(ErrorCode.OK)) + encode_head(4, 2)
_RECEIPT_ARRAY = encode_head(4, 5)


def _encode_ok_response(request_id: int, data: bytes, receipt: Receipt) -> bytes:
    """``cbor.dumps([1, request_id, 0, [data, receipt.as_array()]])``, written in order:
    the shape is fixed, so the generic encoder's type dispatch is spared."""
    return b"".join((
        _OK_START, encode_head(0, request_id), _OK_CODE_AND_BODY,
        encode_head(2, len(data)), data,
        _RECEIPT_ARRAY, encode_head(0, receipt.channel_id), encode_head(0, receipt.cumulative),
        encode_head(2, len(receipt.request_hash)), receipt.request_hash,
        encode_head(2, len(receipt.data_hash)), receipt.data_hash,
        encode_head(2, len(receipt.signature)), receipt.signature,
    ))


def detail_hash(detail: Any) -> bytes:
    """keccak256 of the detail's CBOR (``null`` included): what an error receipt signs."""
    return keccak256(cbor.dumps(detail))


def sign_error(key: Signer | bytes, separator: bytes, request_id: int, error: ProtocolError,
               channel_id: int, request_hash_: bytes) -> Response:
    """The provider's signed answer ``error`` to the request whose hash is given."""
    signer = key if isinstance(key, Signer) else Signer(key)
    digest = error_digest(separator, channel_id, request_hash_, int(error.code),
                          detail_hash(error.detail))
    return Response(request_id, error.code, message=error.message[:MAX_ERROR_MESSAGE],
                    detail=error.detail, channel_id=channel_id, request_hash=request_hash_,
                    signature=signer.sign(digest))


def decode_response(data: bytes) -> Response:
    fields = _array(_decode(data, MAX_RESPONSE), 4, "response")
    _, request_id, code, body = fields
    _uint(request_id, "request id", MAX_REQUEST_ID)
    _uint(code, "code", 255)
    size = 2 if code == ErrorCode.OK else 5
    if not isinstance(body, list) or len(body) != size:
        raise _fail(f"response body must be an array of {size}")
    try:
        error_code = ErrorCode(code)
    except ValueError as exc:
        raise _fail(f"unknown error code {code}") from exc
    if error_code == ErrorCode.OK:
        if not isinstance(body[0], bytes):
            raise _fail("response data must be a byte string")
        return Response(request_id, error_code, data=body[0], receipt=_decode_receipt(body[1]))
    if not isinstance(body[0], str) or len(body[0]) > MAX_ERROR_MESSAGE:
        raise _fail(f"error message must be text of at most {MAX_ERROR_MESSAGE} characters")
    _check_detail(error_code, body[1])
    channel_id = _uint(body[2], "error channel id", MAX_CHANNEL_ID)
    return Response(request_id, error_code, message=body[0], detail=body[1],
                    channel_id=channel_id, request_hash=_bytes(body[3], 32, "request hash"),
                    signature=_bytes(body[4], 64, "error signature"))


def _check_detail(code: ErrorCode, detail: Any) -> None:
    """§3.2: null, except STALE_VOUCHER's highest voucher (null when the gateway holds
    none: its last accepted amount is then the channel's on-chain paid) and
    PRICE_CHANGED's current catalog seq."""
    if code == ErrorCode.STALE_VOUCHER and detail is not None:
        try:
            unpack(_bytes(detail, VOUCHER_LEN, "STALE_VOUCHER detail"))
        except VoucherError as exc:
            raise _fail(f"STALE_VOUCHER detail: {exc}") from exc
    elif code == ErrorCode.PRICE_CHANGED:
        _uint(detail, "PRICE_CHANGED detail")
    elif code != ErrorCode.STALE_VOUCHER and detail is not None:
        raise _fail(f"{code.name} carries no detail")


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
        return keccak256(cbor.dumps([p.as_array() for p in self.products]))

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
        signer = recover_signer(self.digest(separator), self.signature)
        if signer != self.provider:
            raise SignatureError(f"catalog signed by 0x{signer.hex()}, not its provider")


def sign_catalog(
    key: Signer | bytes,
    separator: bytes,
    provider: bytes,
    seq: int,
    valid_from: int,
    valid_until: int,
    products: tuple[Product, ...],
) -> Catalog:
    signer = key if isinstance(key, Signer) else Signer(key)
    unsigned = Catalog(provider, seq, valid_from, valid_until, products, bytes(64))
    signature = signer.sign(unsigned.digest(separator))
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
    "detail_hash",
    "peek_request_id",
    "request_hash",
    "sign_catalog",
    "sign_error",
    "sign_receipt",
]
