#!/usr/bin/env bash
# Checks the monitoring files under deploy/: the alerting rules parse, their unit tests
# pass, the example Prometheus configuration is valid, and every metric the rules and
# the Grafana dashboard use is one raftd exports (listed in docs/metrics.md).
# Needs promtool (Debian's `prometheus` package) and python3. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."

promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/tests/*.yml
promtool check config deploy/prometheus/prometheus.yml
python3 deploy/prometheus/check_metric_names.py \
    docs/metrics.md deploy/prometheus/alerts.yml deploy/grafana/raftd-dashboard.json
