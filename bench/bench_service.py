"""The HTTP service under load on PostgreSQL, over loopback.

1. A fresh schema on PostgreSQL (dropped afterwards), migrated; synthetic_scenario(--requests,
   seed) imported with fairshare.store.repo.import_scenario into an open round, plus a committee
   member and --members team members with API tokens (the seeding is not timed).
2. uvicorn serving serve_app() (`bench_service:app_factory --factory --workers W`, as `fairshare
   serve` runs it: create_app with the start-up objects frozen out of the garbage collector) in a
   subprocess of its own process group, the database URL carrying the schema as its search_path.
3. Through the HTTP API, as the committee: close and propose the round (timed: the target is under
   5 s for both; the engine's own solve time is read back from the round's runs), then publish.
4. GET /api/v1/rounds/{id}/entitlements/{node} for random nodes under random members' tokens,
   for --seconds (after --warmup) at each of --clients concurrent clients, each client with one
   keep-alive connection, all in one asyncio process (on uvloop when installed), once per generator:
     * raw: a minimal HTTP/1.1 client on asyncio streams (pre-built request bytes, status line and
       Content-Length parsed; every node's first answer and 1 in 20 after parsed as JSON and
       checked to be that node's).  About 0.05 ms of CPU per request: the figures measure the server.
     * httpx: an httpx.AsyncClient per client, as an application would call the service.  About
       1 ms of CPU per request: at 200 closed-loop clients on 2 shared cores the load generator
       itself caps the throughput (at ~500-600/s), so this row measures httpx as much as the server.
   and in two modes:
     * closed loop: each client sends its next request as soon as its last one is answered. This
       is the heaviest load C clients can make, and it measures the server at saturation: by
       Little's law the mean latency is C / throughput, so at 200 clients p99 < 100 ms needs
       more than 2,000 answers a second.
     * paced (--think seconds, default 1): each client waits an exponential think time between
       requests (about C/think requests a second offered); latency is counted from when the request
       was due, so a server that falls behind is charged for the queue (no coordinated omission).
   Latency is the client's wall time per request; answered/s counts 200s that arrived within the
   counted seconds. Any other answer, a wrong body or a transport error is counted as an error.
   The CPU time of the uvicorn processes (from /proc) and of the load generator is reported per
   request: on a shared 2-core machine they compete with each other, with PostgreSQL and with
   anything else, so the load average is recorded per row.

Targets (issue 3): p99 under 100 ms at 200 clients; close + propose of 5,000 requests under 5 s.
The run ends with one PASS/MISS line per 200-client row (mode x generator).

    .venv/bin/python bench/bench_service.py [--clients 50,200] [--seconds 10] [--workers 2]
        [--requests 5000] [--think 1.0] [--modes closed,paced] [--generators raw,httpx] [--pool N]
        [--http auto|h11|httptools] [--loop auto|asyncio|uvloop] [--url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import engine_fingerprint, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_URL = os.environ.get("FAIRSHARE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
P99_TARGET_MS, P99_TARGET_CLIENTS = 100.0, 200
# as common proxies do; with uvicorn's default of 5 s, a paced client that thinks longer races the
# server closing its idle connection and sees a RemoteProtocolError that says nothing about the service
KEEP_ALIVE_S = 75
PROPOSE_TARGET_S, PROPOSE_TARGET_N = 5.0, 5000
SERVICE_SOURCES = [ROOT / "src" / "fairshare" / d for d in ("service", "store")]


def service_fingerprint() -> dict[str, str]:
    """sha256 (12 hex digits) of src/fairshare/service and store, as engine_fingerprint does for the engine."""
    h = hashlib.sha256()
    for base in SERVICE_SOURCES:
        for path in sorted(base.rglob("*.py")):
            h.update(str(path.relative_to(ROOT)).encode())
            h.update(path.read_bytes())
    return {"service_sha256": h.hexdigest()[:12]}


# --- the database ---------------------------------------------------------------------------


def schema_url(url: str, schema: str) -> str:
    """The URL with the schema as search_path (psycopg passes `options` to the server)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def seed(url: str, schema: str, n: int, seed_: int, members: int) -> dict[str, Any]:
    """Create and migrate the schema, import the synthetic lab into an open round, make tokens."""
    from sqlalchemy import create_engine, text

    from fairshare import workflow as wf
    from fairshare.scenario.synthetic import synthetic_scenario
    from fairshare.store.db import database_url, make_engine, session_factory, upgrade
    from fairshare.store.repo import create_token, ensure_member, grant, import_scenario

    admin = create_engine(database_url(url))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    engine = make_engine(schema_url(url, schema))
    try:
        upgrade(engine)
        scenario = synthetic_scenario(n, seed=seed_)
        leaves = [node.name for node in scenario.nodes() if not node.children]
        with session_factory(engine)() as s:
            import_scenario(s, scenario, round_name=f"bench-{n}")
            chair = ensure_member(s, "bench-chair")
            grant(s, chair, wf.Role.committee, scenario.org.name)
            tokens = []
            for i in range(members):
                member = ensure_member(s, f"bench-member-{i}")
                grant(s, member, wf.Role.member, leaves[i % len(leaves)])
                tokens.append(create_token(s, member))
            chair_token = create_token(s, chair)
            s.commit()
            round_id = s.execute(text("select id from rounds where name = :n"), {"n": f"bench-{n}"}).scalar_one()
    finally:
        engine.dispose()
    return {
        "round_id": round_id,
        "chair": chair_token,
        "tokens": tokens,
        "nodes": [node.name for node in scenario.nodes()],
        "requests": len(scenario.requests),
    }


def drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    from fairshare.store.db import database_url

    admin = create_engine(database_url(url))
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


# --- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_factory() -> Any:
    """serve_app (create_app as `fairshare serve` runs it) on FAIRSHARE_DATABASE_URL; with
    BENCH_POOL_SIZE, on an engine with that many connections per worker (the default engine has
    20 + 20 overflow)."""
    from fairshare.service.api.app import serve_app
    from fairshare.store.db import make_engine

    pool = os.environ.get("BENCH_POOL_SIZE")
    return serve_app(make_engine(None, pool_size=int(pool), max_overflow=0) if pool else None)


def start_server(
    db_url: str, port: int, workers: int, pool: int | None, http: str = "auto", loop: str = "auto"
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FAIRSHARE_DATABASE_URL": db_url,
        "BENCH_POOL_SIZE": str(pool or ""),
        "FAIRSHARE_SECRET_KEY": os.environ.get("FAIRSHARE_SECRET_KEY") or uuid.uuid4().hex,
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench_service:app_factory",
        "--factory",
        "--app-dir",
        str(ROOT / "bench"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--timeout-keep-alive",
        str(KEEP_ALIVE_S),
        "--http",
        http,
        "--loop",
        loop,
    ]
    # a session of its own, so that stopping it stops its workers too
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("uvicorn did not answer /healthz within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to uvicorn's process group (master and workers), SIGKILL after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)  # anyone left in the group?
            except ProcessLookupError:
                return
            time.sleep(0.1)
    proc.wait()


def process_tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out += process_tree(int(child))
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the uvicorn workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


# --- the load -------------------------------------------------------------------------------


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on one asyncio stream: pre-built request bytes, the
    status line and Content-Length parsed, the body read whole.  It costs a fraction of httpx's
    CPU per request, so that on a machine the server shares the figures measure the server."""

    def __init__(self, host: str, port: int, round_id: int, token: str, rng: random.Random) -> None:
        self.host, self.port, self.rng = host, port, rng
        self.round_id = round_id
        self.auth = f"Authorization: Bearer {token}\r\nHost: {host}:{port}\r\n\r\n"
        self.requests: dict[str, bytes] = {}
        self.checked: set[str] = set()
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, node: str) -> tuple[bool, str]:
        req = self.requests.get(node)
        if req is None:
            req = self.requests[node] = (
                f"GET /api/v1/rounds/{self.round_id}/entitlements/{node} HTTP/1.1\r\n" + self.auth
            ).encode()
        try:
            if self.conn is None:
                self.conn = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.conn
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = await reader.readexactly(length)
            if close:
                await self.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            await self.close()
            return False, type(e).__name__
        if status != b"200":
            return False, status.decode(errors="replace")
        # every node's first answer, and one in 20 after, is parsed and checked as JSON of that node
        if node not in self.checked or self.rng.random() < 0.05:
            self.checked.add(node)
            try:
                got = json.loads(body)
            except ValueError:
                return False, "body not JSON"
            if got.get("node") != node or got.get("round_id") != self.round_id or "total" not in got:
                return False, "wrong body"
        return True, "200"

    async def close(self) -> None:
        if self.conn is not None:
            writer = self.conn[1]
            self.conn = None
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


class HttpxClient:
    """An httpx.AsyncClient with one keep-alive connection (a shared pool of C connections costs
    httpcore O(C) work per request, which at 200 clients makes the load generator the bottleneck)."""

    TLS = None  # plain http, but each client would load the CA bundle again

    def __init__(self, base: str, round_id: int, token: str) -> None:
        if HttpxClient.TLS is None:
            HttpxClient.TLS = ssl.create_default_context()
        self.client = httpx.AsyncClient(
            base_url=base, timeout=30, limits=httpx.Limits(max_connections=1), verify=HttpxClient.TLS
        )
        self.round_id, self.headers = round_id, {"Authorization": f"Bearer {token}"}

    async def get(self, node: str) -> tuple[bool, str]:
        try:
            r = await self.client.get(f"/api/v1/rounds/{self.round_id}/entitlements/{node}", headers=self.headers)
        except httpx.HTTPError as e:
            return False, type(e).__name__
        return r.status_code == 200, str(r.status_code)

    async def close(self) -> None:
        await self.client.aclose()


GENERATORS = ("raw", "httpx")


async def load(
    base: str,
    round_id: int,
    nodes: list[str],
    tokens: list[str],
    clients: int,
    seconds: float,
    think: float | None,
    warmup: float,
    generator: str = "raw",
) -> dict[str, Any]:
    """`clients` concurrent clients for `warmup` + `seconds`; only the last `seconds` are counted."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    in_window = 0  # answers that arrived within the counted seconds
    served = 0  # every answer, warm-up included (for the server's CPU per request)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    pool: list[RawClient | HttpxClient] = [
        RawClient(host, int(port), round_id, tokens[i % len(tokens)], random.Random(-i - 1))
        if generator == "raw"
        else HttpxClient(base, round_id, tokens[i % len(tokens)])
        for i in range(clients)
    ]
    try:
        start = time.perf_counter()
        counted_from, end = start + warmup, start + warmup + seconds
        give_up = end + max(5.0, seconds)  # paced: a server that fell behind gets this long to catch up

        async def one(i: int) -> None:
            nonlocal in_window, served
            client = pool[i]
            rng = random.Random(i)
            due = time.perf_counter() + (rng.expovariate(1 / think) if think else 0.0)
            while True:
                if think:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                else:
                    due = time.perf_counter()
                if due >= end:
                    return
                if time.perf_counter() > give_up:  # still behind: count what is left as not sent
                    while due < end:
                        if due >= counted_from:
                            errors["not sent (behind)"] = errors.get("not sent (behind)", 0) + 1
                        due += rng.expovariate(1 / think) if think else end
                    return
                ok, what = await client.get(nodes[rng.randrange(len(nodes))])
                done = time.perf_counter()
                served += 1
                if due >= counted_from:
                    if ok:
                        latencies.append(done - due)
                    else:
                        errors[what] = errors.get(what, 0) + 1
                if ok and counted_from <= done < end:
                    in_window += 1
                if think:
                    due += rng.expovariate(1 / think)

        await asyncio.gather(*(one(i) for i in range(clients)))
    finally:
        await asyncio.gather(*(c.close() for c in pool))
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "answered": len(latencies),
        "served": served,
        "errors": errors,
        "throughput": in_window / seconds,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
    }


