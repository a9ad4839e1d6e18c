"""Line protocol: escaping and types, checked by writing hostile names and values to a real influxd and reading
them back exactly."""

from __future__ import annotations

import calendar
import math

import pytest

from hub.history import Unencodable, encode_line, series_key, split_points, time_ns
from hub.history._lineprotocol import encode_fields, escape_measurement, escape_tag, quote_string
from tests.history.rig import T0
from tests.servers import Influx

HOSTILE_STRINGS = [
    'he said "hi"',
    "back\\slash",
    "trailing backslash\\",
    '\\"',
    "\\\\",
    "new\nline",
    "cr\rlf\r\n",
    "tab\there",
    "a=b,c d",
    "",
    "ünïcödé 日本語 🚀",
    "#not a comment",
    "\u2028line separator\u0085next line",
    "literal \\n not a newline",
]

HOSTILE_TAGS = [
    "a b",
    "a,b",
    "a=b",
    'a"b',
    "a'b",
    "back\\slash mid",
    "ünïcödé 日本語 🚀",
    " lead and trail ",
    "#hash",
    "m3/h",
    "%",
]


def test_escaping_by_element() -> None:
    assert escape_measurement("m a,b=c") == r"m\ a\,b=c"
    assert escape_tag("k a,b=c") == r"k\ a\,b\=c"
    assert quote_string('q"b\\e\nn') == '"q\\"b\\\\e\nn"'
    assert series_key("reading", {"z": "1", "a": "x y", "empty": "", "none": None}) == r"reading,a=x\ y,z=1"


@pytest.mark.parametrize(
    ("value", "spelled"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0i"),
        (-42, "-42i"),
        (2**63 - 1, f"{2**63 - 1}i"),
        (-(2**63), f"{-(2**63)}i"),
        (2**63, "9.223372036854776e+18"),  # beyond int64: a float, not a refused batch
        (21.5, "21.5"),
        (1e16, "1e+16"),
        (0.1, "0.1"),
        (-0.0, "-0.0"),
        ("text", '"text"'),
    ],
)
def test_field_types(value: bool | float | str, spelled: str) -> None:
    assert encode_fields({"f": value}) == (f"f={spelled}", 0)


def test_non_finite_values_are_left_out_and_counted() -> None:
    fields = {"a": math.nan, "b": 1.0, "c": math.inf, "d": -math.inf, "e": 10**400, "f": None}
    assert encode_fields(fields) == ("b=1.0", 4)
    assert encode_line("m", {}, {"a": math.nan}, 1) == (None, 1)


@pytest.mark.parametrize("bad", ["new\nline", "cr\r", "trailing\\", "back\\ space", "back\\,comma", "back\\=equals"])
def test_what_line_protocol_cannot_spell_in_a_tag_is_refused(bad: str) -> None:
    with pytest.raises(Unencodable):
        escape_tag(bad)


def test_unencodable_measurements() -> None:
    for bad in ("", "#comment", "a\nb", "a\\ b", "a\\"):
        with pytest.raises(Unencodable):
            escape_measurement(bad)


def test_time_ns_is_exact_to_the_microsecond() -> None:
    seconds = calendar.timegm(T0.utctimetuple())
    assert time_ns(T0) == seconds * 10**9
    assert time_ns(T0.replace(microsecond=999_999)) == seconds * 10**9 + 999_999_000
    assert time_ns(T0.replace(tzinfo=None)) == time_ns(T0)


def test_split_points_keeps_newlines_inside_strings() -> None:
    lines = [encode_line("m", {"t": "a b"}, {"s": s, "n": 1}, i)[0] for i, s in enumerate(HOSTILE_STRINGS)]
    body = ("\n".join(str(line) for line in lines) + "\n").encode()
    assert split_points(body) == [f"{line}\n".encode() for line in lines]
    assert split_points(b"m f=1i 1\nm f=2i 2") == [b"m f=1i 1\n", b"m f=2i 2\n"]


def test_hostile_names_and_values_round_trip_through_influxdb(influxdb: Influx) -> None:
    measurement = "ms ,=x\"y'ü日本"
    body = []
    expected = []
    for i, tag in enumerate(HOSTILE_TAGS):
        text = HOSTILE_STRINGS[i % len(HOSTILE_STRINGS)]
        fields = {"text": text, "int": -(2**63) + i, "float": 1 / 3 + i, "flag": i % 2 == 0, 'k e,y="': i}
        line, dropped = encode_line(measurement, {"t a,g=": tag, "n": str(i)}, fields, 1_000_000_000 + i)
        assert line is not None
        assert dropped == 0
        body.append(line)
        expected.append({"t a,g=": tag, "n": str(i), **fields})
    for i, text in enumerate(HOSTILE_STRINGS):
        line, _ = encode_line(measurement, {"n": f"s{i}"}, {"text": text}, 2_000_000_000 + i)
        assert line is not None
        body.append(line)
        expected.append({"t a,g=": None, "n": f"s{i}", "text": text, "int": None, "float": None, "flag": None,
                         "k e,y=\"": None})  # fmt: skip
    influxdb.write("\n".join(body) + "\n")
    [series] = influxdb.query("SELECT * FROM /.*/")
    assert series["name"] == measurement
    got = [dict(zip(series["columns"], row, strict=True)) for row in series["values"]]
    for row in got:
        del row["time"]
    assert got == expected
    tags = {row[1] for row in influxdb.query('SHOW TAG VALUES WITH KEY = "t a,g="')[0]["values"]}
    assert tags == set(HOSTILE_TAGS)


def test_a_tag_value_with_no_spelling_is_left_out_and_counted() -> None:
    from hub.history import LineSchema
    from tests.history.rig import GRAPH

    schema = LineSchema(GRAPH)
    series = schema.series("reading", {"site": "test-site", "point": "p", "unit": "odd\\"})
    assert series == "reading,point=p,site=test-site"
    assert schema.unencodable == 1
