"""The shop on a three-node RabbitMQ cluster loses the node that leads its queues mid-burst, and nothing is lost.

What the chart's ``rabbitmq.replicas: 3`` (a Shop's ``spec.rabbitmq.replicas: 3``) runs in Kubernetes, on
this machine (devtools/rabbitmq_cluster.py): three RabbitMQ nodes clustered at boot, haproxy in front as the
Service, the whole shop (every service, its own SecantusDB, a fresh namespace) connected through it. The
shop declares its consumer queues as quorum queues without an initial group size, so each gets a member
on every node of a three-node cluster (RabbitMQ's default group size is 3).

During a burst of orders the node that leads the most of the shop's queues is SIGKILLed (a pod whose
machine vanished). Then:

- every order was accepted (the outbox decouples placing an order from the broker) and each settles
  (confirmed or rejected) while the node is still down: the other two members elected new leaders;
- the stock is exactly what the confirmed orders left;
- the node comes back, rejoins, and every queue has its three members online again, those that failed
  over with their Raft logs caught up with the leader's (``rabbitmq-queues quorum_status``);
- the dashboard counts exactly the settled orders (checked after the rejoin; on RabbitMQ 3.10.8 a
  channel that first publishes to a quorum queue just after its leader's node was SIGKILLed, as a robust
  connection that was on that node and reconnected at once does, has every publish to it nacked for as
  long as that node is down, although a new leader was elected: the services publish on a channel of
  their own that a nack replaces, shopkit.messaging.publishing; docs/saga.md);
- no consumer dead-lettered anything.

The machine's own RabbitMQ (5672) is not used or touched. Every node, the proxy and their directories are
removed at the end, whatever happened (the ``cluster`` fixture's finaliser, in this tier's conftest).
"""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import Collection
from typing import Any

import httpx

from devtools.rabbitmq_cluster import RabbitCluster
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop
from tests.support.saga import TERMINAL, auth, create_product, eventually, login, new_customer, stock_of
from tests.support.shops import dump

STOCK = 1000
SCARCE = 6  # a second product runs out during the burst: some orders are rejected, not only confirmed
PRICE = 1000
BURST = 40
SETTLE_SECONDS = 60.0


def leaders(cluster: RabbitCluster, namespace: str) -> collections.Counter[str]:
    return collections.Counter(q["leader"] for q in cluster.quorum_queues(namespace))


def replicated(cluster: RabbitCluster, namespace: str, caught_up: Collection[str] = ()) -> list[str]:
    """What keeps the shop's queues from being fully replicated (empty: each has a member online on every
    node; those named in ``caught_up`` also a leader and two followers with equal commit indexes)."""
    everyone = sorted(n.name for n in cluster.nodes)
    problems = []
    for queue in cluster.quorum_queues(namespace):
        if sorted(queue["members"]) != everyone or sorted(queue["online"]) != everyone:
            problems.append(f"{queue['name']}: members {queue['members']}, online {queue['online']}")
            continue
        if queue["name"] not in caught_up:
            continue  # one CLI call per queue is slow (an Erlang VM each): only where it matters
        members = cluster.quorum_status(queue["name"])
        states = sorted(m["Raft State"] for m in members)
        commits = {m["Commit Index"] for m in members}
        if states != ["follower", "follower", "leader"] or len(commits) != 1:
            seen = [(m["Node Name"], m["Raft State"], m["Commit Index"]) for m in members]
            problems.append(f"{queue['name']}: {seen}")
    return problems


