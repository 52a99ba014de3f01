"""The overview's queue table at scale: one page of rows, searched, filtered and
sorted on the server, with a bookmarkable URL that the self-refresh keeps.
Real RQ queues in Redis database 2; one headless-browser test for search as
you type and for sparklines asked only for the page's queues.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import rq
import rq_tasks
from conftest import run_rq_worker, serve_queuewatch
from pages import table_rows

pytestmark = pytest.mark.redis_db(2)

QUEUES = 130  # more than one default page (100)


def name(n: int) -> str:
    return f"shop-{n:03d}"


def depth_of(n: int) -> int:
    return n % 5  # every fifth queue is empty (and then has no oldest age)


@pytest.fixture
def shop(r) -> dict[str, int]:
    """QUEUES real RQ queues with 0–4 waiting jobs each, written by rq in one pipeline; {name: waiting}."""
    depths = {}
    with r.pipeline() as pipe:
        for n in range(QUEUES):
            q = rq.Queue(name(n), connection=r)
            jobs = [rq.Queue.prepare_data(rq_tasks.add, args=(n, i)) for i in range(max(1, depth_of(n)))]
            q.enqueue_many(jobs, pipeline=pipe)
            depths[name(n)] = depth_of(n)
        pipe.execute()
    for n in range(QUEUES):
        if depth_of(n) == 0:  # registered with rq (rq:queues) but empty now
            rq.Queue(name(n), connection=r).empty()
    return depths


def shown(client, url: str, **headers: str) -> tuple[list[str], str]:
    """The queue names of the rows shown, in order, and the "Showing …" sentence."""
    answer = client.get(url, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    page = answer.get_data(as_text=True)
    names = [key.split("/", 2)[2] for key in table_rows(page)]
    sentence = re.search(r"data-queue-range[^>]*>(.*?)</p>", page, re.S)
    return names, " ".join(html.unescape(re.sub(r"<[^>]+>", "", sentence.group(1))).split()) if sentence else ""


def test_the_overview_shows_one_page_of_queues_in_name_order(client, shop) -> None:
    names, sentence = shown(client, "/")
    assert names == [name(n) for n in range(100)]
    assert sentence == f"Showing 1–100 of {QUEUES} queues"
    page = client.get("/").get_data(as_text=True)
    assert 'href="/?page=2"' in page and "Page 1 of 2" in page
    names, sentence = shown(client, "/?page=2")
    assert names == [name(n) for n in range(100, QUEUES)]
    assert sentence == f"Showing 101–{QUEUES} of {QUEUES} queues"


def test_a_page_past_the_end_shows_the_last_page(client, shop) -> None:
    names, sentence = shown(client, "/?page=99&per=50")
    assert names == [name(n) for n in range(100, QUEUES)]
    assert sentence.startswith("Showing 101–130 of 130")


def test_totals_at_the_top_count_every_queue_not_only_the_page(client, shop) -> None:
    page = client.get("/?q=shop-00&per=3").get_data(as_text=True)
    totals = re.search(r'data-backend-totals="redis">(.*?)</span>\s*</p>', page, re.S).group(1)
    text = " ".join(re.sub(r"<[^>]+>", "", totals).split())
    assert text == f"redis: {QUEUES} queues, {sum(shop.values())} waiting, 0 failed"
    assert f"Queues <span class=\"muted small\">({QUEUES})</span>" in page


def test_search_is_a_case_insensitive_substring_of_the_name(client, shop) -> None:
    names, sentence = shown(client, "/?q=SHOP-12")
    assert names == [name(n) for n in range(120, 130)]
    assert sentence == f"Showing 1–10 of 10 matching queues ({QUEUES} in all)"
    assert shown(client, "/?q=REDIS")[1].endswith(f"of {QUEUES} matching queues ({QUEUES} in all)")  # the backend's name
    names, sentence = shown(client, "/?q=no-such-queue")
    assert names == [] and sentence.startswith(f"No queue matches “no-such-queue” ({QUEUES} queues in all)")


def test_filters_by_system_backend_and_state(client, shop, r) -> None:
    assert len(shown(client, "/?system=rq&per=500")[0]) == QUEUES
    assert shown(client, "/?system=celery")[0] == []
    assert len(shown(client, "/?backend=redis&per=500")[0]) == QUEUES
    backlog = shown(client, "/?state=backlog&per=500")[0]
    assert backlog == [n for n, d in sorted(shop.items()) if d > 0]
    # A real worker (registered by rq itself) serves shop-001: it leaves the "no workers" list.
    worker = rq.Worker([rq.Queue(name(1), connection=r)], connection=r, name="paging-worker")
    worker.register_birth()
    unserved = shown(client, "/?state=no-workers&per=500")[0]
    assert name(1) not in unserved and unserved == [n for n in backlog if n != name(1)]
    assert shown(client, "/?state=no%20workers&per=500")[0] == unserved
    assert shown(client, "/?state=failing")[0] == []


def test_failing_lists_queues_with_failed_jobs(client, shop, r, redis_url, tmp_path) -> None:
    q = rq.Queue("broken-billing", connection=r)
    for i in range(2):
        q.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "never"), i)
    run_rq_worker(redis_url, "broken-billing")
    names, sentence = shown(client, "/?state=failing")
    assert names == ["broken-billing"]
    assert sentence == f"Showing 1–1 of 1 matching queue ({QUEUES + 1} in all)"


def test_sorting_by_a_count_either_way_puts_unknown_values_last(client, shop) -> None:
    by_depth = shown(client, "/?sort=-depth&per=500")[0]
    assert [shop[n] for n in by_depth] == sorted(shop.values(), reverse=True)
    assert by_depth[:3] == [name(4), name(9), name(14)]  # ties stay in name order
    assert shown(client, "/?sort=depth&dir=desc&per=500")[0] == by_depth
    assert [shop[n] for n in shown(client, "/?sort=depth&per=500")[0]] == sorted(shop.values())
    # Empty queues have no oldest waiting job: last when sorting by age, in both directions.
    empty = {n for n, d in shop.items() if d == 0}
    for url in ("/?sort=oldest&per=500", "/?sort=-oldest&per=500"):
        names = shown(client, url)[0]
        assert set(names[-len(empty):]) == empty and not empty & set(names[: -len(empty)])
    assert shown(client, "/?sort=-name&per=3")[0] == [name(129), name(128), name(127)]


def test_header_cells_are_sort_links_that_keep_the_search_and_flip_the_direction(client, shop) -> None:
    page = client.get("/?q=shop-1&page=2&per=20").get_data(as_text=True)
    links = {m.group(2): html.unescape(m.group(1)) for m in re.finditer(r'href="([^"]+)" data-sort="(\w+)"', page)}
    assert links["depth"] == "/?q=shop-1&sort=-depth&per=20"  # counts sort biggest first; a new sort starts at page 1
    assert links["name"] == "/?q=shop-1&sort=-name&per=20"  # sorted by name now: the link flips it
    assert 'aria-sort="ascending"' in page
    flipped = client.get("/?q=shop-1&sort=-depth&per=20").get_data(as_text=True)
    assert 'href="/?q=shop-1&amp;sort=depth&amp;per=20" data-sort="depth"' in flipped
    assert 'aria-sort="descending"' in flipped


def test_the_refresh_keeps_what_the_operator_chose(client, shop) -> None:
    url = "/?q=shop-1&state=backlog&sort=-depth&page=2&per=10"
    page = client.get(url).get_data(as_text=True)
    refresh = html.unescape(re.search(r'<div id="overview" hx-get="([^"]+)"', page).group(1))
    assert refresh == url
    assert shown(client, refresh, **{"HX-Request": "true"}) == shown(client, url)
    names, sentence = shown(client, url)
    assert len(names) == 10 and sentence == f"Showing 11–20 of 24 matching queues ({QUEUES} in all)"  # shop-100…129 with jobs


def test_the_filter_form_keeps_its_choices_and_the_sort(client, shop) -> None:
    page = client.get("/?q=shop-1&state=failing&sort=-failed&per=50").get_data(as_text=True)
    form = re.search(r'<form id="queue-filters".*?</form>', page, re.S).group(0)
    assert 'method="get"' in form and 'name="q" value="shop-1"' in form
    assert '<option value="failing" selected>' in form and '<option value="50" selected>' in form
    assert 'name="sort" value="-failed"' in form
    assert 'name="page"' not in form  # a new search starts at page 1


def test_the_filter_form_through_htmx_gets_the_table_and_a_clean_address(client, shop) -> None:
    answer = client.get("/?q=shop-12&system=&backend=&state=&per=100",
                        headers={"HX-Request": "true", "HX-Trigger": "queue-filters"})  # fmt: skip
    assert "<html" not in answer.get_data(as_text=True)
    assert answer.headers["HX-Replace-Url"] == "/?q=shop-12"
    assert len(table_rows(answer.get_data(as_text=True))) == 10
    tick = client.get("/?q=shop-12", headers={"HX-Request": "true", "HX-Trigger": "overview"})
    assert "HX-Replace-Url" not in tick.headers  # the refresh never touches the address bar


def test_sparkline_cells_are_only_the_page_rows(client, shop) -> None:
    page = client.get("/?per=25&page=2").get_data(as_text=True)
    series = re.findall(r'class="sparkline"[^>]*data-series="([^"]+)"', page)
    assert series == [f"redis/rq/{name(n)}" for n in range(25, 50)]
    assert page.count("/api/v1/history") == 1  # one URL the sparklines ask with their page's series; none per queue


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sort=bogus", "unknown sort 'bogus'"),
        ("sort=-name&dir=asc", "leading - (descending) but dir=asc"),
        ("dir=up", "dir must be asc or desc"),
        ("page=0", "page must be a whole number from 1"),
        ("page=abc", "page must be a whole number from 1"),
        ("page=²", "page must be a whole number from 1"),
        ("per=501", "per must be a whole number from 1 to 500"),
        ("per=-5", "per must be a whole number from 1 to 500"),
        ("system=sidekiq", "unknown system 'sidekiq'"),
        ("backend=elsewhere", "unknown backend 'elsewhere'; configured: redis"),
        ("state=on-fire", "unknown state 'on-fire'"),
        ("q=" + "x" * 201, "the search text is too long"),
    ],
)
def test_bad_parameters_get_a_clear_400_page(client, query, message) -> None:
    answer = client.get("/?" + query)
    assert answer.status_code == 400
    assert message in html.unescape(answer.get_data(as_text=True))
    api = client.get("/api/v1/queues?" + query)
    assert api.status_code == 400 and message in api.get_json()["error"]["message"]


def test_the_api_lists_every_queue_unless_asked_to_narrow(client, shop) -> None:
    plain = client.get("/api/v1/queues").get_json()
    assert set(plain) == {"queues"} and len(plain["queues"]) == QUEUES
    narrowed = client.get("/api/v1/queues?q=shop-12&sort=-depth").get_json()
    assert [q["name"] for q in narrowed["queues"]][:3] == [name(124), name(129), name(123)]
    assert (narrowed["total"], narrowed["matched"], len(narrowed["queues"])) == (QUEUES, 10, 10)
    assert "page" not in narrowed
    paged = client.get("/api/v1/queues?per=50&page=3").get_json()
    assert [q["name"] for q in paged["queues"]] == [name(n) for n in range(100, QUEUES)]
    assert {k: paged[k] for k in ("total", "matched", "page", "pages", "per")} == {
        "total": QUEUES, "matched": QUEUES, "page": 3, "pages": 3, "per": 50}  # fmt: skip


@pytest.fixture
def server(shop, redis_url: str, tmp_path: Path) -> Iterator[str]:
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1") as base:
        yield base


@pytest.mark.browser
def test_searching_as_you_type_narrows_the_table_and_sparklines_ask_only_for_the_page(server, browser) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1360, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    history: list[str] = []
    page.on("request", lambda req: history.append(unquote(req.url)) if "history" in req.url else None)
    try:
        page.goto(server + "/?per=20&page=2")
        rows = page.locator("#queues-table tbody tr")
        expect(rows).to_have_count(20)
        expect(page.locator("[data-sparklines]")).to_have_attribute("data-state", "ready", timeout=10_000)
        page.wait_for_timeout(2500)  # a couple of refresh ticks
        # One request per tick for every row on screen (viewers of the same page share its answer), never one per row.
        asked = {item.split("/", 2)[2] for url in history for item in re.search(r"series=([^&]+)", url).group(1).split(",")}
        assert asked and asked <= {name(n) for n in range(20, 40)}, history
        assert len(history) < 20, history

        page.get_by_role("searchbox", name="Search").fill("shop-12")  # no Enter: the table follows the typing
        expect(page.locator("[data-queue-range]")).to_have_text(re.compile(r"Showing 1–10 of 10 matching queues"))
        expect(rows).to_have_count(10)
        expect(page).to_have_url(re.compile(r"/\?q=shop-12&per=20$"))
        page.wait_for_timeout(1500)  # a refresh tick must keep the search
        expect(rows).to_have_count(10)
        assert page.locator("#queues-table tbody tr").first.get_attribute("data-queue") == f"redis/rq/{name(120)}"

        page.get_by_role("link", name="Waiting", exact=True).click()
        page.wait_for_url(re.compile(r"sort=-depth"))
        assert page.locator("#queues-table tbody tr").first.get_attribute("data-queue") == f"redis/rq/{name(124)}"
        assert page.get_by_role("searchbox", name="Search").input_value() == "shop-12"
    finally:
        page.close()
    assert problems == []
