"""Invariant checks that read Redis directly, per docs/redis.md (stdlib only).

check_invariants(redis_client, launch, skus) verifies, for every SKU of the launch:
  available + held + sold == total, none negative;
  held == sum of qty over the held reservations: the members of fs:{L:S}:holds, each with its
  record in fs:{L:S}:held (one reservation, or a group of one-unit reservations);
  sold == sum of qty over the entries of fs:{L:S}:orders, order and reservation ids unique,
  every entry with exactly the documented fields;
  fs:{L:S}:users[user] == that user's held + sold units, never above per_user_limit.
It returns {sku: {"total", "available", "held", "sold", "orders": [entry dicts],
"holds": {rid: expires_ms}, "users": {user: units}}} for further assertions.
"""
import re

ORDER_FIELDS = {"order_id", "reservation_id", "launch", "sku", "user_id", "qty", "price_cents",
                "payment_ref", "confirmed_at"}


# A held group's value: users have no newline (fs_reserve_group checks; the server sends none
# with any control character).
GROUP_RE = re.compile(r"^#(\d+)\|(\d+)((?:\n[1-9]\d* [^\n]+)*)$")


class InvariantError(AssertionError):
    pass


def _pairs(flat):
    if flat is None:
        return {}
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def sku_key(launch, sku, suffix):
    return "fs:{%s:%s}:%s" % (launch, sku, suffix)


def read_orders(r, launch, sku):
    """The order stream of one SKU as a list of (stream_id, {field: value})."""
    out = []
    for entry in r.call("XRANGE", sku_key(launch, sku, "orders"), "-", "+") or []:
        sid, fields = entry[0], entry[1]
        out.append((_s(sid), {_s(k): _s(v) for k, v in _pairs(fields).items()}))
    return out


def check_sku(r, launch, sku):
    """Checks one SKU from a consistent reading. The reads are separate commands, and a hold may
    expire (the sweeper), or a shopper act, between them: a reading during which the SKU's hash
    changed (every change of holds, users or orders changes its counters) is taken again, up to
    ten times."""
    key = sku_key(launch, sku, "sku")
    for attempt in range(10):
        before = r.call("HGETALL", key)
        try:
            result, err = _check_sku_once(r, launch, sku), None
        except InvariantError as e:
            result, err = None, e
        if r.call("HGETALL", key) == before:
            break
    if err is not None:
        raise err
    return result


