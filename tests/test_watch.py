"""--dbgate=watch and hold-backs released on flat metrics, on real servers: the demo's whole
story (staging, a deploy that holds the cleanup back, a flat watch, the cleanup released), and
a query made slower on production after the deploy (the watch fails naming it; the cleanup stays
held, saying why)."""

from __future__ import annotations

import json
import random

import pytest

from pytest_dbgate.pg.connections import Endpoint, connection

from .conftest import PROJECTS, REPO, Project, seeded_database
from .test_production import applied_versions, columns, deployed, move_back, outcome_of, query

CLEANUP = "20250115160002_fix_recipe_category_fields_cleanup"
# The application's access paths, as a driver sends them: parameters, not literals. The first is
# the demo workload's recipes_of_a_cook (so the watch puts staging's figures beside it).
COOK = (
    "SELECT id, title, created_at FROM recipes WHERE user_id = %s ORDER BY created_at DESC LIMIT 20"
)
LATEST = "SELECT id, title FROM recipes ORDER BY created_at DESC LIMIT %s"


# 80,000 more recipes (the 1 % demo has 2,000): enough that a lost index really costs.
GROW = """
INSERT INTO recipes (id, user_id, title, description, category, servings, prep_minutes,
                     created_at)
SELECT r.id + g * 100000, r.user_id, r.title, r.description, r.category, r.servings,
       r.prep_minutes, r.created_at
FROM recipes r, generate_series(1, 40) AS g;
ANALYZE recipes;
"""


def traffic(prod: Endpoint, calls: int = 150) -> None:
    """The application at work on production: both queries, many times, varied parameters."""
    rng = random.Random(calls)
    with connection(prod, "app", "app") as conn:
        for _ in range(calls):
            conn.execute(COOK, (rng.randint(1, 200),))  # type: ignore[arg-type]
            conn.execute(LATEST, (20,))  # type: ignore[arg-type]


def watch_items(project: Project) -> dict[str, dict[str, object]]:
    document = json.loads((project.path / ".dbgate" / "watch-results.json").read_text())
    return {str(i["nodeid"]): i for i in document["items"]}


def watch_record(project: Project) -> dict[str, object]:
    document: dict[str, object] = json.loads(
        (project.path / ".dbgate" / "watch-record.json").read_text()
    )
    return document


@pytest.fixture
def story(demo: Project, demo_prod: Endpoint, staging_server: Endpoint) -> Endpoint:
    """The demo gated against a production that has pg_stat_statements and a history of
    traffic before the deploy (the baseline window)."""
    with connection(demo_prod, "test", "test") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute(GROW)
    traffic(demo_prod)
    demo.against(demo_prod, staging_server)
    return demo_prod


def test_the_demo_story_staging_deploy_watch_then_the_cleanup(
    demo: Project, story: Endpoint
) -> None:
    prod = story
    staged = demo.run()
    assert staged.ret == 0, staged.stdout.str()
    record = json.loads((demo.path / ".dbgate" / "gate-record.json").read_text())
    measured = {q["label"]: q for q in record["queries"]}
    assert "recipes_of_a_cook" in measured and measured["recipes_of_a_cook"]["after_ms"] > 0

    first = demo.deploy("-rA")
    assert first.ret == 0, first.stdout.str()
    assert outcome_of(demo, deployed(CLEANUP)) == "SKIPPED"
    assert len(applied_versions(prod)) == 5
    baseline = [line for line in first.stdout.lines if "baseline_recorded" in line]
    assert baseline and "deploy #1" in first.stdout.str(), first.stdout.str()

    with connection(prod, "test", "test") as conn:
        conn.execute("VACUUM ANALYZE")  # what autovacuum does after the backfill
    traffic(prod)
    watched = demo.run("-rA", "--junitxml=watch.xml", mode="watch")
    assert watched.ret == 0, watched.stdout.str()
    items = watch_items(demo)
    cook = items["dbgate::watch::query[recipes_of_a_cook]"]
    assert cook["outcome"] == "passed", cook
    figures = cook["figures"]
    assert isinstance(figures, dict)
    assert figures["baseline_calls"] >= 150 and figures["period_calls"] == 150
    assert str(figures["summary"]).startswith("staging: ")
    assert "; production: " in str(figures["summary"])
    for signal in ("xact_rollback", "deadlocks", "temp_files"):
        assert f"dbgate::watch::signal[{signal}]" in items
    assert watch_record(demo)["passed"] is True
    assert "eligible from" in watched.stdout.str()
    junit = (demo.path / "watch.xml").read_text()
    assert 'name="staging_change"' in junit and 'name="period_ms"' in junit

    move_back(prod, 8)  # the period is over
    later = demo.deploy("-rA")
    assert later.ret == 0, later.stdout.str()
    assert outcome_of(demo, deployed(CLEANUP)) == "PASSED"
    assert "its hold-back has passed and the watch of" in later.stdout.str()
    assert "category" not in columns(prod, "recipes")
    assert len(applied_versions(prod)) == 6


