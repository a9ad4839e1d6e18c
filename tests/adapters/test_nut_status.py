"""``ups.status`` parsing against every status string observed in the NUT device-dump library, and the
protocol's quoting (RFC 9271)."""

from __future__ import annotations

import re

import pytest

from adapters.nut import STATUS_FLAGS, describe_status, parse_status
from adapters.nut._protocol import join, quote, split
from tests.conftest import SHARED

SAMPLES = SHARED / "samples" / "nut" / "observed_ups_status_values_in_nut-ddl.txt"
LINE = re.compile(r"^\s*(\d+) ups\.status: ?(.*)$")


def sample_lines() -> list[tuple[int, str]]:
    """(count, everything after ``ups.status:``) per line, comments and stray quotes included."""
    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if m is None]
    return [(int(m.group(1)), m.group(2)) for m in parsed if m is not None]


def status_of(rest: str) -> str:
    """The status itself: a line's text up to its #comment or the first backtick/quote (prose around it)."""
    return re.split(r"[#`\"]", rest, maxsplit=1)[0].strip()


def test_samples_file_is_what_we_think() -> None:
    lines = sample_lines()  # every line has the expected shape (asserted there), so none is left untested
    assert len(lines) == 49
    assert sum(count for count, _ in lines) == 725


@pytest.mark.parametrize(("count", "rest"), sample_lines(), ids=lambda v: repr(v) if isinstance(v, str) else "")
def test_every_observed_status_parses(count: int, rest: str) -> None:
    # The raw remainder (comments, backticks and all) must not break the parser, nor the clean status.
    for text in (rest, status_of(rest)):
        flags = parse_status(text)
        assert isinstance(flags, frozenset)
        assert all(f and not f.isspace() for f in flags)
        assert flags == frozenset(text.split())
        assert describe_status(flags)


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("OL", {"OL"}),
        ("OL CHRG", {"OL", "CHRG"}),
        ("OB DISCHRG", {"OB", "DISCHRG"}),
        ("OB LB DISCHRG", {"OB", "LB", "DISCHRG"}),
        ("OL OB", {"OL", "OB"}),  # contradictory: the bridge takes it as on battery
        ("OL DISCHRG OB", {"OL", "DISCHRG", "OB"}),
        ("OL LB OVER RB BOOST", {"OL", "LB", "OVER", "RB", "BOOST"}),
        ("HB OL", {"HB", "OL"}),
        ("OL HE", {"OL", "HE"}),  # HE: not a documented flag, kept as it came
        ("ALARM ", {"ALARM"}),
        ("", set()),
        ("\t", set()),
    ],
)
def test_flags(text: str, flags: set[str]) -> None:
    assert parse_status(text) == flags


def test_the_explicit_cases_are_in_the_samples() -> None:
    observed = {status_of(rest) for _, rest in sample_lines()}
    for text in ("OL", "OL CHRG", "OB DISCHRG", "OB LB DISCHRG", "OL OB", "HB OL", "OL HE", "", "OL LB OVER RB BOOST"):
        assert text in observed


def test_none_and_unknown_flags() -> None:
    assert parse_status(None) == frozenset()
    assert "HE" not in STATUS_FLAGS
    assert "HB" in STATUS_FLAGS
    assert describe_status(parse_status("OL HE")) == "on line (mains power), unknown flag HE"
    assert describe_status(parse_status("CHRG OL")) == "on line (mains power), charging"
    assert describe_status(frozenset()) == "no status"


def test_every_documented_flag_has_a_meaning() -> None:
    documented = {"OL", "OB", "LB", "HB", "RB", "CHRG", "DISCHRG", "BYPASS", "CAL", "OFF", "OVER", "TRIM", "BOOST"}
    assert documented | {"FSD"} <= STATUS_FLAGS.keys()


# ------------------------------------------------------------------------------------------------ protocol words
@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('VAR ups ups.status "OL CHRG"\n', ["VAR", "ups", "ups.status", "OL CHRG"]),
        ('VAR ups ups.status ""', ["VAR", "ups", "ups.status", ""]),
        ('VAR u ups.model "say \\"hi\\" \\\\ ok"', ["VAR", "u", "ups.model", 'say "hi" \\ ok']),
        ("BEGIN LIST VAR ups\r\n", ["BEGIN", "LIST", "VAR", "ups"]),
        ("ERR DATA-STALE", ["ERR", "DATA-STALE"]),
        ('VAR u x "unterminated', ["VAR", "u", "x", "unterminated"]),
        ("   ", []),
    ],
)
def test_split(line: str, words: list[str]) -> None:
    assert split(line) == words


@pytest.mark.parametrize("word", ["plain", "two words", 'a "quote"', "back\\slash", "", "tab\there", "日本語"])
def test_quote_round_trips(word: str) -> None:
    assert split(join("VAR", "ups", "x", word, quote_last=True).decode()) == ["VAR", "ups", "x", word]
    assert split(quote(word)) == [word]


def test_quote_refuses_line_breaks() -> None:
    with pytest.raises(ValueError, match="line break"):
        quote("a\nLIST VAR other")
    assert quote("ups.status") == "ups.status"
    assert quote("x", always=True) == '"x"'
