"""Wellbeing tracking: per-user personalisation, check-in history, trends and self-help tips.

Privacy: :func:`delete_user_data` erases everything kept about one user (check-ins, enrolled
clips, personal-model files); :func:`purge_checkins` enforces a retention period.

Not a medical device: see :data:`vocalis.wellbeing.insight.DISCLAIMER`.
"""

from vocalis.wellbeing.insight import (
    DISCLAIMER,
    TIPS,
    Advice,
    Period,
    aggregate,
    local_tz,
    parse_tz,
    plot_trend,
    recommend,
)
from vocalis.wellbeing.personal import PersonalModel, StaleModelError, bundle_fingerprint, bundle_reference
from vocalis.wellbeing.retention import DeletedData, delete_user_data, purge_checkins
from vocalis.wellbeing.store import CheckIn, WellbeingStore, default_db_path

__all__ = [
    "DISCLAIMER", "TIPS", "Advice", "CheckIn", "DeletedData", "Period", "PersonalModel", "StaleModelError",
    "WellbeingStore", "aggregate", "bundle_fingerprint", "bundle_reference", "default_db_path",
    "delete_user_data", "local_tz", "parse_tz", "plot_trend", "purge_checkins", "recommend",
]
