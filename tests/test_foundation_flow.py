"""The run summary a researcher reads: files that are not transcripts, and the speakers found."""

from __future__ import annotations

import shutil
import sys

from conftest import ROOT, run_paths, server_settings

EXAMPLE = ROOT / "examples" / "espresso_machine.txt"


def test_the_summary_names_skipped_files_and_each_transcripts_speakers(prefect_harness, my_vcr, data_dir,
                                                                        tmp_path, capsys, monkeypatch):
    from rich.console import Console

    import jtbd.cli

    study = tmp_path / "study"
    study.mkdir()
    shutil.copy(EXAMPLE, study)
    (study / "espresso_machine.m4a").write_bytes(b"\x00" * 64)  # the recording beside its transcript
    with my_vcr.use_cassette("flow/espresso_machine.yaml"):
        summary = run_paths([study], server_settings(data_dir), tmp_path / "run")
    assert summary.transcripts_ok == [str(study / "espresso_machine.txt")] and not summary.transcripts_failed
    assert [path for path, _ in summary.skipped] == [str(study / "espresso_machine.m4a")]
    speakers = summary.speakers[str(study / "espresso_machine.txt")]
    roles = {role for _, role, _ in speakers}
    assert roles == {"interviewer", "interviewee"} and all(turns > 0 for _, _, turns in speakers)
    monkeypatch.setattr(jtbd.cli, "out", Console(file=sys.stdout, width=300))
    monkeypatch.setattr(jtbd.cli, "console", Console(file=sys.stderr, width=300))
    jtbd.cli.print_summary(summary.as_dict())
    said = capsys.readouterr()
    assert f"skipped: {study / 'espresso_machine.m4a'}: " in said.err
    label, role, turns = speakers[0]
    assert f"speakers in espresso_machine: {label} ({role}, {turns} turn" in said.out
    [row] = [line for line in said.out.splitlines() if "skipped (not transcripts)" in line]
    assert row.split()[-2:] == ["1", "│"]