def _check_sku_once(r, launch, sku):
    def fail(msg):
        raise InvariantError("%s/%s: %s" % (launch, sku, msg))

    h = {_s(k): _s(v) for k, v in _pairs(r.call("HGETALL", sku_key(launch, sku, "sku"))).items()}
    if not h:
        fail("SKU hash %s missing" % sku_key(launch, sku, "sku"))
    try:
        total, avail, held, sold = (int(h[k]) for k in ("total", "available", "held", "sold"))
        limit = int(h["per_user_limit"])
    except (KeyError, ValueError) as e:
        fail("bad SKU hash %r (%s)" % (h, e))
    if min(total, avail, held, sold) < 0:
        fail("negative counter: %r" % h)
    if avail + held + sold != total:
        fail("available %d + held %d + sold %d != total %d" % (avail, held, sold, total))

    members = {_s(k): int(float(_s(v))) for k, v in
               _pairs(r.call("ZRANGE", sku_key(launch, sku, "holds"), "0", "-1", "WITHSCORES")).items()}
    # A held reservation lives in the SKU's `held` hash: rid -> "qty|created_ms|expires_ms|user",
    # or, grouped, group -> "#created_ms|expires_ms" + "\n<i> <user>" per held one-unit
    # reservation group.<i>; holds has one member per field. Older layouts kept a hold in its own
    # hash fs:{L:S}:r:<rid> with status `held`. Accept all three.
    held_hash = {_s(k): _s(v) for k, v in _pairs(r.call("HGETALL", sku_key(launch, sku, "held"))).items()}
    for m in held_hash:
        if m not in members:
            fail("reservation or group %s is in held but not in holds" % m)
    per_user = {}
    held_sum = 0
    holds = {}  # every held reservation id -> expires_ms
    for m, score in members.items():
        v = held_hash.get(m)
        if v is not None and v.startswith("#"):
            g = GROUP_RE.match(v)
            if not g or "." in m:
                fail("bad held group %s = %r" % (m, v))
            if int(g[2]) != score:
                fail("group %s expires at %s in held but %d in holds" % (m, g[2], score))
            entries = [e.split(" ", 1) for e in g[3].split("\n")[1:]]
            if not entries or len({i for i, _ in entries}) != len(entries):
                fail("held group %s has no or repeated entries: %r" % (m, v))
            recs = [(m + "." + i, 1, user) for i, user in entries]
        elif v is not None:
            parts = v.split("|", 3)
            if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]) or not parts[3]:
                fail("bad held entry %s = %r" % (m, v))
            if int(parts[2]) != score:
                fail("hold %s expires at %s in held but %d in holds" % (m, parts[2], score))
            recs = [(m, int(parts[0]), parts[3])]
        else:
            rh = {_s(k): _s(v) for k, v in _pairs(r.call("HGETALL", sku_key(launch, sku, "r:" + m))).items()}
            if not rh:
                fail("hold %s has no reservation record" % m)
            if rh.get("status") != "held":
                fail("member %s of holds has status %r" % (m, rh.get("status")))
            recs = [(m, int(rh["qty"]), rh["user"])]
        for rid, q, user in recs:
            if q < 1:
                fail("hold %s has qty %d" % (rid, q))
            holds[rid] = score
            held_sum += q
            per_user[user] = per_user.get(user, 0) + q
    if held_sum != held:
        fail("held %d but holds sum to %d (%d reservations)" % (held, held_sum, len(holds)))

    orders = read_orders(r, launch, sku)
    sold_sum = 0
    oids, rids = set(), set()
    entries = []
    for sid, f in orders:
        if set(f) != ORDER_FIELDS:
            fail("order entry %s has fields %s, expected %s" % (sid, sorted(f), sorted(ORDER_FIELDS)))
        if f["launch"] != launch or f["sku"] != sku:
            fail("order entry %s names %s/%s" % (sid, f["launch"], f["sku"]))
        if f["order_id"] in oids:
            fail("duplicate order_id %s in stream" % f["order_id"])
        if f["reservation_id"] in rids:
            fail("reservation %s confirmed twice in stream" % f["reservation_id"])
        oids.add(f["order_id"])
        rids.add(f["reservation_id"])
        q = int(f["qty"])
        if q < 1:
            fail("order entry %s has qty %d" % (sid, q))
        sold_sum += q
        per_user[f["user_id"]] = per_user.get(f["user_id"], 0) + q
        entries.append(dict(f, stream_id=sid))
    if sold_sum != sold:
        fail("sold %d but order stream sums to %d (%d entries)" % (sold, sold_sum, len(orders)))

    users = {_s(k): int(_s(v)) for k, v in _pairs(r.call("HGETALL", sku_key(launch, sku, "users"))).items()}
    for u in set(users) | set(per_user):
        got, want = users.get(u, 0), per_user.get(u, 0)
        if got != want:
            fail("users[%r] = %d but the user holds+bought %d" % (u, got, want))
        if got > limit or got < 0:
            fail("users[%r] = %d outside 0..per_user_limit %d" % (u, got, limit))
    return {"total": total, "available": avail, "held": held, "sold": sold, "orders": entries,
            "holds": holds, "users": users, "per_user_limit": limit}


def check_invariants(r, launch, skus):
    """Check every SKU in skus (ids) of launch; returns {sku: details} (see module doc)."""
    return {s: check_sku(r, launch, s) for s in skus}
