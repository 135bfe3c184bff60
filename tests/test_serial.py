"""The .srl serial counter: OpenSSL format, concurrent processes, SIGKILL in the middle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pki_soap.ca.serial import MAX_SERIAL, SerialCounter, format_serial, parse_serial
from pki_soap.errors import CAFileError, InvalidInput
from tests.engine_support import openssl

REPO = Path(__file__).resolve().parents[1]

# A child that takes numbers and prints each one only after take() has returned.
_TAKER = """
import sys
from pathlib import Path
from pki_soap.ca.serial import SerialCounter
counter = SerialCounter(Path(sys.argv[1]))
count = int(sys.argv[2])
block = int(sys.argv[3]) if len(sys.argv) > 3 else 1
sys.stdin.readline()  # wait for "go", so that the children really overlap
taken = 0
while count < 0 or taken < count:
    if block == 1:
        print(counter.take(), flush=True)
    else:
        print(*counter.take_block(block), flush=True)
    taken += 1
"""

# A child that reserves one block, reports it, then dies by SIGKILL before using any of it.
_BLOCK_THEN_KILLED = """
import os, signal, sys
from pathlib import Path
from pki_soap.ca.serial import SerialCounter
block = SerialCounter(Path(sys.argv[1])).take_block(int(sys.argv[2]))
print(block.start, block.stop, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def start_taker() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start taker processes; any still running at the end are killed and reaped."""
    started: list[subprocess.Popen[str]] = []

    def start(srl: Path, count: int, block: int = 1) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", _TAKER, str(srl), str(count), str(block)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(child)
        return child

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()


def _finish(child: subprocess.Popen[str]) -> list[int]:
    """Everything the child printed until it exited, as numbers."""
    assert child.stdout is not None
    output = child.stdout.read()
    child.wait(timeout=120)
    return [int(line) for line in output.split()]


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "00\n"), (1, "01\n"), (10, "0A\n"), (255, "FF\n"), (256, "0100\n"), (4096, "1000\n")],
    ids=["0", "1", "10", "255", "256", "4096"],
)
def test_format_serial_is_openssl_style(value: int, text: str) -> None:
    assert format_serial(value) == text
    assert parse_serial(text) == value


@pytest.mark.parametrize("text", ["", "\n", "xyz\n", "-1\n", "0x10\n", "1 2\n"])
def test_parse_serial_refuses_non_hex(text: str) -> None:
    with pytest.raises(ValueError, match="not a hex serial number"):
        parse_serial(text)


def test_create_writes_00_so_the_first_number_is_1(tmp_path: Path) -> None:
    counter = SerialCounter(tmp_path / "CA.srl")
    assert counter.create() is True
    assert (tmp_path / "CA.srl").read_text() == "00\n"
    assert counter.current() == 0
    assert [counter.take() for _ in range(3)] == [1, 2, 3]
    assert (tmp_path / "CA.srl").read_text() == "03\n"
    assert counter.lock_path == tmp_path / "CA.srl.lock"


def test_create_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    (tmp_path / "CA.srl").write_text("1F\n")
    counter = SerialCounter(tmp_path / "CA.srl")
    assert counter.create() is False
    assert counter.take() == 32
    assert (tmp_path / "CA.srl").read_text() == "20\n"


def test_take_reads_lower_case_and_odd_length_hex(tmp_path: Path) -> None:
    (tmp_path / "CA.srl").write_text("abc")
    assert SerialCounter(tmp_path / "CA.srl").take() == 0xABD
    assert (tmp_path / "CA.srl").read_text() == "0ABD\n"


def test_openssl_continues_our_counter(tmp_path: Path) -> None:
    """The file is what `openssl x509 -req -CAserial` reads and writes."""
    counter = SerialCounter(tmp_path / "ca.srl")
    counter.create(start=0xFE)
    ca_key, ca_cer, csr, out = (tmp_path / n for n in ("ca.key", "ca.cer", "r.csr", "r.cer"))
    made = openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", ca_key, "-out", ca_cer, "-subj", "/CN=ca", "-days", "1",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    made = openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", tmp_path / "r.key", "-out", csr, "-subj", "/CN=leaf",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    signed = openssl(
        "x509", "-req", "-in", csr, "-CA", ca_cer, "-CAkey", ca_key,
        "-CAserial", counter.path, "-out", out, "-days", "1",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    serial = openssl("x509", "-in", out, "-noout", "-serial").stdout.strip()
    assert serial == "serial=FF"
    assert counter.take() == 0x100


def test_current_of_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(CAFileError, match="does not exist"):
        SerialCounter(tmp_path / "none.srl").current()
    with pytest.raises(CAFileError, match="does not exist"):
        SerialCounter(tmp_path / "none.srl").take()


@pytest.mark.parametrize("content", [b"", b"zz\n", b"\xff\xfe"], ids=["empty", "zz", "binary"])
def test_corrupt_file_raises_and_is_not_changed(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "CA.srl"
    path.write_bytes(content)
    with pytest.raises(CAFileError, match=r"corrupt|cannot read"):
        SerialCounter(path).take()
    assert path.read_bytes() == content


def test_take_refuses_beyond_twenty_octets(tmp_path: Path) -> None:
    path = tmp_path / "CA.srl"
    path.write_text(format_serial(2**159 - 1))
    with pytest.raises(CAFileError, match="run out of numbers"):
        SerialCounter(path).take()


def test_take_in_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(CAFileError, match="lock file"):
        SerialCounter(tmp_path / "missing" / "CA.srl").create()


def test_two_processes_taking_200_each_get_400_distinct_numbers(
    tmp_path: Path, start_taker: Callable[..., subprocess.Popen[str]]
) -> None:
    srl = tmp_path / "CA.srl"
    SerialCounter(srl).create()
    children = [start_taker(srl, 200), start_taker(srl, 200)]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    per_child = [_finish(child) for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert [len(numbers) for numbers in per_child] == [200, 200]
    numbers = per_child[0] + per_child[1]
    assert len(numbers) == 400
    assert sorted(numbers) == list(range(1, 401))
    assert SerialCounter(srl).current() == 400


@pytest.mark.parametrize("kill_after", [1, 17, 60], ids=["after-1", "after-17", "after-60"])
def test_sigkill_while_taking_never_lets_a_number_be_reused(
    tmp_path: Path, kill_after: int, start_taker: Callable[..., subprocess.Popen[str]]
) -> None:
    srl = tmp_path / "CA.srl"
    SerialCounter(srl).create()
    child = start_taker(srl, -1)  # takes numbers until killed
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    reported = [int(child.stdout.readline()) for _ in range(kill_after)]
    os.kill(child.pid, signal.SIGKILL)
    reported += _finish(child)
    assert child.returncode == -signal.SIGKILL
    text = srl.read_text()
    assert text.endswith("\n") and len(text.strip()) % 2 == 0  # still a valid serial file
    assert reported == list(range(1, len(reported) + 1))
    assert SerialCounter(srl).take() > max(reported)


# -- blocks of numbers (CAServer.issue_many) ------------------------------------------------


def test_take_a_block_returns_its_first_number_and_writes_its_last(tmp_path: Path) -> None:
    counter = SerialCounter(tmp_path / "CA.srl")
    counter.create(start=0x0F)
    assert counter.take(count=100) == 0x10
    assert (tmp_path / "CA.srl").read_text() == "73\n"  # 0x10 + 100 - 1
    assert counter.take_block(3) == range(0x74, 0x77)
    assert counter.current() == 0x76
    assert counter.take() == 0x77  # the default block is one number


@pytest.mark.parametrize("count", [0, -1, True, 2.0], ids=["zero", "negative", "bool", "float"])
def test_a_block_needs_a_positive_whole_count(tmp_path: Path, count: object) -> None:
    counter = SerialCounter(tmp_path / "CA.srl")
    counter.create()
    with pytest.raises(InvalidInput, match="count of at least 1"):
        counter.take(count)  # type: ignore[arg-type]
    assert counter.current() == 0


def test_a_block_past_twenty_octets_is_refused_whole(tmp_path: Path) -> None:
    counter = SerialCounter(tmp_path / "CA.srl")
    counter.create(start=MAX_SERIAL - 3)
    with pytest.raises(CAFileError, match="run out of numbers"):
        counter.take_block(4)
    assert counter.current() == MAX_SERIAL - 3
    assert counter.take_block(3) == range(MAX_SERIAL - 2, MAX_SERIAL + 1)


def test_two_processes_taking_blocks_get_disjoint_blocks(
    tmp_path: Path, start_taker: Callable[..., subprocess.Popen[str]]
) -> None:
    srl = tmp_path / "CA.srl"
    SerialCounter(srl).create()
    children = [start_taker(srl, 25, 8), start_taker(srl, 25, 8)]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    per_child = [_finish(child) for child in children]
    assert [child.returncode for child in children] == [0, 0]
    numbers = per_child[0] + per_child[1]
    assert sorted(numbers) == list(range(1, 401))
    assert SerialCounter(srl).current() == 400


@pytest.mark.parametrize("block", [1, 7, 1000], ids=["1", "7", "1000"])
def test_a_block_reserved_then_killed_is_on_disk_and_never_handed_out_again(
    tmp_path: Path, block: int
) -> None:
    srl = tmp_path / "CA.srl"
    SerialCounter(srl).create(start=41)
    child = subprocess.run(
        [sys.executable, "-c", _BLOCK_THEN_KILLED, str(srl), str(block)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL
    start, stop = (int(value) for value in child.stdout.split())
    assert (start, stop) == (42, 42 + block)
    # The whole block is durable: the file holds its end, the next number follows it.
    assert SerialCounter(srl).current() == stop - 1
    assert SerialCounter(srl).take() == stop
