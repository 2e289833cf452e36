"""Observing a large log in worker processes, with exactly the result of doing it in one.

Tokenizing is the analysis's cost, and one core cannot tokenize 100,000 long requests fast enough.
Each input is cut into blocks of `block_bytes` (of decompressed text): block i holds the lines that
*start* in [i * block_bytes, (i + 1) * block_bytes). Blocks are numbered across all files, and
worker k observes the blocks whose number is k modulo the number of workers. Every worker reads
every file itself (cheaply skipping other workers' blocks: it only counts their newlines, for line
numbers), so nothing large crosses a process boundary, and gzip needs no index. Contiguous blocks
keep a conversation's turns mostly in one worker, where its earlier turns are memo hits.

The parent takes block 0 from worker 0, block 1 from worker 1, and so on, and feeds the
observations to the analyzer in that order, so every order-dependent statistic (the first
occurrence of a query, the last time a prefix was seen) and the error list come out exactly as in a
single process. Queues are bounded, so a fast worker waits instead of filling memory.

Workers come from a `forkserver` context: forking the parent itself is unsafe once it runs threads
(the progress bar has one), and the server's children start without the parent's state.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any, BinaryIO

from faregate.analyze.observe import Observation, Observer
from faregate.analyze.reader import BadLine, ErrorLog, open_input, parse_line
from faregate.anatomy import compile_patterns
from faregate.pricing import PriceBook, PriceOverride

__all__ = ["ObserverSettings", "observe_parallel"]

_READ_SIZE = 1 << 20
_QUEUE_BLOCKS = 2  # finished blocks a worker may hold ahead of the parent
_POLL_S = 1.0


@dataclass(frozen=True)
class ObserverSettings:
    """What a worker needs to build its own `Observer`: picklable, unlike compiled patterns."""

    price_overrides: Mapping[str, PriceOverride] = field(default_factory=dict)
    context_patterns: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def price_book(self) -> PriceBook:
        return PriceBook(dict(self.price_overrides))

    def observer(self) -> Observer:
        patterns = {name: compile_patterns(list(p)) for name, p in self.context_patterns.items() if p}
        return Observer(self.price_book(), patterns)


@dataclass
class _Block:
    seq: int
    file: str
    observations: list[Observation] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, error), in line order
    raw_position: int = 0  # bytes of the file on disk consumed when the block ended (progress)


class _Lines:
    """A stream read in fixed-size pieces, as lines with their numbers or as skipped stretches.

    `base` is the stream offset of the first unread byte, always the start of a line between calls.
    Every worker reads a file with the same sequence of `read` calls, so all of them see the same
    bytes, and the same end, even when a gzip stream breaks off.
    """

    def __init__(self, raw: BinaryIO, stream: BinaryIO) -> None:
        self.raw = raw
        self.stream = stream
        self.buffer = b""
        self.pos = 0  # buffer[pos:] is unread
        self.base = 0
        self.line = 0  # lines read or skipped so far
        self.eof = False
        self.error: str | None = None

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            piece = self.stream.read(_READ_SIZE)
        except (OSError, EOFError, zlib.error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.error = f"cannot read further: {reason or type(exc).__name__}"
            piece = b""
        if not piece:
            self.eof = True
            return False
        self.buffer = self.buffer[self.pos :] + piece
        self.pos = 0
        return True

    def skip(self, target: int) -> None:
        """Pass over every line that starts before `target`, counting them."""
        if self.base >= target:
            return
        while True:
            # the first line starting at `target` or later follows the first newline at target - 1 or later
            newline = self.buffer.find(b"\n", self.pos + max(target - 1 - self.base, 0))
            if newline >= 0:
                self.line += self.buffer.count(b"\n", self.pos, newline + 1)
                self.base += newline + 1 - self.pos
                self.pos = newline + 1
                return
            self.line += self.buffer.count(b"\n", self.pos)
            self.base += len(self.buffer) - self.pos
            self.pos = len(self.buffer)
            if not self._fill():
                return

    def take(self, target: int) -> Iterator[tuple[int, bytes]]:
        """(line number, line) for every line that starts before `target`."""
        while self.base < target:
            newline = self.buffer.find(b"\n", self.pos)
            while newline < 0:
                searched = len(self.buffer) - self.pos
                if not self._fill():
                    break
                newline = self.buffer.find(b"\n", searched)
            if newline < 0:
                if self.pos >= len(self.buffer):
                    return
                newline = len(self.buffer) - 1  # a last line without a newline
            line = self.buffer[self.pos : newline + 1]
            self.base += newline + 1 - self.pos
            self.pos = newline + 1
            self.line += 1
            yield self.line, line

    @property
    def done(self) -> bool:
        return self.eof and self.pos >= len(self.buffer)


def _blocks(
    files: Sequence[Path], block_bytes: int, mine: Callable[[int], bool]
) -> Iterator[tuple[int, str, Iterator[tuple[int, bytes]], _Lines]]:
    """(block number, file, its lines, the reader) for each block `mine` accepts; skips the others."""
    seq = 0
    for path in files:
        raw, stream = open_input(path)
        try:
            reader = _Lines(raw, stream)
            index = 0
            while True:
                end = (index + 1) * block_bytes
                if mine(seq):
                    yield seq, str(path), reader.take(end), reader
                else:
                    reader.skip(end)
                seq += 1
                index += 1
                if reader.done:
                    break
        finally:
            stream.close()
            raw.close()


def _work(
    files: list[Path],
    settings: ObserverSettings,
    block_bytes: int,
    worker: int,
    workers: int,
    out: queue.Queue[Any],
) -> None:
    try:
        observer = settings.observer()
        seq = 0
        for seq, name, lines, reader in _blocks(files, block_bytes, lambda s: s % workers == worker):
            block = _Block(seq, name)
            for number, line in lines:
                if not line.strip():
                    continue
                try:
                    block.observations.append(observer.record(parse_line(line)))
                except BadLine as exc:
                    block.errors.append((number, str(exc)))
            if reader.done and reader.error is not None:
                block.errors.append((reader.line + 1, reader.error))
            block.raw_position = reader.raw.tell()
            out.put(block)
        out.put(("done", None))
    except BaseException:
        out.put(("error", traceback.format_exc()))


def observe_parallel(
    files: Sequence[Path],
    settings: ObserverSettings,
    errors: ErrorLog,
    workers: int,
    progress: Callable[[int], None] | None = None,
    block_bytes: int = 32 << 20,
) -> Iterator[Observation]:
    """Observations of every line of `files`, in file and line order, computed by `workers` processes;
    bad lines go to `errors` in the order a single process would record them."""
    context: ForkServerContext = multiprocessing.get_context("forkserver")
    queues: list[Any] = [context.Queue(_QUEUE_BLOCKS) for _ in range(workers)]
    processes = [
        context.Process(
            target=_work,
            args=(list(files), settings, block_bytes, k, workers, queues[k]),
            name=f"faregate-analyze-{k}",
            daemon=True,
        )
        for k in range(workers)
    ]
    for process in processes:
        process.start()
    positions: dict[str, int] = {}
    try:
        seq = 0
        while True:
            message = _next(queues[seq % workers], processes[seq % workers])
            if isinstance(message, tuple):  # ("done", None): no block numbered seq, all are read
                break
            for number, text in message.errors:
                errors.add(message.file, number, text)
            if progress is not None:
                previous = positions.get(message.file, 0)
                if message.raw_position > previous:
                    progress(message.raw_position - previous)
                    positions[message.file] = message.raw_position
            yield from message.observations
            seq += 1
    finally:
        for process in processes:
            process.join(timeout=_POLL_S)
            if process.is_alive():  # stopped early (an error, or the caller closed the generator)
                process.terminate()
                process.join()
        for q in queues:
            q.close()


def _next(source: Any, process: Any) -> Any:
    while True:
        try:
            message = source.get(timeout=_POLL_S)
        except queue.Empty:
            if not process.is_alive():
                raise RuntimeError(
                    f"analysis worker {process.name} exited with code {process.exitcode}"
                ) from None
            continue
        if isinstance(message, tuple) and message[0] == "error":
            raise RuntimeError(f"analysis worker failed:\n{message[1]}")
        return message