async def test_killing_the_leading_node_mid_burst_loses_no_order(cluster: RabbitCluster, cluster_shop: LocalShop,
                                                                  api: httpx.AsyncClient) -> None:
    namespace = cluster_shop.namespace
    queues = cluster.quorum_queues(namespace)
    assert queues, "the shop declared no quorum queue on the cluster"
    # Every queue of the shop is replicated on all three nodes from the start (the default group size).
    assert replicated(cluster, namespace) == []

    admin = await login(api, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
    buyer = await new_customer(api)
    plenty = await create_product(api, admin, stock=STOCK, low_stock_threshold=0, price=PRICE)
    scarce = await create_product(api, admin, stock=SCARCE, low_stock_threshold=0, price=PRICE)

    victim_name, led = collections.Counter(q["leader"] for q in queues).most_common(1)[0]
    victim = cluster.node(victim_name)
    failed_over = [q["name"] for q in queues if q["leader"] == victim_name]
    accepted: dict[str, tuple[str, int]] = {}  # order id -> (product id, quantity)
    answers: list[int] = []
    gate = asyncio.Semaphore(8)

    async def order(i: int) -> None:
        product = scarce if i % 4 == 0 else plenty
        quantity = 1 + i % 3
        async with gate:
            r = await api.post("/orders", json={"items": [{"product_id": product["id"], "quantity": quantity}]},
                               headers=auth(buyer))
        answers.append(r.status_code)
        if r.status_code == 201:
            accepted[r.json()["id"]] = (product["id"], quantity)

    async def kill_soon() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(cluster.kill_node, victim)

    await asyncio.gather(kill_soon(), *(order(i) for i in range(BURST)))
    assert not victim.running
    # The outbox: placing an order never waits for the broker, so a lost node refuses nothing.
    assert answers == [201] * BURST
    # More orders while the cluster runs on two nodes.
    await asyncio.gather(*(order(i) for i in range(BURST, BURST + 10)))
    assert answers == [201] * (BURST + 10)

    # The two remaining members took over the queues the victim led.
    async def new_leaders() -> collections.Counter[str] | None:
        now = await asyncio.to_thread(leaders, cluster, namespace)
        return now if victim_name not in now and sum(now.values()) == len(queues) else None

    await eventually(new_leaders, timeout=SETTLE_SECONDS, interval=0.5,
                     what=f"new leaders for the {led} queues {victim_name} led")

    statuses: dict[str, dict[str, Any]] = {}

    async def all_settled() -> bool:
        for order_id in accepted.keys() - statuses.keys():
            r = await api.get(f"/orders/{order_id}", headers=auth(buyer))
            assert r.status_code == 200, r.text
            if r.json()["status"] in TERMINAL:
                statuses[order_id] = r.json()
        return len(statuses) == len(accepted)

    try:
        await eventually(all_settled, timeout=SETTLE_SECONDS, interval=0.5, what="every accepted order settled")
    except AssertionError:
        print("settled:", collections.Counter(o["status"] for o in statuses.values()), "of", len(accepted),
              "queues:", cluster.ctl_json("list_queues", "name", "leader", "messages_ready",
                                          "messages_unacknowledged", "consumers"), file=sys.stderr)
        dump(cluster_shop)
        raise
    assert not victim.running, "the orders settled only once the node was back"
    outcome = collections.Counter(o["status"] for o in statuses.values())
    assert set(outcome) <= {"confirmed", "rejected"}, outcome
    assert outcome["confirmed"] and outcome["rejected"], outcome  # both paths of the saga ran

    confirmed = {oid: accepted[oid] for oid, o in statuses.items() if o["status"] == "confirmed"}
    taken = collections.Counter[str]()
    for product_id, quantity in confirmed.values():
        taken[product_id] += quantity
    assert await stock_of(api, plenty["id"]) == STOCK - taken[plenty["id"]]
    assert await stock_of(api, scarce["id"]) == SCARCE - taken[scarce["id"]]
    assert taken[scarce["id"]] <= SCARCE

    revenue = sum(int(statuses[oid]["total"]) for oid in confirmed)
    assert revenue == PRICE * sum(taken.values())

    # The node comes back and rejoins; its members catch up: three online, logs equal.
    await asyncio.to_thread(cluster.start_node, victim)

    async def whole_again() -> bool:
        return await asyncio.to_thread(lambda: not replicated(cluster, namespace, failed_over))

    await eventually(whole_again, timeout=SETTLE_SECONDS, interval=1.0,
                     what="every queue replicated on 3 nodes again, those that failed over caught up")

    # Every event is through (some waited for the node: see docs/saga.md): the dashboard counts exactly the
    # confirmed and rejected orders, their revenue and the quantities sold.
    async def dashboard_exact() -> dict[str, Any] | None:
        r = await api.get("/analytics/dashboard", headers=auth(admin))
        assert r.status_code == 200, r.text
        board = r.json()
        by_status = {k: v for k, v in board["orders_by_status"].items() if v}
        total = sum(row["amount"] for row in board["revenue_by_day"] if row["currency"] == "EUR")
        top = {p["product_id"]: p["quantity"] for p in board["top_products"]}
        exact = (by_status == dict(outcome) and total == revenue
                 and top == {pid: q for pid, q in taken.items() if q})
        return board if exact else None

    try:
        await eventually(dashboard_exact, timeout=SETTLE_SECONDS, interval=0.5,
                         what="the dashboard counting every order")
    except AssertionError:
        r = await api.get("/analytics/dashboard", headers=auth(admin))
        print("want", dict(outcome), revenue, dict(taken), "dashboard:", r.text, "queues:",
              cluster.ctl_json("list_queues", "name", "type", "messages", "online"), file=sys.stderr)
        dump(cluster_shop)
        raise

    # No consumer gave up on anything: every dead-letter queue of the shop is empty (counted once the
    # node that may host some of them is back).
    dead = [(q["name"], q["messages"]) for q in cluster.ctl_json("list_queues", "name", "messages")
            if q["name"].startswith(namespace) and q["name"].endswith(".dlq")]
    assert dead, "no dead-letter queue found"
    assert [d for d in dead if d[1]] == [], dead
