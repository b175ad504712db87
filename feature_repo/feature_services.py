"""One feature service per model. The two models share views (reuse, not copies)."""

from batch_features import user_logins, user_profile, user_transactions, user_withdrawals
from feast import FeatureService
from on_demand_features import amount_context, login_context
from realtime_features import user_last_login, user_last_transaction

account_takeover = FeatureService(
    name="account_takeover",
    features=[user_logins, user_profile, user_withdrawals, user_last_login, login_context],
    description="Scores a login: is this the account holder?",
    tags={"model": "account_takeover"},
)

withdrawal_fraud = FeatureService(
    name="withdrawal_fraud",
    features=[
        user_transactions,
        user_withdrawals,
        user_last_login,
        user_last_transaction,
        amount_context,
    ],
    description="Scores a withdrawal: is the money leaving to a fraudster?",
    tags={"model": "withdrawal_fraud"},
)
