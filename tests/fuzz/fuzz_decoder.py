"""Long fuzz run of the Avro decoder, not part of ``make test``.

Run: ``.venv/bin/python tests/fuzz/fuzz_decoder.py [--minutes 10]``.

Runs hypothesis in rounds over six targets until the time is up (10 minutes by default),
then prints, per target, the examples tried, the failures found, and the slowest example,
plus the process's peak RSS. Exit status 1 if anything failed.

Targets:
- ``codec_mutated``: ``Codec.decode`` on mutated valid encodings raises only DecodeError;
- ``codec_random_body``: a valid single-object header over random bytes, same property;
- ``codec_guarded``: the walk then ``Codec.decode``, as ``streams.serde`` runs them once
  it calls the walk: only AvroLimitError or DecodeError;
- ``walk_mutated``: :func:`streams.avro_limits.check_body` refuses with AvroLimitError only,
  and what it passes fastavro reads to the same end without running out of bytes;
- ``walk_random_schema``: random writer schemas (a registry can serve anything) over
  random bytes, same property;
- ``walk_agrees``: on valid bodies of random schemas the walk never refuses and ends
  where fastavro ends (no false positive).

Every example is also timed (CPU time): one over ``--slow-ms`` (default 250 ms) counts as a
failure, as does a peak RSS over ``--max-rss-mb`` (default 400 MB): a hostile message must
not cost time or memory out of proportion to its size.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from streams.avro_limits import AvroLimitError, check_body  # noqa: E402
from streams.serde import Codec, DecodeError  # noqa: E402
from tests.fuzz.avro_corpus import (  # noqa: E402
    mutated_encodings,
    schema_and_body,
    schemas,
    valid_encodings,
)
from tests.fuzz.runner import (  # noqa: E402
    SLOW_MS,
    Tallies,
    Tally,
    fuzz_rounds,
    report,
    round_settings,
)

HEADER = 10
CODEC = Codec()


TALLIES = Tallies()


def timed(name: str, size: int, run: Callable[[], None]) -> None:
    """Run one example, count it and keep the slowest; too slow fails the example."""
    TALLIES.timed(name, size, run)


def decode_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode(data)


def walk_is_safe(schema: Any, data: bytes, offset: int) -> None:
    try:
        end = check_body(schema, data, offset)
    except AvroLimitError:
        return
    buffer = io.BytesIO(data)
    buffer.seek(offset)
    # Wrong values (bad UTF-8, dates out of range) are fine; running out of bytes is not.
    with contextlib.suppress(UnicodeDecodeError, ValueError, OverflowError):
        fastavro.schemaless_reader(buffer, schema, None)
        if buffer.tell() != end:
            raise AssertionError(f"walk ended at {end}, fastavro at {buffer.tell()}")


def headers() -> st.SearchStrategy[bytes]:
    return st.sampled_from(sorted({data[:HEADER] for data in valid_encodings()}))


def build_targets(examples: int) -> dict[str, Callable[[], None]]:
    """The hypothesis tests, ``examples`` per round each."""
    config = round_settings(examples)

    @config
    @given(mutated_encodings(max_edits=6))
    def codec_mutated(data: bytes) -> None:
        timed("codec_mutated", len(data), lambda: decode_only_decode_error(data))

    @config
    @given(headers(), st.binary(max_size=2000))
    def codec_random_body(header: bytes, body: bytes) -> None:
        data = header + body
        timed("codec_random_body", len(data), lambda: decode_only_decode_error(data))

    @config
    @given(mutated_encodings(max_edits=6))
    def codec_guarded(data: bytes) -> None:
        def run() -> None:
            binding = CODEC._by_fingerprint.get(data[2:HEADER])
            if binding is not None and data[:2] == b"\xc3\x01":
                try:
                    check_body(binding.schema.parsed, data, HEADER)
                except AvroLimitError:
                    return
            decode_only_decode_error(data)

        timed("codec_guarded", len(data), run)

    @config
    @given(mutated_encodings(max_edits=6))
    def walk_mutated(data: bytes) -> None:
        binding = CODEC._by_fingerprint.get(data[2:HEADER])
        if binding is None or data[:2] != b"\xc3\x01":
            return
        schema = binding.schema.parsed
        timed("walk_mutated", len(data), lambda: walk_is_safe(schema, data, HEADER))

    @config
    @given(schemas(), st.binary(max_size=500))
    def walk_random_schema(schema: Any, data: bytes) -> None:
        parsed = fastavro.parse_schema(schema, named_schemas={})
        timed("walk_random_schema", len(data), lambda: walk_is_safe(parsed, data, 0))

    @config
    @given(schema_and_body())
    def walk_agrees(case: tuple[Any, bytes]) -> None:
        schema, body = case

        def run() -> None:
            end = check_body(schema, body)
            if end != len(body):
                raise AssertionError(f"walk ended at {end} of a valid {len(body)}-byte body")

        timed("walk_agrees", len(body), run)

    return {
        "codec_mutated": codec_mutated,
        "codec_random_body": codec_random_body,
        "codec_guarded": codec_guarded,
        "walk_mutated": walk_mutated,
        "walk_random_schema": walk_random_schema,
        "walk_agrees": walk_agrees,
    }


def main(argv: list[str] | None = None) -> int:
    """Fuzz until the time is up; print the tally; 1 if anything failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--examples-per-round", type=int, default=500)
    parser.add_argument("--slow-ms", type=float, default=SLOW_MS)
    parser.add_argument("--max-rss-mb", type=float, default=400.0)
    args = parser.parse_args(argv)
    TALLIES.slow_ms = args.slow_ms
    targets = build_targets(args.examples_per_round)
    for name in targets:
        TALLIES[name] = Tally()
    rounds, seconds = fuzz_rounds(targets, TALLIES, args.minutes)
    return report(
        f"\nfuzz_decoder: {rounds} rounds in {seconds / 60:.1f} min", TALLIES, args.max_rss_mb
    )


if __name__ == "__main__":
    sys.exit(main())
