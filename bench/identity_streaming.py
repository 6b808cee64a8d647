"""Streaming identity resolution: one incoming record per batch against 1,000,000 golden records
in PostgreSQL. Latency per record (p50/p99) and the resolving process's memory.

Each incoming record goes through what the core does with a batch of one, in one transaction:
ledger check, the identity flow's handler (profile, blocking-key prefetch, pure resolver,
survivorship, golden event, writes), outbox rows, ledger row, commit. Kafka is left out: the
figure is the store-side cost of resolving one record.

The golden records are loaded straight into the identity tables with COPY (golden_records,
golden_members, source_records, block_keys, block_key_counts), as the flow would have left them
after resolving each source record into its own golden record. Generating them through the
normalizers would take longer than the whole run, so the bench builds the normalized profiles
directly and checks, on a sample, that `build_profile` gives exactly those profiles and
`blocking_keys` those keys. Half the incoming records are re-entries of a loaded entity (name
with or without city and legal form, phone with or without area code, address with building
detail), half are new.

Reference measured in the same run: the same kind of incoming records against a store of
10,000 golden records. The ratio p99(large) / p99(small) says how much the size of the store
costs.

Per record it also prints this process's CPU, the statements sent, and a reference measured
just before each record on the same engine: one indexed SELECT in its own transaction, so
that the latency has a baseline that shares the machine's load.

    python -m bench.identity_streaming [--golden 1000000] [--small 10000] [--incoming 2000]
    python -m bench.identity_streaming --golden 1000000 --load-only DB   # keep a loaded store
    python -m bench.identity_streaming --from-db DB    # measure on copies of it (no reload)

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`); creates and drops its own
databases. The load runs in a child process, so the memory figure is the resolver's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stdnum.cn import uscc

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
TARGET_P99_MS, TARGET_RSS_MIB = 10.0, 1024.0
ENTITY = "customer"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

# (province, city, area code, region code, districts)
CITIES = [
    ("广东", "深圳", "755", "440300", ["南山区", "福田区", "宝安区", "龙岗区"]),
    ("广东", "广州", "20", "440100", ["天河区", "越秀区", "海珠区"]),
    ("浙江", "杭州", "571", "330100", ["西湖区", "滨江区", "余杭区"]),
    ("江苏", "苏州", "512", "320500", ["吴中区", "相城区", "姑苏区"]),
    ("江苏", "南京", "25", "320100", ["玄武区", "鼓楼区", "江宁区"]),
    ("山东", "青岛", "532", "370200", ["黄岛区", "崂山区", "市南区"]),
    ("福建", "厦门", "592", "350200", ["思明区", "湖里区", "集美区"]),
    ("四川", "成都", "28", "510100", ["武侯区", "锦江区", "成华区"]),
    ("湖北", "武汉", "27", "420100", ["江汉区", "洪山区", "武昌区"]),
    ("湖南", "长沙", "731", "430100", ["岳麓区", "天心区", "开福区"]),
]
BRAND = (
    "华强盛达信德鑫宏泰源通恒瑞丰海天新金隆兴安美博晨创佳利远联合中正东方长城光明永和振邦嘉豪"
    "威腾飞凯锐智诚铭汇富康润久辉星月顺发万象祥云龙凤亿维尚品优卓越精宝丽雅欧诺成荣昌旺福鼎力"
    "途航宇宙辰耀亮晶彩虹霖露晴朗旭洋江河湖山川峰岭松柏梅"
)
INDUSTRY = ["科技", "电子", "机械", "贸易", "物流", "化工", "食品", "服饰", "五金", "包装"]
ROADS = ["科技路", "人民路", "建设路", "解放路", "中山路", "工业大道", "创业路", "学府路", "东方路"]
SYSTEMS = ["erp", "crm", "drp"]


# --------------------------------------------------------------------------- synthetic data


@functools.cache
def place_pairs() -> frozenset[str]:
    """Two-character starts of a brand that the name normalizer takes for a place."""
    from flows.identity.normalize import normalize_org_name

    chars = sorted(set(BRAND))
    return frozenset(
        a + b
        for a in chars
        for b in chars
        if normalize_org_name(f"深圳{a}{b}鑫科技有限公司").brand != f"{a}{b}鑫"
    )


def entity_record(rng: random.Random, i: int) -> dict[str, Any]:
    """A canonical Customer body of entity i, deterministic for (seed, i)."""
    province, city, area, region, districts = CITIES[i % len(CITIES)]
    brand = "".join(rng.choice(BRAND) for _ in range(3))
    while brand[:2] in place_pairs():
        # 嘉兴, 东川: a place at the start of a name is read as a region, not as the brand
        brand = "".join(rng.choice(BRAND) for _ in range(3))
    record: dict[str, Any] = {
        "kind": "organization",
        "name": f"{city}{brand}{rng.choice(INDUSTRY)}有限公司",
        "phones": [f"0{area}-{rng.randrange(20_000_000, 89_999_999)}"],
        "addresses": [
            {
                "province": province,
                "city": city,
                "district": rng.choice(districts),
                "street": f"{rng.choice(ROADS)}{rng.randrange(1, 999)}号",
            }
        ],
    }
    if rng.random() < 0.5:
        body = f"91{region}{rng.randrange(10**9):09d}"
        code = body + uscc.calc_check_digit(body)
        record["identifiers"] = [{"scheme": "uscc", "value": code}]
    return record


def variant(rng: random.Random, record: dict[str, Any]) -> dict[str, Any]:
    """The same entity typed again in another system."""
    out = json.loads(json.dumps(record))
    city = out["addresses"][0]["city"]
    name = out["name"].removeprefix(city).removesuffix("有限公司")
    out["name"] = rng.choice(
        [f"{name}有限公司", f"{city}{name}股份有限公司", f"{name}({city})有限公司", f"{city}{name}"]
    )
    phone = out["phones"][0].split("-")[1]
    out["phones"] = [rng.choice([phone, out["phones"][0], f"+86 {out['phones'][0][1:]}"])]
    if rng.random() < 0.5:
        out["addresses"][0]["street"] += f"{rng.choice(['创业园', '大厦'])}{rng.randrange(1, 20)}楼"
    if rng.random() < 0.5:
        out.pop("identifiers", None)  # the other system never had the credit code
    return out


def fast_profile(record: dict[str, Any]) -> Any:
    """What build_profile gives for entity_record()'s shape, without the normalizers."""
    from flows.identity.profile import Profile

    address = record["addresses"][0]
    city = address["city"]
    core = record["name"].removeprefix(city).removesuffix("有限公司")
    ids = tuple(("uscc", i["value"]) for i in record.get("identifiers", ()))
    return Profile(
        entity=ENTITY,
        kind="organization",
        names=(core,),
        brands=(core[:3],),
        cities=(city,),
        streets=(address["street"],),
        phones=("l:" + record["phones"][0].split("-")[1],),
        strong_ids=ids,
    )


