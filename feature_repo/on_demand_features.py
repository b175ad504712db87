"""On-demand features: batch (sync) + pushed (async) features + this request's data.

Computed by Feast at request time online and on the training rows offline, from the same code.
Feast stores each function by value, without this module's globals: a function body must import
and define everything it uses.
"""

import pandas as pd
from batch_features import user_profile, user_transactions
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float64, String
from realtime_features import user_last_login

login_request = RequestSource(
    name="login_request",
    schema=[Field(name="login_ip", dtype=String), Field(name="login_device", dtype=String)],
    description="The login being scored.",
)

amount_request = RequestSource(
    name="amount_request",
    schema=[Field(name="amount", dtype=Float64)],
    description="The amount of the transaction or withdrawal being scored.",
)


@on_demand_feature_view(
    sources=[user_profile, user_last_login, login_request],
    schema=[
        Field(name="ip_is_common", dtype=Bool),
        Field(name="device_is_new", dtype=Bool),
        Field(name="ip_seen_recently", dtype=Bool),
    ],
    mode="pandas",
    tags={"tier": "real-time", "freshness_budget_seconds": "5"},
    description="Is this login's IP among the user's common IPs? Is its device new?",
)
def login_context(inputs: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    def _members(values) -> set:
        """The items of a list feature (None, NaN, a list or a numpy array) as a set."""
        if values is None or isinstance(values, str):  # a string is never a decoded list
            return set()
        try:
            if pd.isna(values):  # None, NaN, pd.NA
                return set()
        except (TypeError, ValueError):  # a list or array: pd.isna is element-wise
            pass
        return set(values)

    out = pd.DataFrame(index=inputs.index)
    ips = inputs["common_ips_365d"].map(_members)
    devices = inputs["common_devices_365d"].map(_members)
    recent = inputs["recent_ips"].map(_members)
    out["ip_is_common"] = [ip in known for ip, known in zip(inputs["login_ip"], ips, strict=True)]
    out["device_is_new"] = [
        device not in known and device != last
        for device, known, last in zip(
            inputs["login_device"], devices, inputs["last_login_device"], strict=True
        )
    ]
    out["ip_seen_recently"] = [
        ip in seen for ip, seen in zip(inputs["login_ip"], recent, strict=True)
    ]
    return out


@on_demand_feature_view(
    sources=[user_transactions, amount_request],
    schema=[Field(name="amount_vs_30d_mean", dtype=Float64)],
    mode="pandas",
    tags={"tier": "real-time", "freshness_budget_seconds": "5"},
    description="This amount divided by the user's mean transaction amount over 30 days (NaN: no history).",
)
def amount_context(inputs: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    count = pd.to_numeric(inputs["txn_count_30d"], errors="coerce")
    mean = pd.to_numeric(inputs["txn_sum_30d"], errors="coerce") / count.where(count > 0)
    return pd.DataFrame(
        {"amount_vs_30d_mean": inputs["amount"].astype("float64") / mean}, index=inputs.index
    )