def run_async(coro: Any) -> Any:
    """On uvloop when it is installed (as uvicorn's server is), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_load(
    base: str,
    server: subprocess.Popen[bytes],
    seeded: dict[str, Any],
    clients: int,
    seconds: float,
    think: float | None,
    warmup: float,
    generator: str,
) -> dict[str, Any]:
    server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
    wall = time.perf_counter()
    row = run_async(
        load(base, seeded["round_id"], seeded["nodes"], seeded["tokens"], clients, seconds, think, warmup, generator)
    )
    wall = time.perf_counter() - wall
    row.update(
        mode="paced" if think else "closed",
        generator=generator,
        clients=clients,
        seconds=seconds,
        think=think,
        offered=clients / think if think else None,
        server_cpu_s=cpu_seconds(server.pid) - server_cpu,
        client_cpu_s=time.process_time() - client_cpu,
        wall_s=wall,
        load_average=os.getloadavg()[0],
    )
    row["server_cpu_ms_per_request"] = row["server_cpu_s"] / max(1, row["served"]) * 1000
    row["client_cpu_ms_per_request"] = row["client_cpu_s"] / max(1, row["served"]) * 1000
    return row


# --- the report -----------------------------------------------------------------------------


def p99_status(row: dict[str, Any]) -> str:
    if row["clients"] != P99_TARGET_CLIENTS:
        return "-"
    if row["errors"]:
        return "MISS"
    return "PASS" if row["p99_ms"] < P99_TARGET_MS else "MISS"


HEADERS = [
    "load",
    "generator",
    "clients",
    "answered/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "server CPU ms/req",
    "load gen. CPU ms/req",
    "load avg",
    "target p99",
    "p99 / target",
    "PASS/MISS",
]


def load_cells(row: dict[str, Any]) -> list[str]:
    mode = "closed loop" if row["mode"] == "closed" else f"paced, think {row['think']:g} s (~{row['offered']:.0f}/s)"
    target = row["clients"] == P99_TARGET_CLIENTS
    errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0"
    return [
        mode,
        row["generator"],
        str(row["clients"]),
        f"{row['throughput']:.0f}",
        f"{row['p50_ms']:.1f}",
        f"{row['p99_ms']:.1f}",
        f"{row['max_ms']:.0f}",
        errors,
        f"{row['server_cpu_ms_per_request']:.2f}",
        f"{row['client_cpu_ms_per_request']:.2f}",
        f"{row['load_average']:.1f}",
        f"< {P99_TARGET_MS:g} ms" if target else "-",
        f"{row['p99_ms'] / P99_TARGET_MS:.2f}" if target else "-",
        p99_status(row),
    ]


def verdict_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One PASS/MISS line per row at the target's clients, and why a miss may not be the server's."""
    out = []
    for r in rows:
        if r["clients"] != P99_TARGET_CLIENTS:
            continue
        mode = "closed loop" if r["mode"] == "closed" else f"paced ~{r['offered']:.0f}/s"
        errors = f", {sum(r['errors'].values())} errors" if r["errors"] else ""
        note = ""
        if p99_status(r) == "MISS" and r["client_cpu_ms_per_request"] > r["server_cpu_ms_per_request"]:
            note = " (the load generator spent more CPU per request than the server)"
        out.append(
            f"TARGET p99 < {P99_TARGET_MS:g} ms at {P99_TARGET_CLIENTS} clients, {mode}, {r['generator']} "
            f"generator: {p99_status(r)} (p99 {r['p99_ms']:.1f} ms, {r['throughput']:.0f} answers/s{errors}, "
            f"load average {r['load_average']:.1f}){note}"
        )
    return out