def golden_rows(
    seed: int, start: int, stop: int
) -> Iterator[tuple[str, str, str, dict[str, Any], Any]]:
    """(golden id, source system, source id, source record, profile) of entities start..stop-1."""
    from flows.identity.resolver import golden_id_for

    for i in range(start, stop):
        rng = random.Random(seed * 1_000_003 + i)
        record = entity_record(rng, i)
        system, sid = SYSTEMS[i % len(SYSTEMS)], f"S{i}"
        yield golden_id_for(ENTITY, system, sid), system, sid, record, fast_profile(record)


def check_fast_profiles(seed: int, n: int = 300) -> None:
    """The shortcut must give what the flow would have stored, or the bench measures nothing."""
    from flows.identity.profile import build_profile

    for i in range(n):
        rng = random.Random(seed * 1_000_003 + i)
        record = entity_record(rng, i)
        built = build_profile(ENTITY, record)
        fast = fast_profile(record)
        if built != fast:
            raise AssertionError(f"fast profile differs from build_profile:\n{built}\n{fast}")


# --------------------------------------------------------------------------- load (child)


GOLDEN_COLUMNS = [
    "golden_id",
    "entity",
    "profile",
    "record",
    "winners",
    "status",
    "name",
    "search_text",
    "member_count",
    "version",
    "created_at",
    "updated_at",
]
MEMBER_COLUMNS = [
    "entity",
    "source_system",
    "source_id",
    "golden_id",
    "action",
    "score",
    "evidence",
    "linked_at",
]
SOURCE_COLUMNS = [
    "entity",
    "source_system",
    "source_id",
    "source_version",
    "source_ts",
    "op",
    "payload",
    "revision",
    "last_message_id",
    "updated_at",
]


