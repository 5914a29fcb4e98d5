"""Folder mapping rules (migrate.folders): hierarchy, specials, Gmail, filters, collisions."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.folders import (
    FolderPlan,
    decode_mutf7,
    encode_mutf7,
    fallback_name,
    plan_folders,
    sanitize_for_target,
    split_name,
)
from migrate.models import FolderInfo, Namespace

SLASH = Namespace("", "/")
DOT = Namespace("", ".")
INBOX_DOT = Namespace("INBOX.", ".")
NOSELECT = "\\Noselect"


def F(name: str, delim: str | None = "/", *flags: str, use: str | None = None) -> FolderInfo:
    return FolderInfo(name, delim, frozenset(flags), use)


def folders(ns: Namespace, *names: str) -> list[FolderInfo]:
    return [F(n, ns.delimiter) for n in names]


def mapping(plan: FolderPlan) -> dict[str, str | None]:
    return {m.source: m.target for m in plan.mappings}


def plan_names(src_ns, src_names, tgt_ns, tgt=(), **kw) -> dict[str, str | None]:
    src = [n if isinstance(n, FolderInfo) else F(n, src_ns.delimiter) for n in src_names]
    tgt = [t if isinstance(t, FolderInfo) else F(t, tgt_ns.delimiter) for t in tgt]
    return mapping(plan_folders(src_ns, src, tgt_ns, tgt, **kw))


# --- hierarchy --------------------------------------------------------------------------


def test_slash_to_dot_and_back():
    assert plan_names(SLASH, ["INBOX", "Work", "Work/2019/Q1"], DOT) == {
        "INBOX": "INBOX", "Work": "Work", "Work/2019/Q1": "Work.2019.Q1"}
    assert plan_names(DOT, ["Work", "Work.2019"], SLASH)["Work.2019"] == "Work/2019"


def test_inbox_prefixed_source_loses_prefix():
    got = plan_names(INBOX_DOT, ["INBOX", "INBOX.Projects", "INBOX.Projects.A"], SLASH)
    assert got == {"INBOX": "INBOX", "INBOX.Projects": "Projects", "INBOX.Projects.A": "Projects/A"}


def test_inbox_prefixed_target_gets_prefix_once():
    got = plan_names(SLASH, ["INBOX", "Projects/A", "INBOX/foo", "INBOX/foo/bar"], INBOX_DOT)
    assert got["Projects/A"] == "INBOX.Projects.A"
    assert got["INBOX/foo"] == "INBOX.foo"  # never INBOX.INBOX.foo
    assert got["INBOX/foo/bar"] == "INBOX.foo.bar"


def test_inbox_prefix_on_both_sides():
    got = plan_names(INBOX_DOT, ["INBOX", "INBOX.a", "INBOX.a.b"], INBOX_DOT)
    assert got == {"INBOX": "INBOX", "INBOX.a": "INBOX.a", "INBOX.a.b": "INBOX.a.b"}


def test_inbox_children_stay_under_inbox_on_prefixless_targets():
    assert plan_names(SLASH, ["INBOX", "INBOX/foo"], DOT)["INBOX/foo"] == "INBOX.foo"
    assert plan_names(DOT, ["INBOX", "INBOX.foo"], SLASH)["INBOX.foo"] == "INBOX/foo"


def test_inbox_is_case_insensitive():
    got = plan_names(SLASH, ["Inbox", "inbox/foo"], INBOX_DOT)
    assert got == {"Inbox": "INBOX", "inbox/foo": "INBOX.foo"}


def test_doubled_inbox_from_an_earlier_migration_collapses():
    got = plan_names(INBOX_DOT, ["INBOX", "INBOX.INBOX.x"], INBOX_DOT)
    assert got["INBOX.INBOX.x"] == "INBOX.x"
    assert split_name("INBOX/INBOX/INBOX/y", "/", SLASH) == (("INBOX", "y"), False)


def test_target_separator_inside_a_part_becomes_underscore():
    assert plan_names(SLASH, ["a.b", "p/a.b"], DOT) == {"a.b": "a_b", "p/a.b": "p.a_b"}
    assert plan_names(DOT, ["x/y"], SLASH) == {"x/y": "x_y"}
    assert plan_names(SLASH, ["a.b"], INBOX_DOT) == {"a.b": "INBOX.a_b"}


def test_flat_target_keeps_levels_visible():
    assert plan_names(DOT, ["a.b"], Namespace("", None)) == {"a.b": "a/b"}


def test_noselect_parents_and_empty_folders_are_planned():
    src = [F("INBOX"), F("Lists", "/", NOSELECT), F("Lists/python")]
    plan = plan_folders(SLASH, src, DOT, [])
    lists = next(m for m in plan.mappings if m.source == "Lists")
    assert (lists.target, lists.selectable) == ("Lists", False)
    assert [m.selectable for m in plan.mappings if m.source == "Lists/python"] == [True]


# --- special folders ----------------------------------------------------------------------


def test_special_by_attribute_maps_onto_target_special():
    src = [F("INBOX"), F("Sent Items", use="\\Sent"), F("Deleted", use="\\Trash")]
    tgt = [F("INBOX", "."), F("INBOX.Sent", ".", use="\\Sent"), F("INBOX.Bin", ".", use="\\Trash")]
    plan = plan_folders(SLASH, src, INBOX_DOT, tgt)
    assert mapping(plan) == {"INBOX": "INBOX", "Sent Items": "INBOX.Sent", "Deleted": "INBOX.Bin"}
    sent = next(m for m in plan.mappings if m.source == "Sent Items")
    assert (sent.reason, sent.special_use) == ("special", "\\Sent")
    assert plan.new_special == {}


def test_special_by_localized_name_on_both_sides():
    got = plan_names(INBOX_DOT, ["INBOX", "INBOX.Gesendete Objekte", "INBOX.Entwürfe", "INBOX.Papierkorb",
                                 "INBOX.Spamverdacht", "INBOX.Archiv"],
                     SLASH, ["INBOX", "Sent", "Drafts", "Deleted Items", "Junk E-mail", "Archive"])
    assert got == {"INBOX": "INBOX", "INBOX.Gesendete Objekte": "Sent", "INBOX.Entwürfe": "Drafts",
                   "INBOX.Papierkorb": "Deleted Items", "INBOX.Spamverdacht": "Junk E-mail",
                   "INBOX.Archiv": "Archive"}


def test_name_detection_is_case_insensitive_and_allows_under_inbox():
    got = plan_names(SLASH, ["INBOX", "INBOX/sent items", "ÉLÉMENTS SUPPRIMÉS"], DOT,
                     [F("Sent", ".", use="\\Sent"), F("Trash", ".", use="\\Trash")])
    assert got["INBOX/sent items"] == "Sent"
    assert got["ÉLÉMENTS SUPPRIMÉS"] == "Trash"


def test_name_detection_ignores_deeper_folders():
    got = plan_names(SLASH, ["Projects", "Projects/Sent"], DOT, [F("Sent Items", ".", use="\\Sent")])
    assert got["Projects/Sent"] == "Projects.Sent"


def test_attributed_sent_and_plain_gesendet_stay_apart():
    got = plan_names(SLASH, ["INBOX", F("Sent", use="\\Sent"), "Gesendet"], DOT,
                     [F("Sent", ".", use="\\Sent")])
    assert got == {"INBOX": "INBOX", "Sent": "Sent", "Gesendet": "Gesendet"}


def test_attribute_beats_name_match():
    got = plan_names(SLASH, ["Sent", F("Gesendet", use="\\Sent")], DOT, [F("Sent Items", ".", use="\\Sent")])
    assert got == {"Gesendet": "Sent Items", "Sent": "Sent"}


def test_among_name_matches_the_priority_order_wins():
    got = plan_names(SLASH, ["Sent Items", "Sent", "Envoyés"], DOT, [F("Gesendet", ".", use="\\Sent")])
    assert got == {"Sent": "Gesendet", "Sent Items": "Sent Items", "Envoyés": "Envoyés"}


def test_only_one_source_folder_per_target_special():
    got = plan_names(SLASH, [F("Sent", use="\\Sent"), F("Outbox", use="\\Sent")], DOT,
                     [F("Sent Items", ".", use="\\Sent")])
    assert got == {"Sent": "Sent Items", "Outbox": "Outbox"}


def test_missing_target_special_uses_source_name_and_is_reported():
    plan = plan_folders(SLASH, [F("INBOX"), F("Sent Items", use="\\Sent"), F("INBOX/Drafts")], INBOX_DOT,
                        [F("INBOX", ".")])
    assert mapping(plan) == {"INBOX": "INBOX", "Sent Items": "INBOX.Sent Items", "INBOX/Drafts": "INBOX.Drafts"}
    assert plan.new_special == {"\\Sent": "INBOX.Sent Items", "\\Drafts": "INBOX.Drafts"}
    assert {m.reason for m in plan.mappings if m.source != "INBOX"} == {"special-new"}


def test_target_special_from_preset_beats_detection():
    got = plan_names(SLASH, [F("Sent", use="\\Sent")], DOT, ["Sent"], target_special={"\\Sent": "Sent Mail"})
    assert got == {"Sent": "Sent Mail"}


def test_children_follow_their_special_parent():
    got = plan_names(SLASH, ["Sent Items", "Sent Items/2019", "Sent Items/2019/Q1"], INBOX_DOT,
                     [F("INBOX.Sent", ".", use="\\Sent")])
    assert got == {"Sent Items": "INBOX.Sent", "Sent Items/2019": "INBOX.Sent.2019",
                   "Sent Items/2019/Q1": "INBOX.Sent.2019.Q1"}


def test_special_use_attribute_found_among_flags():
    got = plan_names(SLASH, [F("Outgoing", "/", "\\HasNoChildren", "\\Sent")], DOT, [F("Sent", ".", use="\\Sent")])
    assert got == {"Outgoing": "Sent"}


# --- overrides ------------------------------------------------------------------------------


def test_override_wins_and_children_follow():
    got = plan_names(SLASH, ["Work", "Work/a", F("Sent Items", use="\\Sent")], INBOX_DOT,
                     [F("INBOX.Sent", ".", use="\\Sent")],
                     map_folder={"Work": "INBOX.Job.Old", "Sent Items": "INBOX.Old Sent"})
    assert got == {"Work": "INBOX.Job.Old", "Work/a": "INBOX.Job.Old.a", "Sent Items": "INBOX.Old Sent"}


def test_override_key_may_be_the_slash_form_and_value_is_used_as_is():
    got = plan_names(INBOX_DOT, ["INBOX.Lists.py"], SLASH, map_folder={"Lists/py": "Python/List.s"})
    assert got == {"INBOX.Lists.py": "Python/List.s"}


def test_override_claims_before_translated_names():
    plan = plan_folders(SLASH, [F("Work"), F("Old")], DOT, [], map_folder={"Old": "Work"})
    assert mapping(plan) == {"Work": "Work (2)", "Old": "Work"}


# --- include / exclude ------------------------------------------------------------------------


TREE = ["INBOX", "Trash", "Trash/old", "Trash (keep)", "Work", "Work/2019", "Work/2020"]


def skipped(got: dict[str, str | None]) -> set[str]:
    return {s for s, t in got.items() if t is None}


def test_exclude_parent_only_does_not_take_children():
    assert skipped(plan_names(SLASH, TREE, DOT, exclude=["Trash"])) == {"Trash"}


def test_exclude_subtree_patterns():
    assert skipped(plan_names(SLASH, TREE, DOT, exclude=["Trash*"])) == {"Trash", "Trash/old", "Trash (keep)"}
    assert skipped(plan_names(SLASH, TREE, DOT, exclude=["Trash/*"])) == {"Trash/old"}
    assert skipped(plan_names(SLASH, TREE, DOT, exclude=["Work/20?9"])) == {"Work/2019"}


def test_include_and_exclude_wins():
    got = plan_names(SLASH, TREE, DOT, include=["Work*"], exclude=["Work/2020"])
    assert {s for s, t in got.items() if t} == {"Work", "Work/2019"}
    plan = plan_folders(SLASH, folders(SLASH, *TREE), DOT, [], include=["Work*"], exclude=["Work/2020"])
    reasons = {m.source: m.reason for m in plan.mappings}
    assert (reasons["Work/2020"], reasons["INBOX"]) == ("excluded", "not-included")


def test_patterns_match_the_slash_form_of_dotted_names():
    got = plan_names(INBOX_DOT, ["INBOX", "INBOX.Lists", "INBOX.Lists.py"], SLASH, exclude=["Lists/*"])
    assert skipped(got) == {"INBOX.Lists.py"}
    assert skipped(plan_names(INBOX_DOT, ["INBOX", "INBOX.Lists"], SLASH, exclude=["INBOX.Lists"])) == {
        "INBOX.Lists"}


def test_special_use_token_matches_the_role_whatever_its_name():
    names = ["INBOX", "Papierkorb", "Papierkorb/alt", "Trash-like"]
    assert skipped(plan_names(SLASH, names, DOT, exclude=["\\Trash"])) == {"Papierkorb"}
    assert skipped(plan_names(SLASH, names, DOT, exclude=["\\trash/*"])) == {"Papierkorb/alt"}
    by_attr = plan_names(SLASH, ["INBOX", F("Bin2", use="\\Trash")], DOT, include=["\\Trash"])
    assert skipped(by_attr) == {"INBOX"}


def test_exclusion_beats_override():
    got = plan_names(SLASH, ["Work"], DOT, exclude=["Work"], map_folder={"Work": "Job"})
    assert got == {"Work": None}


# --- Gmail ------------------------------------------------------------------------------------


def gmail_tree(container: str = "[Gmail]") -> list[FolderInfo]:
    return [
        F("INBOX", "/", "\\HasNoChildren"),
        F(container, "/", NOSELECT, "\\HasChildren"),
        F(f"{container}/All Mail", use="\\All"),
        F(f"{container}/Drafts", use="\\Drafts"),
        F(f"{container}/Important", use="\\Important"),
        F(f"{container}/Sent Mail", use="\\Sent"),
        F(f"{container}/Spam", use="\\Junk"),
        F(f"{container}/Starred", use="\\Flagged"),
        F(f"{container}/Trash", use="\\Trash"),
        F(f"{container}/Chats"),
        F("Receipts"),
        F("Receipts/2023"),
        F("Travel.Plans"),
    ]


def test_gmail_tree_onto_dovecot_with_specials():
    tgt = [F("INBOX", "."), F("INBOX.Sent", ".", use="\\Sent"), F("INBOX.Drafts", ".", use="\\Drafts"),
           F("INBOX.Trash", ".", use="\\Trash"), F("INBOX.Junk", ".", use="\\Junk")]
    plan = plan_folders(SLASH, gmail_tree(), INBOX_DOT, tgt)
    assert plan.gmail
    assert mapping(plan) == {
        "INBOX": "INBOX",
        "[Gmail]": None,
        "[Gmail]/All Mail": "INBOX.Archive",
        "[Gmail]/Drafts": "INBOX.Drafts",
        "[Gmail]/Important": None,
        "[Gmail]/Sent Mail": "INBOX.Sent",
        "[Gmail]/Spam": "INBOX.Junk",
        "[Gmail]/Starred": None,
        "[Gmail]/Trash": "INBOX.Trash",
        "[Gmail]/Chats": "INBOX.Chats",
        "Receipts": "INBOX.Receipts",
        "Receipts/2023": "INBOX.Receipts.2023",
        "Travel.Plans": "INBOX.Travel_Plans",
    }
    reasons = {m.source: m.reason for m in plan.mappings}
    assert reasons["[Gmail]/Important"] == reasons["[Gmail]/Starred"] == "gmail-view"
    assert reasons["[Gmail]/All Mail"] == "gmail-all-mail"
    assert plan.new_special == {"\\Archive": "INBOX.Archive"}
    assert plan.mappings[-1].source == "[Gmail]/All Mail"
    assert plan.mappings[0].source == "INBOX"


def test_google_mail_container_and_existing_archive():
    tgt = [F("INBOX"), F("Archives", use="\\Archive"), F("Sent")]
    plan = plan_folders(SLASH, gmail_tree("[Google Mail]"), SLASH, tgt)
    got = mapping(plan)
    assert got["[Google Mail]/All Mail"] == "Archives"
    assert got["[Google Mail]/Sent Mail"] == "Sent"  # target Sent found by name
    assert got["[Google Mail]/Chats"] == "Chats"
    assert got["[Google Mail]"] is None
    assert plan.new_special == {"\\Drafts": "Drafts", "\\Junk": "Spam", "\\Trash": "Trash"}


def test_gmail_label_named_archive_does_not_merge_into_all_mail():
    plan = plan_folders(SLASH, [*gmail_tree(), F("Archive")], DOT, [])
    got = mapping(plan)
    assert (got["[Gmail]/All Mail"], got["Archive"]) == ("Archive", "Archive (2)")


def test_non_gmail_source_keeps_important_and_has_no_gmail_flag():
    plan = plan_folders(SLASH, [F("Important", use="\\Important")], DOT, [])
    assert (plan.gmail, mapping(plan)) == (False, {"Important": "Important"})


def test_gmail_view_can_be_rescued_by_override():
    got = mapping(plan_folders(SLASH, gmail_tree(), DOT, [], map_folder={"[Gmail]/Starred": "Starred"}))
    assert got["[Gmail]/Starred"] == "Starred"


def test_gmail_handling_can_be_forced_off_or_on():
    off = plan_folders(SLASH, gmail_tree(), DOT, [], gmail=False)
    assert not off.gmail
    assert mapping(off)["[Gmail]/Important"] == "[Gmail].Important"
    assert mapping(off)["[Gmail]/All Mail"] == "[Gmail].All Mail"
    on = plan_folders(SLASH, [F("[Gmail]", "/", NOSELECT), F("[Gmail]/Starred", use="\\Flagged"),
                              F("[Gmail]/Chats")], DOT, [], gmail=True)
    assert on.gmail and mapping(on) == {"[Gmail]": None, "[Gmail]/Starred": None, "[Gmail]/Chats": "Chats"}


# --- collisions -------------------------------------------------------------------------------


def test_collision_suffixes_the_later_source_folder_and_children_follow():
    plan = plan_folders(SLASH, folders(SLASH, "INBOX", "INBOX/foo", "foo", "foo/x"), INBOX_DOT, [])
    assert mapping(plan) == {"INBOX": "INBOX", "INBOX/foo": "INBOX.foo", "foo": "INBOX.foo (2)",
                             "foo/x": "INBOX.foo (2).x"}
    assert [(r.source, r.wanted, r.target) for r in plan.renamed] == [("foo", "INBOX.foo", "INBOX.foo (2)")]
    assert "INBOX/foo" in plan.renamed[0].reason
    assert set(plan.renamed[0].as_dict()) == {"source", "wanted", "target", "reason"}
    swapped = plan_folders(SLASH, folders(SLASH, "foo", "INBOX/foo"), INBOX_DOT, [])
    assert mapping(swapped) == {"foo": "INBOX.foo", "INBOX/foo": "INBOX.foo (2)"}


def test_collision_from_separator_replacement_and_repeated_suffixes():
    got = plan_names(SLASH, ["a.b", "a_b", "a_b (2)", "a/b"], DOT)
    assert got == {"a.b": "a_b", "a_b": "a_b (2)", "a_b (2)": "a_b (2) (2)", "a/b": "a.b"}


def test_special_claims_before_a_plain_folder_of_the_same_name():
    got = plan_names(SLASH, ["Sent", F("Sent Items", use="\\Sent")], DOT, [F("Sent", ".", use="\\Sent")])
    assert got == {"Sent Items": "Sent", "Sent": "Sent (2)"}


def test_inbox_collisions_are_case_insensitive():
    got = plan_names(INBOX_DOT, ["INBOX", "INBOX.INBOX"], SLASH)
    assert got == {"INBOX": "INBOX", "INBOX.INBOX": "INBOX (2)"}
    got = plan_names(SLASH, ["INBOX", "INBOX/x"], INBOX_DOT, map_folder={"INBOX/x": "inbox"})
    assert got == {"INBOX": "INBOX", "INBOX/x": "INBOX.INBOX (2)"}


def test_nothing_else_becomes_inbox_when_inbox_itself_is_overridden():
    plan = plan_folders(INBOX_DOT, folders(INBOX_DOT, "INBOX", "INBOX.INBOX"), SLASH, [],
                        map_folder={"INBOX": "Old Inbox"})
    assert mapping(plan) == {"INBOX": "Old Inbox", "INBOX.INBOX": "INBOX (2)"}
    assert plan.target_for("INBOX") == "Old Inbox" and plan.target_for("nope") is None


# --- refused names --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "ns", "expected"), [
    ("~name", SLASH, "_name"),
    ("INBOX.~a.b", INBOX_DOT, "INBOX._a.b"),
    ("INBOX/~x", SLASH, "INBOX/_x"),
    (".hidden", SLASH, "_hidden"),
    ("  Blank  /x ", SLASH, "Blank/x"),
    ("a\x01b\x7f", SLASH, "a_b_"),
    ("a//b", SLASH, "a/_/b"),
    ("~~x", SLASH, "_~x"),
])
def test_sanitize_rules(name, ns, expected):
    assert sanitize_for_target(name, ns) == expected
    assert fallback_name(name, ns, set()) == expected


def test_fallback_deduplicates_and_never_returns_the_refused_name():
    assert fallback_name("~a", SLASH, {"_a", "_a (2)"}) == "_a (3)"
    assert fallback_name("fine", SLASH, set()) == "fine (2)"
    assert fallback_name("~a", SLASH, {"x"}) == fallback_name("~a", SLASH, {"x"})


def test_names_kept_exactly_by_default_and_sanitized_on_request():
    assert plan_names(SLASH, ["~tilde", " pad "], DOT) == {"~tilde": "~tilde", " pad ": " pad "}
    assert plan_names(SLASH, ["~tilde", " pad "], DOT, sanitize=True) == {"~tilde": "_tilde", " pad ": "pad"}


# --- order ------------------------------------------------------------------------------------


def test_plan_order_inbox_first_parents_before_children():
    src = folders(SLASH, "b/c", "a", "b", "INBOX/x", "INBOX")
    order = [m.source for m in plan_folders(SLASH, src, DOT, []).mappings]
    assert order[0] == "INBOX"
    assert order.index("b") < order.index("b/c")
    assert order.index("INBOX") < order.index("INBOX/x")


# --- modified UTF-7 ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "raw"), [
    ("Entwürfe", b"Entw&APw-rfe"), ("A & B", b"A &- B"), ("日本語", b"&ZeVnLIqe-"), ("plain", b"plain"),
])
def test_mutf7_known_vectors(text, raw):
    assert encode_mutf7(text) == raw
    assert decode_mutf7(raw) == text


def test_decode_accepts_raw_utf8_and_malformed_input():
    assert decode_mutf7("Entwürfe".encode()) == "Entwürfe"
    assert isinstance(decode_mutf7(b"bad&AOQ"), str)


@given(st.text(st.characters(exclude_categories=("Cs",))) | st.sampled_from(["&", "&-", "😀📬", "日本語", "Entwürfe"]))
def test_mutf7_round_trip(text):
    raw = encode_mutf7(text)
    assert all(b < 0x80 for b in raw)
    assert decode_mutf7(raw) == text


# --- properties over random trees -----------------------------------------------------------

PARTS = ["a", "b", "Sent", "Sent Items", "Trash", "Papierkorb", "INBOX", "inbox", "x.y", "x/y", "~z",
         " sp", "a_b", "a (2)", "[Gmail]", "All Mail", "日本語", "Entwürfe", "Archive"]
USES = [None, None, None, "\\Sent", "\\Trash", "\\Junk", "\\Drafts", "\\Archive", "\\All", "\\Important",
        "\\Flagged"]
NAMESPACES = [SLASH, DOT, INBOX_DOT, Namespace("", None)]


@st.composite
def trees(draw):
    src_ns = draw(st.sampled_from(NAMESPACES[:3]))
    paths = draw(st.lists(st.lists(st.sampled_from(PARTS), min_size=1, max_size=3), max_size=12))
    names: dict[str, FolderInfo] = {}
    if draw(st.booleans()):
        names["INBOX"] = F("INBOX", src_ns.delimiter)
    for path in paths:
        name = src_ns.prefix + src_ns.delimiter.join(path)
        if name.upper() == "INBOX":  # a server lists one INBOX
            continue
        flags = (NOSELECT,) if draw(st.booleans()) and len(names) % 3 == 0 else ()
        names.setdefault(name, F(name, src_ns.delimiter, *flags, use=draw(st.sampled_from(USES))))
    tgt_ns = draw(st.sampled_from(NAMESPACES))
    tgt = draw(st.lists(st.sampled_from(["Sent", "Trash", "Junk E-mail", "Archive"]), unique=True))
    tgt_folders = [F(tgt_ns.prefix + t, tgt_ns.delimiter) for t in tgt]
    exclude = draw(st.lists(st.sampled_from(["a*", "Trash", "*/b", "x?y"]), max_size=2))
    overrides = {}
    if names and draw(st.booleans()):
        overrides[draw(st.sampled_from(sorted(names)))] = draw(st.sampled_from(["a", "Sent", "INBOX", "INBOX.x"]))
    return src_ns, list(names.values()), tgt_ns, tgt_folders, exclude, overrides


def _key(name: str, delim: str | None) -> str:
    up = name.upper()
    return "INBOX" + name[5:] if up == "INBOX" or (delim and up.startswith("INBOX" + delim)) else name


@settings(max_examples=300, deadline=None)
@given(trees())
def test_random_trees_properties(tree):
    src_ns, src, tgt_ns, tgt, exclude, overrides = tree
    plan = plan_folders(src_ns, src, tgt_ns, tgt, exclude=exclude, map_folder=overrides)
    again = plan_folders(src_ns, src, tgt_ns, tgt, exclude=exclude, map_folder=overrides)
    assert plan == again  # deterministic
    assert sorted(m.source for m in plan.mappings) == sorted(f.name for f in src)  # everything planned

    targets = [m.target for m in plan.mappings if m.target is not None]
    keys = [_key(t, tgt_ns.delimiter) for t in targets]
    assert len(keys) == len(set(keys)), "two source folders share a target"

    d = tgt_ns.delimiter or "/"
    for m in plan.mappings:
        t = m.target
        if t is None or overrides:  # an override (and its subtree) is taken as written
            continue
        assert not t.upper().startswith(f"INBOX{d}INBOX{d}")
        if tgt_ns.prefix:
            assert t.upper() == "INBOX" or t.startswith(tgt_ns.prefix) or t.upper().startswith("INBOX (")

    gmail_views = {"\\Important", "\\Flagged"}
    first_with_parts: dict[tuple[str, ...], str] = {}
    for f in sorted(src, key=lambda f: f.name.upper() != "INBOX"):
        first_with_parts.setdefault(split_name(f.name, f.delimiter, src_ns)[0], f.name)
    for f, m in ((f, next(m for m in plan.mappings if m.source == f.name)) for f in src):
        parts, _ = split_name(f.name, f.delimiter, src_ns)
        excluded = any(fnmatch.fnmatchcase(c, p) for p in exclude for c in (f.name, "/".join(parts)))
        if excluded:
            assert (m.target, m.reason) == (None, "excluded")
        elif (o := overrides.get(f.name, overrides.get("/".join(parts))
                                 if first_with_parts[parts] == f.name else None)) is not None:
            assert m.target is not None and m.target.startswith(o)
        elif plan.gmail and f.special_use in gmail_views:
            assert m.reason in ("gmail-view", "gmail-container")
        elif f.selectable:
            assert m.target is not None, m

    order = [m.source for m in plan.mappings]
    all_mail = next((m for m in plan.mappings if m.special_use == "\\All"), None)
    if all_mail and all_mail.target:  # All Mail (and its subtree, if any) last
        assert plan.gmail
        tail = plan.mappings[plan.mappings.index(all_mail):]
        under = (all_mail.target or "\0") + d
        assert all(m is all_mail or (m.target or "").startswith(under) for m in tail)
    if any(s.upper() == "INBOX" for s in order):
        assert order[0].upper() == "INBOX"
    pos = {m.target: i for i, m in enumerate(plan.mappings) if m.target}
    for t, i in pos.items():  # a folder's target parent, if planned, comes first
        cut = t.rfind(d)
        if cut > 0 and t[:cut] in pos:
            assert pos[t[:cut]] < i


# --- what the scan keeps per message ------------------------------------------------------

def test_scan_keeps_headers_only_where_a_failure_may_need_them() -> None:
    from migrate.dedupe.keys import message_id_of, subject_of
    from migrate.engine.folder_sync import _identified, _slim
    from migrate.models import MessageMeta

    head = b"Message-ID: <a@x>\r\nSubject: Quartalszahlen\r\n"
    small = MessageMeta(uid=1, size=500, flags=("\\Seen",), internaldate=None, header=head, text_head=b"t")
    big = MessageMeta(uid=2, size=5000, flags=(), internaldate=None, header=head)
    slim = _slim(small, append_limit=1000)
    assert (slim.uid, slim.size, slim.flags, slim.header, slim.text_head) == (1, 500, ("\\Seen",), b"", None)
    assert _slim(big, append_limit=1000) is big  # too big: may fail unfetched, keeps its name
    assert _slim(small, append_limit=None).header == b""
    # a refused APPEND: the name comes from the body the target refused
    body = b"Message-ID: <a@x>\r\nFrom: b@y\r\nSubject: Quartalszahlen\r\n\r\ntext\r\n"
    named = _identified(slim, body)
    assert (message_id_of(named), subject_of(named), named.uid, named.size) == ("a@x", "Quartalszahlen", 1, 500)
    assert _identified(slim, None) is slim and _identified(big, body) is big


# --- names the target refuses: ever safer candidates ----------------------------------------------


def test_candidates_go_from_the_name_down_to_plain_ascii():
    from migrate.folders import name_candidates

    assert name_candidates('Projekt "Q1"', SLASH) == ['Projekt "Q1"', "Projekt _Q1_"]
    assert name_candidates("R&D 🚀 Müller", SLASH) == ["R&D 🚀 Müller", "R&D Müller", "R_D Muller"]
    assert name_candidates("~Ablage 📁", SLASH) == ["~Ablage 📁", "_Ablage 📁", "_Ablage"]
    assert name_candidates("50% *wild* a\\b", SLASH)[-1] == "50_ _wild_ a_b"
    assert name_candidates("日本語", SLASH) == ["日本語", "_"]
    assert name_candidates("❤️ Love", SLASH) == ["❤️ Love", "❤ Love", "_ Love"]
    # every level of a path (below the namespace prefix), the separator kept
    assert name_candidates("INBOX.Ä.\"b\"", INBOX_DOT) == ["INBOX.Ä.\"b\"", "INBOX.Ä._b_", "INBOX.A._b_"]


def test_candidates_keep_an_existing_parent_and_suffix_only_taken_names():
    from migrate.folders import name_candidates

    # '.x' exists already (a server that allows it): only the new level is rewritten
    assert name_candidates(".x/~y", SLASH, keep=".x") == [".x/~y", ".x/_y"]
    assert name_candidates(".x/~y", SLASH) == [".x/~y", "_x/_y"]
    assert name_candidates("~a", SLASH, {"_a", "_a (2)"}) == ["~a", "_a (3)"]
    assert name_candidates('~a"', SLASH, {"_a_"}) == ['~a"', '_a"', "_a_ (2)"]
    # nothing to rewrite: one more try under a suffix, as before; INBOX never changes
    assert name_candidates("Files", SLASH, {"Files (2)"}) == ["Files", "Files (3)"]
    assert name_candidates("INBOX", SLASH) == ["INBOX"]


@given(st.text(min_size=1, max_size=12))
@settings(max_examples=300, deadline=None)
def test_last_candidate_is_plain_ascii_and_all_are_distinct(name):
    from migrate.folders import name_candidates

    cands = name_candidates(name, SLASH, {"_"})
    assert len(set(cands)) == len(cands) and cands[0] == name
    last = cands[-1]
    if name.upper() != "INBOX":
        assert last.isascii() and not any(c in last for c in '"\\%*&~') and last.strip() == last
        assert all(p and p[0] not in "~." for p in last.split("/"))


# --- a mapping recorded by an earlier run -----------------------------------------------------------


def test_recorded_mapping_wins_over_detection_and_children_follow():
    # The run that created "Archive" on a target without SPECIAL-USE next to a user's "ARCHIVE".
    src = [F("INBOX"), F("Archive", use="\\Archive"), F("ARCHIVE"), F("~b"), F("~b/new")]
    tgt = [F("INBOX"), F("ARCHIVE"), F("Archive"), F("_b")]
    recorded = {"Archive": "Archive", "ARCHIVE": "ARCHIVE", "~b": "_b"}
    plan = plan_folders(SLASH, src, SLASH, tgt, recorded=recorded)
    assert mapping(plan) == {"INBOX": "INBOX", "Archive": "Archive", "ARCHIVE": "ARCHIVE", "~b": "_b",
                             "~b/new": "_b/new"}
    assert not plan.renamed
    reasons = {m.source: m.reason for m in plan.mappings}
    assert reasons["Archive"] == "special" and reasons["~b"] == "folder"


def test_recorded_names_claim_first_and_an_override_still_wins():
    src = [F("INBOX"), F("_b"), F("~b"), F("Old")]
    plan = plan_folders(SLASH, src, SLASH, [F("INBOX")], recorded={"~b": "_b", "Old": "Old"},
                        map_folder={"Old": "Archive/Old"})
    assert mapping(plan) == {"INBOX": "INBOX", "_b": "_b (2)", "~b": "_b", "Old": "Archive/Old"}


def test_recorded_special_folder_missing_on_the_target_is_created_with_its_role():
    src = [F("INBOX"), F("Archive", use="\\Archive")]
    plan = plan_folders(SLASH, src, SLASH, [F("INBOX")], recorded={"Archive": "Archiv"})
    assert mapping(plan)["Archive"] == "Archiv" and plan.new_special == {"\\Archive": "Archiv"}


def test_a_name_changed_for_the_target_separator_is_reported():
    plan = plan_folders(SLASH, [F("INBOX"), F("Releases/v1.2"), F("v1.2")], DOT, [F("INBOX")])
    assert mapping(plan)["Releases/v1.2"] == "Releases.v1_2"
    assert {(r.source, r.target) for r in plan.renamed} == {("Releases/v1.2", "Releases.v1_2"), ("v1.2", "v1_2")}
    assert all("separates folder levels" in r.reason for r in plan.renamed)
