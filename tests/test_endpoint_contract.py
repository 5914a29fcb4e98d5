"""One contract for every store behind ``migrate.endpoint.Endpoint``, run against each of them:
real Dovecot and real Cyrus IMAP, a Maildir, an mbox folder tree (read-only) and, where it exists,
the in-memory endpoint of the unit tests.

Reading: folders listed (nested, empty, INBOX), status consistent with what is listed and
fetched, metadata in UID order with keys equal to the keys of the bodies, exact bodies with flags
and INTERNALDATE, a vanished UID not yielded, nothing changed by reading. Writing (every store but
mbox): CREATE idempotent with parents, APPEND returns one result per item with UIDs, a message
reads back byte for byte, flags replaced.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migrate.dedupe.keys import key_of, key_of_raw
from migrate.models import AppendItem
from tests.support.mailbox import msg, side

T0 = datetime(2023, 5, 6, 7, 8, 9, tzinfo=UTC)
SEED = {  # folder parts -> (body, flags, date)
    ("INBOX",): [(msg(1), ("\\Seen",), T0), (msg(2, mid=None, body="no id here"), (), T0 + timedelta(days=1)),
                 (msg(3), ("\\Flagged", "$Forwarded"), T0 + timedelta(days=2))],
    ("Work", "2024"): [(msg(4), ("\\Answered",), T0), (msg(5), (), T0)],
}


@dataclass
class Store:
    kind: str
    open: Callable[[], object]
    sep: str
    writable: bool = True
    flags_kept: bool = True

    def name(self, parts: tuple[str, ...]) -> str:
        return "INBOX" if parts == ("INBOX",) else self.sep.join(parts)


def _imap(request, make: str, flavor: str) -> Store:
    server = request.getfixturevalue(make)(flavor)
    user = request.getfixturevalue("new_user")(server)
    with user.client() as c:
        for parts, items in SEED.items():
            name = "INBOX" if parts == ("INBOX",) else server.separator.join(parts)
            if name != "INBOX":
                c.create_folder(name)
            for body, flags, date in items:
                c.multiappend(name, [{"msg": body, "flags": flags, "date": date}])
        c.create_folder("Empty")
    from migrate.sides import build_side

    return Store(f"{make}-{flavor}", build_side(side("target", user)).factory, server.separator)


def _maildir(tmp_path: Path) -> Store:
    from migrate.local.maildir import MaildirEndpoint

    root = tmp_path / "Maildir"
    ep = MaildirEndpoint(root, create=True)
    for parts, items in SEED.items():
        name = "INBOX" if parts == ("INBOX",) else "/".join(parts)
        ep.create_folder(name)
        ep.append(name, [AppendItem(b, f, d) for b, f, d in items])
    ep.create_folder("Empty")
    ep.close()
    sep = ep.namespace().delimiter or "/"
    return Store("maildir", lambda: MaildirEndpoint(root), sep)


def _mbox(tmp_path: Path) -> Store:
    from migrate.local.mbox import MboxEndpoint

    root = tmp_path / "mbox"
    (root / "Work.sbd").mkdir(parents=True)

    def write(path: Path, items) -> None:
        with open(path, "wb") as f:
            for body, _flags, date in items:
                f.write(b"From sender@example.org " + date.strftime("%a %b %d %H:%M:%S %Y").encode() + b"\n")
                f.write(body.replace(b"\r\n", b"\n") + b"\n")

    write(root / "Inbox", SEED[("INBOX",)])
    write(root / "Work.sbd" / "2024", SEED[("Work", "2024")])
    (root / "Work").write_bytes(b"")
    (root / "Empty").write_bytes(b"")
    return Store("mbox", lambda: MboxEndpoint(root), "/", writable=False, flags_kept=False)


def _memory() -> Store:
    from tests.support.memory_endpoint import MemoryEndpoint, MemoryMailbox

    box = MemoryMailbox()
    for parts, items in SEED.items():
        name = "INBOX" if parts == ("INBOX",) else "/".join(parts)
        for body, flags, date in items:
            box.add(name, body, flags, date)
    box.add_folder("Empty")
    return Store("memory", lambda: MemoryEndpoint(box), "/")


KINDS = ["dovecot-slash", "dovecot-dot", "cyrus-dot", "maildir", "mbox"]
if importlib.util.find_spec("tests.support.memory_endpoint") is not None:
    KINDS.append("memory")


@pytest.fixture(params=KINDS)
def store(request, tmp_path) -> Store:
    kind = request.param
    if kind.startswith(("dovecot", "cyrus")):
        make, flavor = kind.split("-")
        return _imap(request, make, flavor)
    return {"maildir": lambda: _maildir(tmp_path), "mbox": lambda: _mbox(tmp_path), "memory": _memory}[kind]()


def _bodies(store: Store, parts) -> list[bytes]:
    items = SEED[parts]
    if store.kind == "mbox":  # an mbox holds LF line ends
        return [b.replace(b"\r\n", b"\n") for b, _f, _d in items]
    return [b for b, _f, _d in items]


# --- reading -------------------------------------------------------------------------------------


def test_lists_every_folder(store):
    ep = store.open()
    names = {f.name: f for f in ep.list_folders()}
    for parts in SEED:
        assert store.name(parts) in names, sorted(names)
        assert names[store.name(parts)].selectable
    assert "Empty" in names
    assert "Work" in names  # the parent of a nested folder, selectable or not
    ep.close()


def test_status_matches_what_is_fetched(store):
    ep = store.open()
    for parts in SEED:
        name = store.name(parts)
        st = ep.status(name)
        metas = list(ep.fetch_meta(name, None, with_keys=True))
        assert st.exists == len(metas) == len(SEED[parts])
        assert [m.uid for m in metas] == sorted(m.uid for m in metas)
        assert st.uidnext > max(m.uid for m in metas)
        assert ep.statuses([name, "No such folder"]) == {name: st}
    assert ep.status("Empty").exists == 0
    again = store.open()
    assert again.status(store.name(("INBOX",))).uidvalidity == ep.status(store.name(("INBOX",))).uidvalidity
    ep.close()


def test_bodies_flags_dates_and_keys(store):
    ep = store.open()
    for parts, items in SEED.items():
        name = store.name(parts)
        metas = list(ep.fetch_meta(name, None, with_keys=True))
        raws = list(ep.fetch_messages(name, [m.uid for m in metas]))
        assert Counter(r.body for r in raws) == Counter(_bodies(store, parts))
        # The key from metadata equals the key of the body: both sides of a dedupe agree.
        assert Counter(key_of(m) for m in metas) == Counter(key_of_raw(r.body) for r in raws)
        assert [m.size for m in metas] == [len(r.body) for r in raws]
        for raw in raws:
            body, flags, date = next(x for x in items if x[0].replace(b"\r\n", b"\n") == raw.body.replace(b"\r\n", b"\n"))
            assert raw.internaldate is not None and raw.internaldate.timestamp() == date.timestamp()
            if store.flags_kept:
                assert sorted(raw.flags) == sorted(flags)
    ep.close()


def test_missing_uid_is_not_yielded_and_reading_changes_nothing(store):
    ep = store.open()
    name = store.name(("INBOX",))
    before = [(m.uid, tuple(sorted(m.flags))) for m in ep.fetch_meta(name, None, with_keys=False)]
    got = list(ep.fetch_messages(name, [before[0][0], 999_999]))
    assert [r.uid for r in got] == [before[0][0]]
    list(ep.fetch_messages(name, [u for u, _ in before]))
    after = [(m.uid, tuple(sorted(m.flags))) for m in store.open().fetch_meta(name, None, with_keys=False)]
    assert after == before  # nothing marked \Seen, nothing moved
    ep.close()


# --- writing -------------------------------------------------------------------------------------


def test_create_append_and_flags(store):
    ep = store.open()
    if not store.writable:  # mbox is a source only: every write is refused, nothing changes
        from migrate.errors import UsageError

        for write in (lambda: ep.create_folder("New"), lambda: ep.append("INBOX", [AppendItem(msg(50), (), T0)]),
                      lambda: ep.set_flags("INBOX", 1, ("\\Seen",))):
            with pytest.raises(UsageError, match="read-only"):
                write()
        assert ep.status("INBOX").exists == len(SEED[("INBOX",)])
        return
    nested = store.sep.join(["New", "Deep", "Leaf"])
    ep.create_folder(nested)
    ep.create_folder(nested)  # again: no error
    names = {f.name for f in ep.list_folders()}
    assert nested in names
    items = [AppendItem(msg(50), ("\\Seen",), T0), AppendItem(msg(51, mid=None), ("$Label1",), T0)]
    results = ep.append(nested, items)
    assert [r.ok for r in results] == [True, True]
    uids = [r.uid for r in results]
    assert all(isinstance(u, int) for u in uids) and uids == sorted(uids)
    got = {r.uid: r for r in ep.fetch_messages(nested, uids)}
    assert [got[u].body for u in uids] == [i.body for i in items]
    ep.set_flags(nested, uids[0], ("\\Flagged",))
    (after,) = list(store.open().fetch_messages(nested, [uids[0]]))
    assert sorted(after.flags) == ["\\Flagged"]
    ep.close()