async def _load(dbname: str, golden: int, seed: int, cap: int, chunk: int = 50_000) -> None:
    import asyncpg

    from flows.identity.blocking import blocking_keys
    from flows.identity.store_index import store_key

    conn = await asyncpg.connect(database=dbname, **PG)
    counts: Counter[str] = Counter()
    try:
        for start in range(0, golden, chunk):
            goldens, members, sources, postings = [], [], [], []
            for gid, system, sid, record, profile in golden_rows(
                seed, start, min(start + chunk, golden)
            ):
                body = json.dumps(record, ensure_ascii=False)
                winners = {f: {"source_system": system, "source_id": sid} for f in record}
                goldens.append(
                    (
                        gid,
                        ENTITY,
                        json.dumps(profile.to_dict(), ensure_ascii=False),
                        body,
                        json.dumps(winners),
                        "active",
                        record["name"],
                        f"{gid} {record['name']}",
                        1,
                        1,
                        T0,
                        T0,
                    )
                )
                members.append((ENTITY, system, sid, gid, "new", 0.0, "{}", T0))
                mid = str(uuid.UUID(int=random.Random(sid).getrandbits(128)))
                sources.append((ENTITY, system, sid, 1, T0, "upsert", body, 1, mid, T0))
                for key in blocking_keys(profile):
                    skey = store_key(key)
                    # as BatchIndex.add leaves them: a key stops growing once past the cap,
                    # and only its first `cap` postings are written
                    if counts[skey] <= cap:
                        counts[skey] += 1
                        if counts[skey] <= cap:
                            postings.append((skey, ENTITY, gid))
            await conn.copy_records_to_table(
                "golden_records", records=goldens, columns=GOLDEN_COLUMNS
            )
            await conn.copy_records_to_table(
                "golden_members", records=members, columns=MEMBER_COLUMNS
            )
            await conn.copy_records_to_table(
                "source_records", records=sources, columns=SOURCE_COLUMNS
            )
            await conn.copy_records_to_table(
                "block_keys", records=postings, columns=["key", "entity", "golden_id"]
            )
            if (start + chunk) % 200_000 == 0:
                print(f"  loaded {start + chunk:,} golden records", flush=True)
        await conn.copy_records_to_table(
            "block_key_counts",
            records=[(k, ENTITY, n) for k, n in counts.items()],
            columns=["key", "entity", "n"],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def load(dbname: str, golden: int, seed: int, cap: int) -> None:
    asyncio.run(_load(dbname, golden, seed, cap))


# --------------------------------------------------------------------------- resolve


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(database="test", **PG)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    from hub.store import db

    engine = db.create_engine(url)
    try:
        await db.migrate(engine)
    finally:
        await engine.dispose()


def incoming(seed: int, golden: int, n: int) -> list[tuple[str, str, dict[str, Any]]]:
    """n records: even ones re-enter a loaded entity, odd ones are new entities."""
    rng = random.Random(seed + 1)
    out = []
    for k in range(n):
        if k % 2 == 0:
            i = rng.randrange(golden)
            record = entity_record(random.Random(seed * 1_000_003 + i), i)
            out.append(("oa", f"V{k}", variant(rng, record)))
        else:
            i = golden + k  # an entity index never loaded
            out.append(("oa", f"N{k}", entity_record(random.Random(seed * 1_000_003 + i), i)))
    return out


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@dataclass
class Run:
    """Per incoming record: wall and CPU ms of its batch, statements it sent, and the wall ms
    of the reference (one indexed SELECT in its own transaction, same engine, just before)."""

    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)


