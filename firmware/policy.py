# nanotoll device: the owner's spending policy, provisioned as a JSON file and
# checked before anything is signed.
#
# {
#   "deposit": 5000000,            channel deposit in units (required)
#   "budget": 2000000,             total units this device may spend; <= deposit (required)
#   "max_unit_price": 5000,        highest catalog price accepted for any product
#   "providers": ["0x..."],        allowed provider addresses (default: any provisioned one)
#   "provider_caps": {"0x...": n}, units per provider
#   "product_caps": {"weather": n},units per product name
#   "per_hour": n,                 units per rolling hour
#   "per_minute": n,               purchases per rolling minute
#   "expiry": 1767312000,          channel expiry, unix seconds
#   "expiry_margin": 7200          refuse to sign within this many seconds of expiry
# }

import json
from micropython import const
from errors import PolicyDenied, BudgetExhausted, PriceTooHigh
from store import HISTORY_EPOCH

_KEYS = const((
    "deposit",
    "budget",
    "max_unit_price",
    "providers",
    "provider_caps",
    "product_caps",
    "per_hour",
    "per_minute",
    "expiry",
    "expiry_margin",
))


def _addr(text):
    text = text.lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) != 40:
        raise ValueError("policy: bad address %s" % text)
    int(text, 16)
    return text


def _uint(d, key, default=None):
    v = d.get(key, default)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError("policy: %s must be a non-negative integer" % key)
    return v


class Policy:
    def __init__(self, d):
        for key in d:
            if key not in _KEYS and not key.startswith("_"):
                raise ValueError("policy: unknown key %s" % key)
        self.deposit = _uint(d, "deposit")
        self.budget = _uint(d, "budget")
        if self.deposit is None or self.budget is None:
            raise ValueError("policy: deposit and budget are required")
        if self.budget > self.deposit:
            raise ValueError("policy: budget %d is above the deposit %d" % (self.budget, self.deposit))
        self.max_unit_price = _uint(d, "max_unit_price")
        providers = d.get("providers")
        self.providers = None if providers is None else [_addr(p) for p in providers]
        self.provider_caps = {}
        for k, v in d.get("provider_caps", {}).items():
            self.provider_caps[_addr(k)] = _uint({"cap": v}, "cap")
        self.product_caps = {}
        for k, v in d.get("product_caps", {}).items():
            self.product_caps[k] = _uint({"cap": v}, "cap")
        self.per_hour = _uint(d, "per_hour")
        self.per_minute = _uint(d, "per_minute")
        self.expiry = _uint(d, "expiry")
        self.expiry_margin = _uint(d, "expiry_margin", 3600)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.load(f))

    def check(self, provider, product, price, increase, state, now, max_price=None):
        """Raise unless signing a voucher `increase` units above the last one is allowed.

        provider: lowercase hex address without 0x; price: the catalog unit price;
        increase: units the new voucher adds to the exposure (state.spent grows by it);
        now: unix seconds, or None when the board's clock is not set.
        """
        if self.providers is not None and provider not in self.providers:
            raise PolicyDenied("provider %s is not allowed" % provider)
        if max_price is not None and price > max_price:
            raise PriceTooHigh("price %d above max_price %d" % (price, max_price))
        if self.max_unit_price is not None and price > self.max_unit_price:
            raise PriceTooHigh("price %d above the policy's max unit price %d" % (price, self.max_unit_price))
        if self.expiry is not None:
            if now is None:
                raise PolicyDenied("clock not set: cannot check the channel's expiry")
            if self.expiry - now <= self.expiry_margin:
                raise PolicyDenied("channel expires in %d s" % (self.expiry - now))
        spent = state.spent + increase
        if spent > self.budget:
            raise BudgetExhausted("budget %d: spent %d, this needs %d" % (self.budget, state.spent, increase))
        if state.cumulative + increase > self.deposit:
            raise BudgetExhausted("channel deposit %d reached" % self.deposit)
        cap = self.provider_caps.get(provider)
        if cap is not None and spent > cap:
            raise BudgetExhausted("provider cap %d reached" % cap)
        cap = self.product_caps.get(product)
        if cap is not None and state.by_product.get(product, 0) + increase > cap:
            raise BudgetExhausted("cap %d for %s reached" % (cap, product))
        if (self.per_hour is not None or self.per_minute is not None) and now is not None:
            hour = 0
            minute = 0
            at = now - HISTORY_EPOCH  # history times are since HISTORY_EPOCH: small ints
            history = state.history  # [t, amount, t, amount, ...]
            for i in range(0, len(history), 2):
                if at - history[i] < 3600:
                    hour += history[i + 1]
                    if at - history[i] < 60:
                        minute += 1
            if self.per_hour is not None and hour + increase > self.per_hour:
                raise PolicyDenied("rate limit: %d units in the last hour" % hour)
            if self.per_minute is not None and minute + 1 > self.per_minute:
                raise PolicyDenied("rate limit: %d purchases in the last minute" % minute)
