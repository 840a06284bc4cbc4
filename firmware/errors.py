# nanotoll device: the errors agent.buy() raises.


class AgentError(Exception):
    pass


class PolicyDenied(AgentError):
    """The owner's policy forbids this purchase; nothing was signed."""


class BudgetExhausted(PolicyDenied):
    """The purchase would take spending past a budget or cap (or the gateway said OVERDRAFT)."""


class PriceTooHigh(PolicyDenied):
    """The catalog price is above the caller's max_price or the policy's max unit price."""


class ProviderError(AgentError):
    """The provider failed (PROVIDER_ERROR, no valid catalog, a receipt that does not verify)."""


class Timeout(AgentError):
    """No answer in time. The signed request stays pending and is re-sent unchanged."""


class StateError(AgentError):
    """The state record is corrupt: the device refuses to sign until a verified resync."""


class ProtocolError(AgentError):
    """The gateway answered with an error code (docs/protocol.md section 5)."""

    def __init__(self, code, message="", detail=None):
        super().__init__("%s (%d): %s" % (code_name(code), code, message))
        self.code = code
        self.message = message
        self.detail = detail


OK = 0
MALFORMED = 1
TOO_LARGE = 2
UNSUPPORTED_VERSION = 3
UNKNOWN_PRODUCT = 4
BAD_PARAMS = 5
WRONG_TOPIC = 6
UNKNOWN_CHANNEL = 10
CHANNEL_EXPIRING = 11
WRONG_PAYEE = 12
BAD_SIGNATURE = 13
UNDERPAID = 14
OVERDRAFT = 15
STALE_VOUCHER = 16
PRICE_CHANGED = 17
BUSY = 30
PROVIDER_ERROR = 31

_NAMES = {
    0: "OK",
    1: "MALFORMED",
    2: "TOO_LARGE",
    3: "UNSUPPORTED_VERSION",
    4: "UNKNOWN_PRODUCT",
    5: "BAD_PARAMS",
    6: "WRONG_TOPIC",
    10: "UNKNOWN_CHANNEL",
    11: "CHANNEL_EXPIRING",
    12: "WRONG_PAYEE",
    13: "BAD_SIGNATURE",
    14: "UNDERPAID",
    15: "OVERDRAFT",
    16: "STALE_VOUCHER",
    17: "PRICE_CHANGED",
    30: "BUSY",
    31: "PROVIDER_ERROR",
}


def code_name(code):
    return _NAMES.get(code, "UNKNOWN_%d" % code)


def error_code(exc):
    """A short stable name for any exception buy() raises (for logs and JSON lines)."""
    if isinstance(exc, ProtocolError):
        return code_name(exc.code)
    return type(exc).__name__