def count_driver_statements(engine: Any, count: Any) -> None:
    """Statements sent to asyncpg straight (decision 47) pass no SQLAlchemy event: count them
    with asyncpg's query logger, which sees neither SQLAlchemy's prepared statements (counted
    by the event) nor, as left out here, BEGIN, COMMIT, ROLLBACK and the pool's ping."""
    from sqlalchemy import event

    def logged(query: Any) -> None:
        verb = (query.query.split(None, 1) or [""])[0].rstrip(";").upper()
        if verb not in ("", "BEGIN", "COMMIT", "ROLLBACK"):
            count()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # on every checkout: connections opened before this listener count too (a set)
        driver = getattr(record, "driver_connection", None)
        if driver is not None:
            driver.add_query_logger(logged)


async def resolve_all(url: str, records: list[tuple[str, str, dict[str, Any]]]) -> Run:
    from sqlalchemy import event, select

    from contracts.envelope import Entity, Envelope
    from flows.identity import flow as identity
    from hub.core.inbound import InboundRecord
    from hub.core.processor import BatchProcessor
    from hub.store import db
    from hub.store.identity_models import BlockKeyCount, GoldenMember

    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    # the core's own batch processing, as the hub runs the flow: decode, ledger, handler,
    # outbox, commit (decision 47: the bench used to repeat those steps by hand)
    processor = BatchProcessor(identity.spec(), sessions, max_message_bytes=1_000_000)
    run = Run()
    sent = [0]

    def count(*_: Any) -> None:
        sent[0] += 1

    # every statement sent (an executemany counts once); BEGIN/COMMIT are not among them
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    count_driver_statements(engine, count)
    reference = select(BlockKeyCount.n).where(
        BlockKeyCount.entity == ENTITY, BlockKeyCount.key == "x"
    )
    try:
        for k, (system, sid, body) in enumerate(records):
            env = Envelope(
                entity=Entity.customer,
                source_system=system,
                source_id=sid,
                source_version=1,
                source_ts=T0 + timedelta(seconds=k),
                body=body,
            )
            rec = InboundRecord("changes.customer", 0, k, env.to_bytes(), env.key.encode())
            started = time.perf_counter()
            async with engine.connect() as conn:
                await conn.execute(reference)
            run.reference.append((time.perf_counter() - started) * 1000)
            sent[0] = 0
            started, cpu = time.perf_counter(), time.process_time()
            stats = await processor.process([rec])
            run.times.append((time.perf_counter() - started) * 1000)
            run.cpu_times.append((time.process_time() - cpu) * 1000)
            await asyncio.sleep(0)  # asyncpg calls its query loggers soon, not at once
            run.statements.append(sent[0])
            if stats.applied != 1:
                raise RuntimeError(f"record {sid} was not applied: {stats}")
        async with sessions() as s:
            rows = await s.execute(
                select(GoldenMember.source_id, GoldenMember.action).where(
                    GoldenMember.source_system == "oa"
                )
            )
            run.actions = Counter(f"{sid[0]}:{action}" for sid, action in rows)
    finally:
        await engine.dispose()
    return run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _url(name: str) -> str:
    return f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"


def load_database(name: str, golden: int, seed: int) -> float:
    """Create database `name`, migrate it and COPY `golden` golden records in: seconds taken."""
    from flows.identity.config import IdentityConfig

    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    asyncio.run(_migrate(_url(name)))
    started = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(
        target=load, args=(name, golden, seed, IdentityConfig().block_cap)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"loading golden records failed ({child.exitcode})")
    return time.perf_counter() - started


