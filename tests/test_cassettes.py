"""The cassette plumbing: the gzip persister round-trips a recording byte-for-byte, deterministically."""

from __future__ import annotations

import gzip

import pytest

from conftest import CASSETTES, GzipPersister


def test_gzip_persister_round_trips_the_gold_cassette(tmp_path):
    from vcr import serializers
    from vcr.persisters.filesystem import CassetteNotFoundError

    yaml = serializers.yamlserializer
    requests, responses = GzipPersister.load_cassette(CASSETTES / "eval" / "test.yaml.gz", yaml)
    assert len(requests) == len(responses) > 100  # one rating call per interviewee sentence
    assert all(r.uri.endswith("/v1/chat/completions") for r in requests)
    copy = tmp_path / "copy.yaml.gz"
    cassette = {"requests": requests, "responses": responses}
    GzipPersister.save_cassette(copy, cassette, yaml)
    first = copy.read_bytes()
    GzipPersister.save_cassette(copy, cassette, yaml)
    assert copy.read_bytes() == first  # no timestamp in the gzip header: re-saving changes nothing
    again, _ = GzipPersister.load_cassette(copy, yaml)
    assert [r.body for r in again] == [r.body for r in requests]
    assert b"authorization" not in gzip.decompress(first).lower()
    with pytest.raises(CassetteNotFoundError):
        GzipPersister.load_cassette(tmp_path / "missing.yaml.gz", yaml)