def test_a_query_slower_on_production_fails_the_watch_and_keeps_the_cleanup_held(
    demo: Project, story: Endpoint
) -> None:
    prod = story
    demo.ini(dbgate_max_regression="off")  # the watch judges production's top queries
    assert demo.run().ret == 0
    assert demo.deploy().ret == 0
    with connection(prod, "test", "test") as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("DROP INDEX recipes_created_at_idx")  # by hand, after the deploy
    traffic(prod)
    watched = demo.run("-rA", mode="watch")
    assert watched.ret == 1, watched.stdout.str()
    text = watched.stdout.str()
    slower = [n for n, i in watch_items(demo).items() if i["outcome"] == "failed"]
    assert len(slower) == 1 and "ORDER BY created_at DESC LIMI" in slower[0], slower
    assert "is slower on production since the deploy: production: +" in text
    assert "production's top queries, #1" in text
    assert watch_record(demo)["passed"] is False

    move_back(prod, 8)
    later = demo.deploy("-rA")
    assert later.ret == 0, later.stdout.str()
    assert outcome_of(demo, deployed(CLEANUP)) == "SKIPPED"
    held = later.stdout.str()
    assert "waits for production's metrics to be flat: the watch of" in held
    assert "FAILED" in held and "slower" in held
    assert "category" in columns(prod, "recipes")  # the cleanup did not run

    # A team that chose the period alone: the same deploy releases it.
    alone = demo.deploy("-rA", "--dbgate-holdback-requires=time")
    assert alone.ret == 0, alone.stdout.str()
    assert outcome_of(demo, deployed(CLEANUP)) == "PASSED"


def test_without_a_watch_record_the_cleanup_stays_held_saying_what_to_run(
    demo: Project, story: Endpoint
) -> None:
    prod = story
    demo.ini(dbgate_max_regression="off")
    assert demo.run().ret == 0
    assert demo.deploy().ret == 0
    move_back(prod, 8)
    later = demo.deploy("-rA")
    assert later.ret == 0
    assert outcome_of(demo, deployed(CLEANUP)) == "SKIPPED"
    assert "there is no watch record at" in later.stdout.str()
    assert "pytest --dbgate=watch" in later.stdout.str()


def test_the_watch_reads_only_and_needs_a_deploy(demo: Project, story: Endpoint) -> None:
    prod = story
    result = demo.run("-rA", mode="watch")
    assert result.ret == 1
    assert "no deploy is recorded on production" in result.stdout.str()
    assert "run `pytest --dbgate=production` first" in result.stdout.str()
    assert query(prod, "SELECT to_regclass('dbgate.deploys')")[0][0] is None
    assert not (demo.path / ".dbgate" / "watch-record.json").exists()


