"""One feature service per model. The two models share views (reuse, not copies)."""

from batch_features import user_logins, user_profile, user_transactions, user_withdrawals
from feast import FeatureService
from feast.feature_logging import LoggingConfig
from on_demand_features import amount_context, login_context
from realtime_features import user_last_login, user_last_transaction
from velocity_features import (
    user_login_velocity,
    user_transaction_velocity,
    user_withdrawal_velocity,
)

from providers.tidb import TiDBLoggingDestination

account_takeover = FeatureService(
    name="account_takeover",
    features=[
        user_logins,
        user_profile,
        user_withdrawals,
        user_last_login,
        login_context,
        user_login_velocity,
    ],
    description="Scores a login: is this the account holder?",
    # The log table is also a tag: Feast's change detection ignores logging_config, so without it
    # `feast apply` would not store a changed logging config in an existing registry.
    tags={"model": "account_takeover", "served_features_table": "served_account_takeover"},
    logging_config=LoggingConfig(
        destination=TiDBLoggingDestination(table_name="served_account_takeover")
    ),
)

withdrawal_fraud = FeatureService(
    name="withdrawal_fraud",
    features=[
        user_transactions,
        user_withdrawals,
        user_last_login,
        user_last_transaction,
        amount_context,
        user_login_velocity,
        user_transaction_velocity,
        user_withdrawal_velocity,
    ],
    description="Scores a withdrawal: is the money leaving to a fraudster?",
    tags={"model": "withdrawal_fraud", "served_features_table": "served_withdrawal_fraud"},
    logging_config=LoggingConfig(
        destination=TiDBLoggingDestination(table_name="served_withdrawal_fraud")
    ),
)
