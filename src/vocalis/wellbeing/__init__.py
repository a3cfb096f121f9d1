"""Wellbeing tracking: per-user personalisation, check-in history, trends and self-help tips.

Not a medical device: see :data:`vocalis.wellbeing.insight.DISCLAIMER`.
"""

from vocalis.wellbeing.insight import DISCLAIMER, TIPS, Advice, Period, aggregate, plot_trend, recommend
from vocalis.wellbeing.personal import PersonalModel, bundle_reference
from vocalis.wellbeing.store import CheckIn, WellbeingStore, default_db_path

__all__ = [
    "DISCLAIMER", "TIPS", "Advice", "CheckIn", "Period", "PersonalModel", "WellbeingStore", "aggregate",
    "bundle_reference", "default_db_path", "plot_trend", "recommend",
]
