"""The %XML.DataSet writer and reader (wire-protocol.md §3.2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree

from pki_soap.errors import ServerUnreachable
from pki_soap.soap.dataset import LIST_ALL_COLUMNS, DataSet, dataset_chunks, read_dataset
from pki_soap.soap.envelope import UnwritableValue
from tests.service_support import GOLDEN, REAL_CLIENTS, body_element


def _result(text: str) -> etree._Element:
    return etree.fromstring(f"<Result>{text}</Result>")


def _written(dataset: DataSet) -> etree._Element:
    return _result("".join(dataset_chunks(dataset)))


def test_reader_reads_the_golden_list_all() -> None:
    response = body_element((GOLDEN / "list_all.xml").read_bytes())
    row_name, columns, rows = read_dataset(response[0])
    assert (row_name, columns) == ("ListAll", list(LIST_ALL_COLUMNS))
    assert rows == [
        {
            "Number": "2",
            "Hostname": "webgateway",
            "Instance": "webgateway",
            "Filename": "webgateway_client",
        },
        {"Number": "3", "Hostname": "apache", "Instance": "IRIS", "Filename": "apache_webgateway"},
    ]


def test_reader_reads_a_live_typed_dataset_with_a_key_constraint() -> None:
    # Capture 2 of a real InterSystems server: targetNamespace, mstns, s:unique after the type.
    response = body_element((REAL_CLIENTS / "iris-typed-dataset-response.xml").read_bytes())
    row_name, columns, rows = read_dataset(response[0])
    assert (row_name, columns) == ("QueryByName", ["ID", "Name", "DOB", "SSN"])
    assert [row["Name"] for row in rows] == ["Adam,Wolfgang F.", "Adams,Phil H."]
    assert rows[1]["SSN"] == "729-18-4435"


def test_round_trip_keeps_escaped_values_empty_values_and_nulls() -> None:
    dataset = DataSet(
        "ListAll", LIST_ALL_COLUMNS, [("7", "a&b<c>", "'\"", None), ("8", "", "x", "y")]
    )
    _row_name, _columns, rows = read_dataset(_written(dataset))
    assert rows == [
        {"Number": "7", "Hostname": "a&b<c>", "Instance": "'\""},
        {"Number": "8", "Hostname": "", "Instance": "x", "Filename": "y"},
    ]


def test_writer_pulls_rows_once_as_it_writes() -> None:
    pulled: list[int] = []

    def rows() -> Iterator[tuple[str, str]]:
        for number in range(1, 4):
            pulled.append(number)
            yield str(number), f"file{number}"

    chunks = dataset_chunks(DataSet("ListMy", ("Number", "Filename"), rows()))
    next(chunks)  # the schema is out before any row is read
    assert pulled == []
    rest = "".join(chunks)
    assert pulled == [1, 2, 3]
    assert rest.count("<Number>") == 3
    # Every <Number> is the first tag of its own line (the wget client's contract).
    assert all(line.startswith("    <Number>") for line in rest.split("\r\n") if "<Number>" in line)


def test_writer_refuses_values_xml_cannot_carry() -> None:
    with pytest.raises(UnwritableValue, match=r"XML 1\.0"):
        "".join(dataset_chunks(DataSet("ListMy", ("Number", "Filename"), [("1", "a\x01b")])))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("<x/>", "not an inline s:schema"),
        (
            '<s:schema xmlns:s="http://www.w3.org/2001/XMLSchema"><s:element name="D"/></s:schema>',
            "IsDataSet",
        ),
    ],
    ids=["no-schema", "no-dataset-element"],
)
def test_reader_refuses_what_is_not_a_dataset(text: str, why: str) -> None:
    with pytest.raises(ServerUnreachable, match=why):
        read_dataset(_result(text))


def _swap(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_reader_refuses_columns_out_of_schema_order_and_unknown_columns() -> None:
    text = "".join(dataset_chunks(DataSet("ListMy", ("Number", "Filename"), [("1", "f")])))
    reordered = _swap(
        text,
        "    <Number>1</Number>\r\n    <Filename>f</Filename>",
        "    <Filename>f</Filename>\r\n    <Number>1</Number>",
    )
    with pytest.raises(ServerUnreachable, match="out of schema order"):
        read_dataset(_result(reordered))
    with pytest.raises(ServerUnreachable, match="unknown column"):
        read_dataset(_result(_swap(text, "<Filename>f</Filename>", "<Extra>f</Extra>")))


def test_reader_accepts_missing_columns_and_a_bare_empty_diffgram() -> None:
    text = "".join(dataset_chunks(DataSet("ListMy", ("Number", "Filename"), [("1", None)])))
    assert read_dataset(_result(text))[2] == [{"Number": "1"}]
    bare = text.split("<diffgr:diffgram", 1)[0] + (
        '<diffgr:diffgram xmlns:diffgr="urn:schemas-microsoft-com:xml-diffgram-v1"/>'
    )
    assert read_dataset(_result(bare)) == ("ListMy", ["Number", "Filename"], [])


def test_reader_refuses_a_dataset_in_another_namespace_than_the_schema_says() -> None:
    # Without xmlns="" on DefaultDataSet the rows would inherit the wrapper's namespace;
    # IRIS's reader then finds no dataset, and neither may ours.
    text = "".join(dataset_chunks(DataSet("ListMy", ("Number", "Filename"), [("1", "f")])))
    shifted = _swap(text, '<DefaultDataSet xmlns="">', '<DefaultDataSet xmlns="urn:other">')
    with pytest.raises(ServerUnreachable, match="holds no DefaultDataSet element"):
        read_dataset(_result(shifted))
