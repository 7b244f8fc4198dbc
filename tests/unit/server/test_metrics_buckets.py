"""The histograms chinwag counts itself and hands to prometheus-client at scrape time."""

from prometheus_client.core import HistogramMetricFamily

from chinwag.server.metrics import Buckets


def test_buckets_count_each_value_within_its_first_bound_and_cumulate_at_scrape():
    buckets = Buckets((0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 0.5, 3.0):
        buckets.observe(value)
    family = HistogramMetricFamily("lag_seconds", "lag", labels=["kind"])

    buckets.add_to(family, ["probe"])

    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("lag_seconds_bucket", "0.01")] == 2  # le: the bound itself is within
    assert samples[("lag_seconds_bucket", "0.1")] == 3
    assert samples[("lag_seconds_bucket", "1.0")] == 4
    assert samples[("lag_seconds_bucket", "+Inf")] == 5
    assert samples[("lag_seconds_count", None)] == 5
    assert abs(samples[("lag_seconds_sum", None)] - 3.565) < 1e-9
