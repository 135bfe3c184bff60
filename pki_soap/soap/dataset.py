"""The untyped ``%XML.DataSet`` of ListCertificates: writer (server) and reader (client).

Layout and reader rules are those of wire-protocol.md §3.2: an inline XSD naming the row
element and its columns, then a DiffGram holding the rows.  InterSystems clients read columns
by position, so the writer keeps the column order and writes each value on its own line (the
wget client takes the last line holding ``<Number>``).  Pure lxml and text; no spyne here, so
the client can use the reader too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from lxml import etree

from pki_soap.errors import ServerUnreachable
from pki_soap.soap.envelope import CRLF, XSD_NS, escape_value, is_plain

MSDATA_NS = "urn:schemas-microsoft-com:xml-msdata"
DIFFGRAM_NS = "urn:schemas-microsoft-com:xml-diffgram-v1"

#: The dataset element of an untyped %XML.DataSet (also the schema's ``id``).
DEFAULT_DATASET = "DefaultDataSet"
#: ListCertificates with both arguments empty: every certificate, four columns.
LIST_ALL_COLUMNS = ("Number", "Hostname", "Instance", "Filename")
#: ListCertificates for one host and instance: two columns.
LIST_MY_COLUMNS = ("Number", "Filename")


@dataclass(frozen=True)
class DataSet:
    """One query's result as IRIS sends it: row element name, column names, row values.

    ``rows`` may be any iterable (a store cursor included); it is read once, while writing.
    A ``None`` value is a NULL column and is left out of its row.
    """

    row_name: str
    columns: tuple[str, ...]
    rows: Iterable[Sequence[str | None]]
    name: str = DEFAULT_DATASET


def dataset_chunks(dataset: DataSet) -> Iterator[str]:
    """The text inside ``<ListCertificatesResult>``: schema, then diffgram, CR LF line ends.

    Rows are pulled from ``dataset.rows`` one at a time and written as they come.

    Raises:
        UnwritableValue: a value holds a character XML 1.0 cannot carry.
        ValueError: a row has more values than there are columns.
    """
    row = escape_value(dataset.row_name)
    name = escape_value(dataset.name)
    columns = tuple(dataset.columns)
    width = len(columns)
    yield _schema_text(name, row, columns)
    whole_row = _row_template(row, columns)
    for index, values in enumerate(dataset.rows):
        if len(values) > width:
            raise ValueError(f"row {index + 1} has more values than the DataSet has columns")
        if len(values) == width:
            # The common row - every column set, nothing to escape - is one formatting.
            try:
                plain = is_plain("".join(values))  # type: ignore[arg-type]  # None: TypeError
            except TypeError:
                plain = False
            if plain:
                yield whole_row % (index + 1, index, *values)
                continue
        parts = [f'  <{row} diffgr:id="{row}{index + 1}" msdata:rowOrder="{index}">{CRLF}']
        # A short row leaves its last columns NULL.
        for column, value in zip(columns, values, strict=False):
            if value is not None:
                parts.append(f"    <{column}>{escape_value(value)}</{column}>{CRLF}")
        parts.append(f"  </{row}>{CRLF}")
        yield "".join(parts)
    yield f"</{name}>{CRLF}</diffgr:diffgram>{CRLF}"


@functools.lru_cache(maxsize=16)
def _schema_text(name: str, row: str, columns: tuple[str, ...]) -> str:
    # The same few (name, row, columns) come on every call: written once, then reused.
    lines = [
        "",
        f'<s:schema id="{name}" xmlns="" attributeFormDefault="qualified"'
        f' elementFormDefault="qualified" xmlns:s="{XSD_NS}" xmlns:msdata="{MSDATA_NS}">',
        f'  <s:element name="{name}" msdata:IsDataSet="true">',
        "    <s:complexType>",
        '      <s:choice maxOccurs="unbounded">',
        f'        <s:element name="{row}">',
        "          <s:complexType>",
        "            <s:sequence>",
    ]
    lines += [
        f'              <s:element name="{escape_value(column)}" type="s:string" minOccurs="0" />'
        for column in columns
    ]
    lines += [
        "            </s:sequence>",
        "          </s:complexType>",
        "        </s:element>",
        "      </s:choice>",
        "    </s:complexType>",
        "  </s:element>",
        "</s:schema>",
        f'<diffgr:diffgram xmlns:msdata="{MSDATA_NS}" xmlns:diffgr="{DIFFGRAM_NS}">',
        f'<{name} xmlns="">',
        "",
    ]
    return CRLF.join(lines)


@functools.lru_cache(maxsize=16)
def _row_template(row: str, columns: tuple[str, ...]) -> str:
    """A ``%``-format of one full row: (row number, row order, value per column)."""
    row, columns = row.replace("%", "%%"), tuple(c.replace("%", "%%") for c in columns)
    return "".join(
        [
            f'  <{row} diffgr:id="{row}%d" msdata:rowOrder="%d">{CRLF}',
            *(f"    <{column}>%s</{column}>{CRLF}" for column in columns),
            f"  </{row}>{CRLF}",
        ]
    )


def _bad(why: str) -> ServerUnreachable:
    return ServerUnreachable(f"the server's answer is not a valid %XML.DataSet: {why}")


def _only_child(parent: etree._Element, local: str) -> etree._Element:
    children = [c for c in parent if isinstance(c.tag, str)]
    if not children or children[0].tag != f"{{{XSD_NS}}}{local}":
        raise _bad(f"expected s:{local} inside s:{etree.QName(parent).localname}")
    return children[0]


def read_dataset(result: etree._Element) -> tuple[str, list[str], list[dict[str, str]]]:
    """Read the DataSet inside a ``<...Result>`` element: ``(row_name, columns, rows)``.

    Follows the reader of ``%XML.DataSet`` (§3.2): the first child must be the inline
    ``s:schema`` (dataset element with ``msdata:IsDataSet="true"``, one row element, its
    column sequence; key/unique siblings are ignored), followed by the ``diffgr:diffgram``
    whose dataset element is in the schema's ``targetNamespace`` (none when absent).  Columns
    inside a row must keep schema order; missing ones are allowed and absent from the row's
    dict.  Each row is a dict column name -> text (``""`` for an empty element).

    Raises:
        ServerUnreachable: the element is not such a DataSet (names the reason).
    """
    children = [c for c in result if isinstance(c.tag, str)]
    if not children or children[0].tag != f"{{{XSD_NS}}}schema":
        raise _bad("the first element is not an inline s:schema")
    schema = children[0]
    target_ns = schema.get("targetNamespace") or None
    dataset_decl = next(
        (
            c
            for c in schema
            if isinstance(c.tag, str)
            and c.tag == f"{{{XSD_NS}}}element"
            and c.get(f"{{{MSDATA_NS}}}IsDataSet", "").lower() == "true"
        ),
        None,
    )
    if dataset_decl is None or not dataset_decl.get("name"):
        raise _bad('no s:element with msdata:IsDataSet="true" in the schema')
    dataset_name = dataset_decl.get("name", "")
    # Only the first complexType matters; unique/key constraints after it are ignored.
    choice = _only_child(_only_child(dataset_decl, "complexType"), "choice")
    row_decl = _only_child(choice, "element")
    row_name = row_decl.get("name")
    if not row_name:
        raise _bad("the row element of the schema has no name")
    sequence = _only_child(_only_child(row_decl, "complexType"), "sequence")
    columns: list[str] = []
    for column in sequence:
        if not isinstance(column.tag, str):
            continue
        if column.tag != f"{{{XSD_NS}}}element" or not column.get("name"):
            raise _bad("a column of the schema is not a named s:element")
        columns.append(column.get("name", ""))

    diffgram = next((c for c in children[1:] if c.tag == f"{{{DIFFGRAM_NS}}}diffgram"), None)
    if diffgram is None:
        raise _bad("no diffgr:diffgram after the schema")
    dataset_tag = etree.QName(target_ns, dataset_name).text
    row_tag = etree.QName(target_ns, row_name).text
    column_tags = {etree.QName(target_ns, name).text: i for i, name in enumerate(columns)}
    rows: list[dict[str, str]] = []
    # An empty DataSet may come without a dataset element (.NET writes a bare diffgram);
    # diffgr:before / diffgr:errors sections are not rows.
    content = [
        c for c in diffgram if isinstance(c.tag, str) and etree.QName(c).namespace != DIFFGRAM_NS
    ]
    if any(c.tag != dataset_tag for c in content):
        raise _bad(f"the diffgram holds no {dataset_tag} element but {content[0].tag}")
    for dataset_element in content:
        for row_element in dataset_element:
            if not isinstance(row_element.tag, str):
                continue
            if row_element.tag != row_tag:
                raise _bad(f"unexpected row element {row_element.tag}")
            row: dict[str, str] = {}
            last = -1
            for value in row_element:
                if not isinstance(value.tag, str):
                    continue
                position = column_tags.get(value.tag)
                if position is None:
                    raise _bad(f"unknown column {value.tag}")
                if position <= last:
                    raise _bad(f"column {columns[position]} out of schema order")
                last = position
                row[columns[position]] = value.text or ""
            rows.append(row)
    return row_name, columns, rows
