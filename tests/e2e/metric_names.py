"""metric_names.py - the names nscollect's /metrics serves (a fixed contract,
README "Operating it: metrics, health, alerts"), for the tests of the files
that use them: etc/prometheus/nscollect.rules.yml and
etc/grafana/nscollect-dashboard.json may name only these (and Prometheus'
own `up`), so a rule or a panel cannot watch a series that never exists.
A histogram lists its base name; _bucket, _sum and _count follow from it."""

import re

COUNTERS = [
    "nscollect_records_fetched_total",
    "nscollect_records_stored_total",
    "nscollect_records_duplicate_total",
    "nscollect_records_conflict_total",
    "nscollect_records_delivered_total",
    "nscollect_delivered_bytes_total",
    "nscollect_ambiguous_retries_total",
    "nscollect_requests_total",
    "nscollect_gcs_token_refreshes_total",
]
GAUGES = [
    "nscollect_cursor_lag_seconds",
    "nscollect_stream_interval_seconds",
    "nscollect_pending_batches",
    "nscollect_pending_bytes",
    "nscollect_last_success_timestamp_seconds",
    "nscollect_stream_failing",
    "nscollect_stream_enabled",
    "nscollect_build_info",
    "nscollect_ready",
    "nscollect_outbox_limit_bytes",
    "nscollect_workers",
    "nscollect_queue_depth",
    "process_start_time_seconds",
    "nscollect_scrape_duration_seconds",
]
HISTOGRAMS = ["nscollect_sqlite_commit_seconds"]
PROMETHEUS = ["up"]         # Prometheus' own series for a scrape target

NAMES = set(COUNTERS + GAUGES + PROMETHEUS +
            [h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")])

# PromQL words that look like names but are not series
_KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "time", "timestamp", "vector", "scalar", "abs", "ceil", "floor", "round",
    "clamp", "clamp_min", "clamp_max", "histogram_quantile", "label_replace", "label_join",
    "sort", "sort_desc", "absent", "absent_over_time", "changes", "resets", "max_over_time",
    "min_over_time", "avg_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "predict_linear", "sgn", "exp", "ln", "log2", "log10", "sqrt", "e", "inf", "nan", "atan2",
}


def series_names(expr):
    """The series names a PromQL expression reads: identifiers outside
    strings, braces and brackets that are neither keywords, functions nor
    label names of by/on/without lists."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    s = re.sub(r"\{[^}]*\}", "{}", s)                        # matchers
    s = re.sub(r"\[[^\]]*\]", "[]", s)                       # ranges
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b\s*(\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names
