"""keyd's `/metrics` (issue 13): parsed by `prometheus_client`'s own parser, requests counted
by route pattern and status as they happen (a key added, a lookup that finds nothing, a path
nobody serves), the store's keys counted — and a fingerprint never becomes a label."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests import keyd_fixtures as kf
from tests.keyd_fixtures import KeydProcess, StockGpg

keyd, stock_gpg = kf.keyd, kf.stock_gpg


def scrape(server: KeydProcess) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    code, body = server.request("GET", "/metrics")
    assert code == 200
    text = body.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def test_keyd_metrics_count_requests_and_keys(keyd: KeydProcess, stock_gpg: type[StockGpg]) -> None:
    _, before = scrape(keyd)
    keys_before = before[("keyd_stored", (("kind", "keys"),))]
    gpg = stock_gpg()
    fp = gpg.gen("Metric Me <metric@example.org>")
    assert keyd.add(gpg.export(fp))[0] == 200
    assert keyd.lookup(op="get", search="0x" + "0" * 40)[0] == 404
    assert keyd.request("GET", "/tits/devices/" + fp)[0] == 200
    assert keyd.request("GET", "/no/such/" + fp)[0] == 404
    text, after = scrape(keyd)

    def requests(route: str, code: str) -> float:
        key = ("keyd_http_requests_total", (("code", code), ("route", route)))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert requests("/pks/add", "200") == 1
    assert requests("/pks/lookup", "404") == 1
    assert requests("/tits/devices/{fp}", "200") == 1
    assert requests("other", "404") == 1
    assert after[("keyd_stored", (("kind", "keys"),))] == keys_before + 1
    assert after[("keyd_http_request_seconds_count", (("route", "/pks/add"),))] >= 1
    assert fp not in text and fp.lower() not in text