def test_without_pg_stat_statements_the_signals_are_watched_but_nothing_is_vouched_for(
    demo: Project, demo_prod: Endpoint, staging_server: Endpoint
) -> None:
    demo.ini(dbgate_max_regression="off").against(demo_prod, staging_server)
    assert demo.run().ret == 0
    deployed_ = demo.deploy("-rA")
    assert deployed_.ret == 0, deployed_.stdout.str()
    assert outcome_of(demo, "dbgate::postdeploy::baseline_recorded") == "PASSED"
    results = json.loads((demo.path / ".dbgate" / "production-results.json").read_text())
    baseline = next(i for i in results["items"] if i["nodeid"].endswith("baseline_recorded"))
    assert "database signals only; pg_stat_statements is not installed" in str(
        baseline["figures"]["summary"]
    )
    assert "DbgateWarning: pg_stat_statements is not installed" in deployed_.stdout.str()
    watched = demo.run("-rA", mode="watch")
    assert watched.ret == 1, watched.stdout.str()  # it cannot vouch for the queries
    items = watch_items(demo)
    assert not [n for n in items if "::query[" in n]
    assert items["dbgate::watch::signal[deadlocks]"]["outcome"] == "passed"
    record = items["dbgate::verdict::watch_record"]
    assert record["outcome"] == "failed"
    assert "the watch judged no query: pg_stat_statements is not installed" in str(
        record["message"]
    )
    assert watch_record(demo)["passed"] is False


def test_the_watch_without_a_production_database_is_a_usage_error(project: Project) -> None:
    result = project.migrations(REPO / "migrations").run(mode="watch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--dbgate=watch has no production database to watch" in result.stderr.str()


# -- quoted mixed-case names, as every Prisma project has them ------------------------------------

MIXED = [
    'SELECT "Title" FROM "Document" WHERE id = %s',
    'SELECT n FROM "My Table" WHERE id = %s',
    'SELECT "Betrag €" FROM "Billing Ops"."Rechnungen-Ü" WHERE id = %s',
]


def mixed_traffic(prod: Endpoint, calls: int = 120) -> None:
    rng = random.Random(calls)
    with connection(prod, "app", "app") as conn:
        for _ in range(calls):
            for text in MIXED:
                conn.execute(text, (rng.randint(1, 3000),))  # type: ignore[arg-type]


def test_quoted_mixed_case_tables_flat_pass_and_one_made_slower_fails_alone(
    project: Project,
    source_server: Endpoint,
    staging_server: Endpoint,
    request: pytest.FixtureRequest,
) -> None:
    seed = [PROJECTS / "mixed_case" / "seed.sql"]
    with seeded_database(source_server, request, seed) as prod:
        with connection(prod, "test", "test") as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        mixed_traffic(prod)
        project.migrations(PROJECTS / "mixed_case" / "release").ini(
            dbgate_max_regression="off",
            dbgate_lint_rules="require-concurrent-index-creation=report",
        ).against(prod, staging_server)
        assert project.run().ret == 0
        assert project.deploy().ret == 0

        mixed_traffic(prod)
        flat = project.run("-rA", mode="watch")
        assert flat.ret == 0, flat.stdout.str()
        judged = {n: i for n, i in watch_items(project).items() if "::query[" in n}
        assert (
            len(
                [
                    n
                    for n in judged
                    if '"Document"' in n or '"My Table"' in n or '"Rechnungen-Ü"' in n
                ]
            )
            == 3
        ), sorted(judged)
        assert all(i["outcome"] == "passed" for i in judged.values())

        with connection(prod, "test", "test") as conn:  # by hand, after the deploy
            conn.execute('ALTER TABLE "Document" DROP CONSTRAINT "Document_pkey"')
        mixed_traffic(prod)
        slower = project.run("-rA", mode="watch")
        assert slower.ret == 1, slower.stdout.str()
        failed = [n for n, i in watch_items(project).items() if i["outcome"] == "failed"]
        assert len(failed) == 1 and '"Document"' in failed[0], failed
        assert "is slower on production since the deploy" in slower.stdout.str()