def measure(
    golden: int, n_incoming: int, seed: int, template: str | None = None
) -> dict[str, float]:
    """Load (or clone `template`, a database kept by --load-only), resolve, drop."""
    name = f"eai_bench_{uuid.uuid4().hex[:10]}"
    url = _url(name)
    try:
        if template is None:
            loaded = load_database(name, golden, seed)
        else:
            # a copy, so the loaded store can serve several runs (the load is the slow part).
            # File by file: PostgreSQL 15's default strategy (WAL_LOG) writes the whole store
            # (4 GB at 1,000,000) to the WAL, and the checkpoints that volume requests ran
            # during the measurement, stalling its commits for up to 90 ms (decision 47).
            # FILE_COPY checkpoints before returning.
            started = time.perf_counter()
            asyncio.run(
                _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
            )
            loaded = time.perf_counter() - started
        # what the load or copy left to write goes to disk now, not during the measurement
        asyncio.run(_admin("CHECKPOINT"))
        records = incoming(seed, golden, n_incoming)
        run = asyncio.run(resolve_all(url, records))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    # the first records warm the connection pool and the statement caches
    skip = min(20, len(run.times) // 10)
    warm, warm_cpu, ref = run.times[skip:], run.cpu_times[skip:], run.reference[skip:]
    p50, p99 = percentile(warm, 0.50), percentile(warm, 0.99)
    cpu50, cpu99 = percentile(warm_cpu, 0.50), percentile(warm_cpu, 0.99)
    ref50, ref99 = percentile(ref, 0.50), percentile(ref, 0.99)
    stmts = Counter(run.statements[skip:])
    actions = run.actions
    re_entries = sum(v for k, v in actions.items() if k.startswith("V"))
    merged = actions.get("V:merge", 0)
    print(
        f"{golden:>9,} golden (store ready in {loaded:5.0f} s): {len(warm)} records one per "
        f"batch, p50 {p50:5.1f} ms, p99 {p99:5.1f} ms, max {max(warm):6.1f} ms "
        f"(CPU of this process p50 {cpu50:.1f} ms, p99 {cpu99:.1f} ms); "
        f"re-entries merged {merged}/{re_entries}, new records merged "
        f"{actions.get('N:merge', 0)}/{sum(v for k, v in actions.items() if k.startswith('N'))}\n"
        f"    statements per batch (+ BEGIN/COMMIT): "
        f"{', '.join(f'{n} x{c}' for n, c in sorted(stmts.items()))}\n"
        f"    reference, one indexed SELECT in its own transaction on the same engine: "
        f"p50 {ref50:.2f} ms, p99 {ref99:.2f} ms; ratio p50 {p50 / ref50:.1f}x, "
        f"p99 {p99 / ref99:.1f}x",
        flush=True,
    )
    return {"p50": p50, "p99": p99, "mean": statistics.fmean(warm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--incoming", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--small-only", action="store_true", help="measure the small store only")
    parser.add_argument(
        "--load-only",
        metavar="DB",
        help="create database DB with --golden golden records, keep it, and stop",
    )
    parser.add_argument(
        "--from-db",
        metavar="DB",
        help="measure the large store on copies of DB (made by --load-only with the same "
        "--golden and --seed) instead of loading it again",
    )
    args = parser.parse_args()
    check_fast_profiles(args.seed)
    if args.load_only:
        seconds = load_database(args.load_only, args.golden, args.seed)
        print(f"{args.golden:,} golden records loaded into {args.load_only} in {seconds:.0f} s")
        return
    small = measure(args.small, args.incoming, args.seed)
    if args.small_only:
        return
    large = measure(args.golden, args.incoming, args.seed, template=args.from_db)
    current, peak = rss_mib()
    print(
        f"resolver process memory: {current:.0f} MiB now, peak {peak:.0f} MiB "
        f"(target < {TARGET_RSS_MIB:.0f} MiB: {'met' if peak < TARGET_RSS_MIB else 'NOT met'})"
    )
    print(
        f"p99 at {args.golden:,} / p99 at {args.small:,} golden records: "
        f"{large['p99'] / small['p99']:.2f}x; target p99 < {TARGET_P99_MS:.0f} ms: "
        f"{'met' if large['p99'] < TARGET_P99_MS else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
