"""On-demand features: batch (sync) + pushed (async) features + this request's data.

Computed by Feast at request time online and on the training rows offline, from the same code.
Feast stores each function by value, without this module's globals: a function body must import
and define everything it uses.

Python mode (columns as lists in, lists out): the same function runs on one request's row online
without building a DataFrame, which costs more than the rest of the read (benchmarks/online.py),
and on the training rows' columns offline.
"""

from batch_features import user_profile, user_transactions
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float64, String
from realtime_features import user_last_login

login_request = RequestSource(
    name="login_request",
    # `request.*` tags: how serving validates the field in a prediction request (serving/schemas.py)
    schema=[
        Field(name="login_ip", dtype=String, tags={"request.format": "ip"}),
        Field(
            name="login_device",
            dtype=String,
            tags={"request.min_length": "1", "request.max_length": "64"},
        ),
    ],
    description="The login being scored.",
)

amount_request = RequestSource(
    name="amount_request",
    schema=[Field(name="amount", dtype=Float64, tags={"request.gt": "0", "request.lt": "1e9"})],
    description="The amount of the transaction or withdrawal being scored.",
)


@on_demand_feature_view(
    sources=[user_profile, user_last_login, login_request],
    schema=[
        Field(name="ip_is_common", dtype=Bool),
        Field(name="device_is_new", dtype=Bool),
        Field(name="ip_seen_recently", dtype=Bool),
    ],
    mode="python",
    tags={"tier": "real-time", "freshness_budget_seconds": "5"},
    description="Is this login's IP among the user's common IPs? Is its device new?",
)
def login_context(inputs: dict[str, list]) -> dict[str, list]:
    def _members(values) -> set:
        """The items of a list feature (None, NaN, a list or an array) as a set."""
        if values is None or isinstance(values, str | bytes):  # a string is never a decoded list
            return set()
        try:
            return set(values)
        except TypeError:  # NaN or another scalar: no list
            return set()

    out: dict[str, list] = {"ip_is_common": [], "device_is_new": [], "ip_seen_recently": []}
    for ip, device, ips, devices, recent, last in zip(
        inputs["login_ip"],
        inputs["login_device"],
        inputs["common_ips_365d"],
        inputs["common_devices_365d"],
        inputs["recent_ips"],
        inputs["last_login_device"],
        strict=True,
    ):
        out["ip_is_common"].append(ip in _members(ips))
        out["device_is_new"].append(device not in _members(devices) and device != last)
        out["ip_seen_recently"].append(ip in _members(recent))
    return out


@on_demand_feature_view(
    sources=[user_transactions, amount_request],
    schema=[Field(name="amount_vs_30d_mean", dtype=Float64)],
    mode="python",
    tags={"tier": "real-time", "freshness_budget_seconds": "5"},
    description="This amount divided by the user's mean transaction amount over 30 days (NaN: no history).",
)
def amount_context(inputs: dict[str, list]) -> dict[str, list]:
    import math

    def _number(value) -> float:
        try:
            return math.nan if value is None else float(value)
        except (TypeError, ValueError):
            return math.nan

    ratios = []
    for amount, count, total in zip(
        inputs["amount"], inputs["txn_count_30d"], inputs["txn_sum_30d"], strict=True
    ):
        amount, count, total = _number(amount), _number(count), _number(total)
        if not count > 0:  # no transactions in 30 days, or unknown: no mean to compare with
            ratios.append(math.nan)
        elif total == 0:  # IEEE division, as the offline arrays do it
            ratios.append(math.copysign(math.inf, amount) if amount == amount else math.nan)
        else:
            ratios.append(amount / (total / count))
    return {"amount_vs_30d_mean": ratios}
