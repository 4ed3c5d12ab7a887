"""The names of the series the model server exports and the control plane reads: declared once,
imported by both (serving/metrics.py, serving/monitoring/ produce them; mlops_control's metric
sources and the cluster retraining trigger query them).

prometheus-client appends `_total` to a counter's name and `_bucket`/`_sum`/`_count` to a
histogram's on exposition; the `*_TOTAL` and `*_BUCKET` names are what a query selects.
"""

from __future__ import annotations

REQUESTS = "mlops_requests"
REQUESTS_TOTAL = REQUESTS + "_total"
REQUEST_DURATION = "mlops_request_duration_seconds"
REQUEST_DURATION_BUCKET = REQUEST_DURATION + "_bucket"
PREDICTION_PROBABILITY = "mlops_prediction_probability"  # a binary model's prediction histogram
PREDICTION_CLASS = "mlops_prediction_class"  # a multiclass model's
PREDICTION_VALUE = "mlops_prediction_value"  # a regression model's

DRIFT_PSI = "mlops_drift_psi"
DRIFT_EFFECT = "mlops_drift_effect"
DRIFT_DETECTED = "mlops_drift_detected"
DRIFT_SHARE_DRIFTED = "mlops_drift_share_drifted"
DRIFT_WINDOW_ROWS = "mlops_drift_window_rows"
DRIFT_LAST_EVALUATION = "mlops_drift_last_evaluation_timestamp_seconds"

# Live quality on labelled traffic, by the quality figure's name.
LIVE_PREFIX = "mlops_live_"
LIVE_ACCURACY = LIVE_PREFIX + "accuracy"
LIVE_LOG_LOSS = LIVE_PREFIX + "log_loss"
LIVE_BRIER_SCORE = LIVE_PREFIX + "brier_score"
LIVE_CALIBRATION_ERROR = LIVE_PREFIX + "calibration_error"
LIVE_LABEL_POSITIVE_RATE = LIVE_PREFIX + "label_positive_rate"
LIVE_LABELLED_ROWS = LIVE_PREFIX + "labelled_rows"

# Per-feature statistics of live inputs (serving/metrics.py's collector).
FEATURE_VALUE = "mlops_feature_value"
FEATURE_VALUE_SQUARES = "mlops_feature_value_squares"
FEATURE_CATEGORY = "mlops_feature_category"
FEATURE_MISSING = "mlops_feature_missing"
FEATURE_OUT_OF_RANGE = "mlops_feature_out_of_range"