def round_cells(r: dict[str, Any]) -> list[list[str]]:
    status = "PASS" if r["close_propose_s"] < PROPOSE_TARGET_S else "MISS"
    if r["requests"] != PROPOSE_TARGET_N:
        status = "-"
    return [
        ["close (HTTP)", f"{r['close_s']:.2f}", "-", "-", "-"],
        ["propose (HTTP)", f"{r['propose_s']:.2f}", "-", "-", "-"],
        ["  of which the engine's solve", f"{r['solve_s']:.2f}", "-", "-", "-"],
        [
            f"close + propose, {r['requests']:,} requests",
            f"{r['close_propose_s']:.2f}",
            f"< {PROPOSE_TARGET_S:g} s",
            f"{r['close_propose_s'] / PROPOSE_TARGET_S:.2f}",
            status,
        ],
        ["publish (HTTP)", f"{r['publish_s']:.2f}", "-", "-", "-"],
    ]


def markdown(rnd: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    heads = ["step", "seconds", "target", "seconds / target", "PASS/MISS"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(c) + " |" for c in round_cells(rnd)]
    lines += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(load_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def print_tables(rnd: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(markdown(rnd, rows))
        return
    colour = {"PASS": "[green]PASS[/]", "MISS": "[bold red]MISS[/]"}
    console = Console(width=200)
    t = Table(title=f"a round of {rnd['requests']:,} requests through the HTTP API")
    for h in ["step", "seconds", "target", "seconds / target", "PASS/MISS"]:
        t.add_column(h, justify="right")
    for c in round_cells(rnd):
        c[-1] = colour.get(c[-1], c[-1])
        t.add_row(*c)
    console.print(t)
    t = Table(title="GET /api/v1/rounds/{id}/entitlements/{node}")
    for h in HEADERS:
        t.add_column(h, justify="right")
    for r in rows:
        c = load_cells(r)
        c[-1] = colour.get(c[-1], c[-1])
        t.add_row(*c)
    console.print(t)


def timed(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    r = client.post(path)
    elapsed = time.perf_counter() - start
    if r.status_code != 200:
        raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL URL (a schema is created in it and dropped)")
    ap.add_argument("--requests", type=int, default=PROPOSE_TARGET_N, help="requests in the round")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", type=int, default=50, help="members with tokens the clients use in turn")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument(
        "--pool",
        type=int,
        default=None,
        help="database connections per worker (default: the service's own, 20 + 20 overflow)",
    )
    ap.add_argument("--http", default="auto", help="uvicorn's --http (auto: httptools when installed; h11)")
    ap.add_argument("--loop", default="auto", help="uvicorn's --loop (auto: uvloop when installed; asyncio)")
    ap.add_argument("--clients", default="50,200", help="comma-separated concurrent clients")
    ap.add_argument("--seconds", type=float, default=10.0, help="counted seconds per load level")
    ap.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds before each load level")
    ap.add_argument("--modes", default="closed,paced", help="closed (no think time) and/or paced")
    ap.add_argument("--think", type=float, default=1.0, help="mean think time per client in the paced mode")
    ap.add_argument(
        "--generators",
        default=",".join(GENERATORS),
        help="raw (a minimal asyncio HTTP/1.1 client) and/or httpx, each row run with each",
    )
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if not args.url.startswith("postgresql"):
        sys.exit("bench_service.py measures PostgreSQL; pass --url postgresql+psycopg://...")

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        **machine(),
        **engine_fingerprint(),
        **service_fingerprint(),
        "requests": args.requests,
        "seed": args.seed,
        "workers": args.workers,
        "http": args.http,
        "loop": args.loop,
        "pool": args.pool,
        "generators": args.generators,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "think": args.think,
        "load_average_before": os.getloadavg()[0],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(
        f"{meta['cpus']} CPUs ({meta['cpu_model']}), python {meta['python']}; engine {meta['engine_sha256']}, "
        f"service {meta['service_sha256']}; load average {meta['load_average_before']:.2f}",
        flush=True,
    )
    schema = "bench_" + uuid.uuid4().hex[:10]
    server = None
    try:
        start = time.perf_counter()
        seeded = seed(args.url, schema, args.requests, args.seed, args.members)
        print(
            f"seeded schema {schema}: {seeded['requests']:,} requests, {len(seeded['nodes'])} org nodes, "
            f"{args.members} members in {time.perf_counter() - start:.1f} s (not timed)",
            flush=True,
        )
        port = free_port()
        server = start_server(schema_url(args.url, schema), port, args.workers, args.pool, args.http, args.loop)
        base = f"http://127.0.0.1:{port}"
        rid = seeded["round_id"]
        with httpx.Client(
            base_url=base + "/api/v1", timeout=300, headers={"Authorization": f"Bearer {seeded['chair']}"}
        ) as c:
            close_s = timed(c, f"/rounds/{rid}/close")
            propose_s = timed(c, f"/rounds/{rid}/propose")
            runs = c.get(f"/rounds/{rid}/runs").json()
            publish_s = timed(c, f"/rounds/{rid}/publish")
        rnd = {
            "requests": seeded["requests"],
            "close_s": close_s,
            "propose_s": propose_s,
            "solve_s": runs[0]["solve_seconds"],
            "close_propose_s": close_s + propose_s,
            "publish_s": publish_s,
        }
        print(
            f"close {close_s:.2f} s + propose {propose_s:.2f} s (engine {rnd['solve_s']:.2f} s) = "
            f"{rnd['close_propose_s']:.2f} s; publish {publish_s:.2f} s",
            flush=True,
        )

        rows = []
        generators = [g.strip() for g in args.generators.split(",") if g.strip()]
        if set(generators) - set(GENERATORS):
            sys.exit(f"--generators: choose from {', '.join(GENERATORS)}")
        levels = [
            (mode, clients, gen)
            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]
            for clients in [int(c) for c in args.clients.split(",") if c.strip()]
            for gen in generators
        ]
        for mode, clients, gen in levels:
            think = args.think if mode == "paced" else None
            row = run_load(base, server, seeded, clients, args.seconds, think, args.warmup, gen)
            rows.append(row)
            print(
                f"  {mode} {clients} clients, {gen}: {row['throughput']:.0f}/s, p50 {row['p50_ms']:.1f} ms, "
                f"p99 {row['p99_ms']:.1f} ms, errors {row['errors'] or 0}, server CPU "
                f"{row['server_cpu_ms_per_request']:.2f} ms/request, load generator CPU "
                f"{row['client_cpu_ms_per_request']:.2f} ms/request, load average {row['load_average']:.2f}",
                flush=True,
            )
            (out / "service.json").write_text(json.dumps({"meta": meta, "round": rnd, "rows": rows}, indent=2))
    finally:
        if server is not None:
            stop_server(server)
        drop_schema(args.url, schema)

    print_tables(rnd, rows)
    (out / "service.md").write_text(markdown(rnd, rows) + "\n\n" + "\n".join(verdict_lines(rows)) + "\n")
    print(
        f"uvicorn --workers {args.workers}; load from one asyncio process (raw: a minimal HTTP/1.1 client; httpx: "
        f"httpx.AsyncClient), one keep-alive connection per client, on the same "
        f"{os.cpu_count()} CPUs; {args.warmup:g} s warm-up + {args.seconds:g} s counted per row. "
        "Closed loop: no think time (saturation; mean latency = clients / throughput). "
        f"Paced: exponential think time, mean {args.think:g} s, latency from when each request was due."
    )
    print(f"rows written to {out / 'service.json'} and {out / 'service.md'}")
    for line in verdict_lines(rows):
        print(line)


if __name__ == "__main__":
    main()
