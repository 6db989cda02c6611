"""Gold files: loading, exact alignment, and every violation validate_gold must catch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jtbd.eval.gold import GoldError, ScoredAnyway, find_gold_files, load_gold, load_gold_scorable, validate_gold
from jtbd.schemas.transcript import Role, Segment, Transcript, Turn

LINES = [
    "Interviewer: So what were you using before the new app?",
    "Dana: We had a shared spreadsheet and honestly it was a mess.",
    "Dana: Every Monday I lost a whole morning retyping the sheets.",  # a second cue of the same turn
    "Interviewer: And what made you finally look?",
    "Dana: The day the file got corrupted I signed up that night.",
    "Tom: I told her the new app looked far too expensive.",
    "Dana: And my boss just said 'fine, go for it.'",
]
JOB = "When the week starts, I want to have the sheets ready, so I can stop losing Mondays."


def tiny_parse(path: Path, interviewers=(), interviewees=()) -> Transcript:
    """'Speaker: text' lines; consecutive lines of one speaker merge into one turn, one segment each."""
    pairs = [line.split(": ", 1) for line in Path(path).read_text().splitlines() if line.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("a line without 'Speaker: '")
    text, turns = "", []
    for speaker, words in pairs:
        if turns and turns[-1].speaker == speaker:
            text = _extend(turns[-1], words, text)
            continue
        start = len(text) + len(speaker) + 2
        text += f"{speaker}: {words}\n"
        turns.append(Turn(index=len(turns), speaker=speaker, role=_role(speaker, interviewers, interviewees),
                          text=words, char_start=start, char_end=start + len(words),
                          segments=[Segment(char_start=start, char_end=start + len(words))]))
    return Transcript(id=Path(path).stem, source=Path(path).name, format="txt", text=text, turns=turns,
                      interviewers=list(interviewers))


def _extend(turn: Turn, words: str, text: str) -> str:
    """Append a cue to the last turn (joined by a space), as subtitle parsers do."""
    start = turn.char_end + 1
    turn.text += " " + words
    turn.char_end = start + len(words)
    turn.segments.append(Segment(char_start=start, char_end=turn.char_end))
    return text[:-1] + " " + words + "\n"


def _role(speaker: str, interviewers, interviewees) -> Role:
    if speaker in interviewers:
        return Role.interviewer
    if interviewees and speaker not in interviewees:
        return Role.other
    return Role.interviewee


def write_gold(folder: Path, codes: list, name: str = "chat", **fields) -> Path:
    (folder / f"{name}.txt").write_text("\n".join(LINES) + "\n")
    gold = {"transcript": f"{name}.txt", "interviewers": ["Interviewer"], "interviewees": ["Dana"], "codes": codes}
    path = folder / f"{name}.gold.json"
    path.write_text(json.dumps(gold | fields))
    return path


GOOD = [
    {"kind": "force", "force": "push", "quote": "it was a mess", "note": "Old spreadsheet was chaos."},
    {"kind": "force", "force": "push", "quote": "Every Monday I lost a whole morning", "note": "Weekly lost time."},
    {"kind": "trigger", "quote": "The day the file got corrupted", "note": "Datable breakdown."},
    {"kind": "job", "dimension": "functional", "statement": JOB, "quote": "retyping the sheets"},
    {"kind": "quote", "quote": "it was a mess", "note": "Vivid and short."},
]


def test_a_good_file_loads_with_exact_offsets(tmp_path):
    gold = load_gold(write_gold(tmp_path, GOOD), parse=tiny_parse)
    assert validate_gold(gold.gold_path, parse=tiny_parse) == []
    assert gold.id == "chat" and gold.transcript_path == tmp_path / "chat.txt"
    assert (gold.interviewers, gold.interviewees) == (["Interviewer"], ["Dana"])
    for code in gold.codes:
        assert gold.transcript.text[code.char_start:code.char_end] == code.quote
    assert [c.turn_index for c in gold.codes] == [1, 1, 3, 1, 1]
    assert gold.codes[3].statement == JOB and gold.codes[3].dimension == "functional"


def test_a_quote_may_end_on_the_speakers_own_quote_mark(tmp_path):
    # ground_quote strips wrapping quote marks; the gold quote keeps them, character for character
    quote = "my boss just said 'fine, go for it.'"
    gold = load_gold(write_gold(tmp_path, [_code(kind="quote", force=None, quote=quote)]), parse=tiny_parse)
    code = gold.codes[0]
    assert gold.transcript.text[code.char_start:code.char_end] == quote
    assert code.turn_index == 5


def test_load_gold_hands_the_speaker_lists_to_the_parser(tmp_path):
    seen = {}

    def recording_parse(path, interviewers=(), interviewees=()):
        seen.update(path=path, interviewers=list(interviewers), interviewees=list(interviewees))
        return tiny_parse(path, interviewers, interviewees)

    load_gold(write_gold(tmp_path, GOOD[:1]), parse=recording_parse)
    assert seen == {"path": tmp_path / "chat.txt", "interviewers": ["Interviewer"], "interviewees": ["Dana"]}


def test_load_gold_refuses_a_file_with_violations(tmp_path):
    path = write_gold(tmp_path, [{"kind": "pain", "quote": "it was a mess", "note": "n"}])
    with pytest.raises(GoldError) as err:
        load_gold(path, parse=tiny_parse)
    assert err.value.problems == validate_gold(path, parse=tiny_parse)
    assert len(err.value.problems) == 1


def test_for_scoring_a_bad_code_is_left_out_not_its_file(tmp_path):
    path = write_gold(tmp_path, [GOOD[0], _code(quote="the spreadsheet was a mess"), GOOD[2], dict(GOOD[0], note="again")])
    gold, problems = load_gold_scorable(path, parse=tiny_parse)
    assert problems == validate_gold(path, parse=tiny_parse) and len(problems) == 2
    assert [p.split(": ")[1] for p in problems] == ["code 1", "code 3"]
    assert [c.quote for c in gold.codes] == [GOOD[0]["quote"], GOOD[2]["quote"]]
    assert all(c.char_start is not None for c in gold.codes)


def test_for_scoring_a_quote_across_two_cues_and_a_loose_job_statement_are_kept(tmp_path):
    """Both break the format's rules, so `gold check` reports them; their spans are certain, so
    `jtbd eval` scores them (and lists them as notes), unlike a quote that is not there at all."""
    across = _code(quote="it was a mess. Every Monday")  # two cues of Dana's turn, one space between
    loose = dict(GOOD[3], statement="When the week starts, I want the sheets ready, so I can keep my Mondays.")
    path = write_gold(tmp_path, [GOOD[0], across, loose, _code(quote="the spreadsheet was a mess")])
    gold, problems = load_gold_scorable(path, parse=tiny_parse)
    assert problems == validate_gold(path, parse=tiny_parse)
    assert [(p.split(": ")[1], isinstance(p, ScoredAnyway)) for p in problems] == [
        ("code 1", True), ("code 2", True), ("code 3", False)]
    assert [c.quote for c in gold.codes] == [GOOD[0]["quote"], across["quote"], loose["quote"]]
    kept = gold.codes[1]
    assert gold.transcript.text[kept.char_start:kept.char_end] == "it was a mess. Every Monday"
    with pytest.raises(GoldError):
        load_gold(path, parse=tiny_parse)  # our own set stays strict


def test_for_scoring_a_quote_copied_through_a_word_processor_is_kept_at_the_span_it_matches(tmp_path):
    """Curly quote marks, case, a comma, a dash: the same words in the same order, so
    the span is certain; `gold check` still reports each one."""
    typed = [_code(quote="The day the file got corrupted, I signed up that night"),
             _code(quote="And my boss just said \u2018fine, go for it.\u2019"),
             _code(quote="every Monday I lost a whole morning \u2014 retyping the sheets")]
    gold, problems = load_gold_scorable(write_gold(tmp_path, typed), parse=tiny_parse)
    assert len(problems) == 3 and all(isinstance(p, ScoredAnyway) for p in problems)
    assert "jtbd eval scores the span it matches" in problems[0]
    text = gold.transcript.text
    assert [text[c.char_start:c.char_end] for c in gold.codes] == [
        "The day the file got corrupted I signed up that night", "And my boss just said 'fine, go for it",
        "Every Monday I lost a whole morning retyping the sheets"]


def test_gold_check_counts_the_problems_jtbd_eval_still_scores(tmp_path, capsys):
    from jtbd.eval.cli import cmd_gold_check

    (tmp_path / "wrapped.txt").write_text(WRAPPED)
    codes = [{"kind": "force", "force": "push", "quote": "I'd been waking up with my back just killing me"},
             {"kind": "force", "force": "pull", "quote": "a bed that fixed my back"}]
    (tmp_path / "wrapped.gold.json").write_text(json.dumps({"transcript": "wrapped.txt", "codes": codes}))
    assert cmd_gold_check(tmp_path) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "code 0: quote spans two cues" in err and "code 1: quote not found" in err
    assert "1 gold files, 2 problems (1 of them still scored by jtbd eval: the span is certain)" in err


def test_a_gold_file_beside_a_word_document_aligns_to_its_text(tmp_path, capsys):
    from test_parse import docx

    from jtbd.eval.cli import cmd_gold_check

    (tmp_path / "call.docx").write_bytes(docx(["Interviewer: What happened?", "Dana: The old printer jammed every week.",
                                               "Interviewer: And then?", "Dana: I ordered the new one that night."]))
    codes = [{"kind": "force", "force": "push", "quote": "The old printer jammed every week", "note": "n"},
             {"kind": "trigger", "quote": "I ordered the new one that night", "note": "n"}]
    (tmp_path / "call.gold.json").write_text(json.dumps({"transcript": "call.docx", "codes": codes}))
    assert cmd_gold_check(tmp_path) == 0, capsys.readouterr().err
    gold = load_gold(tmp_path / "call.gold.json")
    assert [gold.transcript.text[c.char_start:c.char_end] for c in gold.codes] == [c["quote"] for c in codes]


def test_for_scoring_a_file_whose_transcript_does_not_parse_is_left_out(tmp_path):
    def broken_parse(path, interviewers=(), interviewees=()):
        raise ValueError("line 3 has no speaker")

    gold, problems = load_gold_scorable(write_gold(tmp_path, GOOD), parse=broken_parse)
    assert gold is None and len(problems) == 1 and "does not parse" in problems[0]


def test_find_gold_files_is_recursive_and_sorted(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "test" / "deep").mkdir(parents=True)
    for rel in ("test/deep/b.gold.json", "dev/a.gold.json", "dev/a.txt", "dev/notes.json"):
        (tmp_path / rel).write_text("{}")
    assert find_gold_files(tmp_path) == [tmp_path / "dev/a.gold.json", tmp_path / "test/deep/b.gold.json"]


def _code(**fields) -> dict:
    return {"kind": "force", "force": "push", "quote": "it was a mess", "note": "n"} | fields


@pytest.mark.parametrize("code, problem", [
    (_code(kind="pain"), "unknown kind 'pain'"),
    (_code(force="fear"), "unknown force 'fear'"),
    (_code(force=None), "force code without a force type"),
    ({"kind": "job", "dimension": "financial", "statement": JOB, "quote": "it was a mess"}, "unknown dimension 'financial'"),
    ({"kind": "job", "dimension": "functional", "quote": "it was a mess"}, "job without a statement"),
    ({"kind": "job", "dimension": "functional", "statement": "I want to stop losing Mondays.", "quote": "it was a mess"},
     "job statement is not 'When ..., I want to ..., so I can ...'"),
    ({"kind": "job", "statement": JOB, "quote": "it was a mess"}, "job without a dimension"),
    (_code(quote=None), "no quote"),
    (_code(quote="mess"), "quote shorter than 8 characters"),
    (_code(quote="the spreadsheet was a mess"), "quote not found exactly in an interviewee turn"),
    (_code(quote="It was a mess"), "quote not found exactly in an interviewee turn (closest: normalized match"),
    (_code(quote=" it was a mess"), "quote has leading or trailing whitespace"),
    (_code(quote="Dana: it was a mess"), "quote not found exactly in an interviewee turn (turn 1 has it without"),
    (_code(quote="what were you using before"), "quote found only in a turn that is not coded: Interviewer (interviewer)"),
    (_code(quote="the new app looked far too expensive"), "quote found only in a turn that is not coded: Tom (other)"),
    (_code(quote="And what made you finally look? The day the file"), "quote spans two turns"),
    (_code(quote="it was a mess. Every Monday"), "quote spans two cues of turn 1 (Dana)"),
])
def test_validate_gold_catches_each_code_violation(tmp_path, code, problem):
    path = write_gold(tmp_path, [GOOD[2], code])
    problems = validate_gold(path, parse=tiny_parse)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: code 1: {problem}")


def test_duplicate_codes_are_flagged_but_a_force_may_also_be_a_quote(tmp_path):
    path = write_gold(tmp_path, [GOOD[0], GOOD[4], dict(GOOD[0], note="again")])
    assert validate_gold(path, parse=tiny_parse) == [f"{path}: code 2: duplicate of code 0 (same kind, force and quote)"]


def test_every_violation_is_its_own_line(tmp_path):
    path = write_gold(tmp_path, [_code(kind="pain"), _code(quote="what were you using before"), GOOD[2]])
    problems = validate_gold(path, parse=tiny_parse)
    assert [p.split(": ")[1] for p in problems] == ["code 0", "code 1"]


def test_bad_json(tmp_path):
    path = tmp_path / "chat.gold.json"
    path.write_text('{"transcript": "chat.txt", "codes": [,]}')
    [problem] = validate_gold(path, parse=tiny_parse)
    assert problem.startswith(f"{path}: bad JSON")


def test_codes_must_be_a_list(tmp_path):
    path = write_gold(tmp_path, {"kind": "force"})
    assert validate_gold(path, parse=tiny_parse) == [f'{path}: bad JSON: "codes" must be a list of objects']


def test_the_readme_format_loads_as_it_is(tmp_path):
    """Only "transcript" and "codes" are required: no speaker lists, no notes."""
    codes = [{k: v for k, v in c.items() if k != "note"} for c in GOOD]
    path = write_gold(tmp_path, codes)
    data = json.loads(path.read_text())
    del data["interviewers"], data["interviewees"]
    path.write_text(json.dumps(data))
    gold = load_gold(path, parse=tiny_parse)
    assert [gold.transcript.text[c.char_start:c.char_end] for c in gold.codes] == [c["quote"] for c in codes]
    # tiny_parse codes every speaker when nobody is named; the quotes say Dana is the one coded
    assert gold.interviewees == ["Dana"] and gold.interviewers == []
    assert {t.speaker for t in gold.transcript.interviewee_turns()} == {"Dana"}


def test_without_speaker_lists_every_speaker_the_quotes_come_from_is_coded(tmp_path):
    tom = _code(quote="the new app looked far too expensive", force="anxiety")
    path = write_gold(tmp_path, [GOOD[0], tom], interviewers=None, interviewees=None)
    gold = load_gold(path, parse=tiny_parse)
    assert gold.interviewees == ["Dana", "Tom"]
    assert [c.turn_index for c in gold.codes] == [1, 4]


@pytest.mark.parametrize("key", ["interviewers", "interviewees"])
def test_a_speaker_list_must_be_a_list_of_labels(tmp_path, key):
    path = write_gold(tmp_path, GOOD, **{key: "Interviewer"})
    assert validate_gold(path, parse=tiny_parse) == [f'{path}: "{key}" must be a list of speaker labels']


WRAPPED = """Chris: So take us back. When did you first think about
getting rid of the old one?

Bob: And what was going on at the time?

Dana: It was the spring, I think. I'd been waking up with
my back just killing me, every single morning, and I kept
telling myself it was the way I was sleeping.

Chris: Okay. And then?

Dana: I was worried about the price though,
they're not cheap.
"""


def test_a_quote_copied_from_a_hard_wrapped_file_keeps_its_line_breaks(tmp_path):
    """Published transcripts wrap turns over several lines, and a coder copying from the file
    copies the line breaks. The real parser; nobody named, two interviewers inferred."""
    (tmp_path / "wrapped.txt").write_text(WRAPPED)
    codes = [{"kind": "force", "force": "push", "quote": "I'd been waking up with\nmy back just killing me"},
             {"kind": "force", "force": "anxiety", "quote": "I was worried about the price though,\nthey're not cheap."}]
    (tmp_path / "wrapped.gold.json").write_text(json.dumps({"transcript": "wrapped.txt", "codes": codes}))
    gold = load_gold(tmp_path / "wrapped.gold.json")
    assert [gold.transcript.text[c.char_start:c.char_end] for c in gold.codes] == [
        "I'd been waking up with my back just killing me", "I was worried about the price though, they're not cheap."]
    assert sorted(gold.transcript.interviewers) == ["Bob", "Chris"]
    # the same file saved with Windows line endings, and the quotes copied with them
    (tmp_path / "wrapped.txt").write_bytes(WRAPPED.replace("\n", "\r\n").encode())
    crlf = [dict(c, quote=c["quote"].replace("\n", "\r\n")) for c in codes]
    (tmp_path / "wrapped.gold.json").write_text(json.dumps({"transcript": "wrapped.txt", "codes": crlf}))
    assert validate_gold(tmp_path / "wrapped.gold.json") == []
    (tmp_path / "wrapped.txt").write_text(WRAPPED)
    # a line break where the file has none is not the file's text
    codes[0]["quote"] = "I'd been waking\nup with my back"
    (tmp_path / "wrapped.gold.json").write_text(json.dumps({"transcript": "wrapped.txt", "codes": codes}))
    [problem] = validate_gold(tmp_path / "wrapped.gold.json")
    assert "code 0: quote not found exactly in an interviewee turn" in problem


def test_a_windows_1252_transcript_aligns_with_a_utf8_gold_file(tmp_path):
    """A transcript saved as Windows "ANSI" (curly quotes as byte 0x92) and a gold file in UTF-8, as
    JSON must be: the quotes, wrapped ones too, are the file's text once it is decoded."""
    curly = WRAPPED.replace("'", "\u2019")
    (tmp_path / "ansi.txt").write_bytes(curly.replace("\n", "\r\n").encode("cp1252"))
    assert b"\x92" in (tmp_path / "ansi.txt").read_bytes()
    codes = [{"kind": "force", "force": "push", "quote": "I\u2019d been waking up with\r\nmy back just killing me"},
             {"kind": "force", "force": "anxiety", "quote": "they\u2019re not cheap."}]
    (tmp_path / "ansi.gold.json").write_text(json.dumps({"transcript": "ansi.txt", "codes": codes}), encoding="utf-8")
    assert validate_gold(tmp_path / "ansi.gold.json") == []
    gold = load_gold(tmp_path / "ansi.gold.json")
    assert [gold.transcript.text[c.char_start:c.char_end] for c in gold.codes] == [
        "I\u2019d been waking up with my back just killing me", "they\u2019re not cheap."]


def test_with_roles_inferred_a_quote_of_the_interviewer_says_how_to_fix_it(tmp_path):
    (tmp_path / "wrapped.txt").write_text(WRAPPED)
    codes = [{"kind": "quote", "quote": "what was going on at the time?"}]
    (tmp_path / "wrapped.gold.json").write_text(json.dumps({"transcript": "wrapped.txt", "codes": codes}))
    [problem] = validate_gold(tmp_path / "wrapped.gold.json")
    assert 'not coded: Bob (interviewer) (roles inferred: name the "interviewers" if they are wrong)' in problem
    # the same when the other quotes, not the inference, say who is coded (here a third party)
    (tmp_path / "wrapped.txt").write_text(WRAPPED + "\nTom: The shop on the corner was a rip-off anyway.\n")
    codes.append({"kind": "quote", "quote": "The shop on the corner was a rip-off anyway."})
    (tmp_path / "wrapped.gold.json").write_text(json.dumps({"transcript": "wrapped.txt", "codes": codes}))
    [problem] = validate_gold(tmp_path / "wrapped.gold.json")
    assert 'not coded: Bob (interviewer) (roles inferred: name the "interviewers" if they are wrong)' in problem


def test_our_own_set_keeps_the_coding_guides_rules():
    """The guide asks more of our set than the format does: speaker lists and a note on every
    force, trigger and quote."""
    from jtbd.eval.gold import NEEDS_NOTE
    from jtbd.eval.runner import bundled_gold, load_gold_folder

    for gold in load_gold_folder(bundled_gold("all")):
        assert gold.interviewers, gold.id
        for code in gold.codes:
            assert code.kind not in NEEDS_NOTE or (code.note or "").strip(), (gold.id, code.quote)


def test_missing_transcript_file(tmp_path):
    path = write_gold(tmp_path, GOOD)
    (tmp_path / "chat.txt").unlink()
    [problem] = validate_gold(path, parse=tiny_parse)
    assert problem.startswith(f"{path}: missing transcript") and "chat.txt does not exist" in problem


def test_missing_transcript_name(tmp_path):
    path = write_gold(tmp_path, GOOD, transcript=None)
    assert validate_gold(path, parse=tiny_parse) == [f'{path}: missing transcript: no "transcript" file name']


def test_transcript_name_mismatch_still_checks_the_codes(tmp_path):
    write_gold(tmp_path, [], name="other")
    path = write_gold(tmp_path, [_code(kind="pain")], transcript="other.txt")
    problems = validate_gold(path, parse=tiny_parse)
    assert problems[0].startswith(f"{path}: transcript name mismatch: 'other.txt'")
    assert problems[1].startswith(f"{path}: code 0: unknown kind")


def test_a_parse_error_is_a_violation_not_a_crash(tmp_path):
    def broken_parse(path, interviewers=(), interviewees=()):
        raise ValueError("line 3 has no speaker")

    path = write_gold(tmp_path, GOOD)
    assert validate_gold(path, parse=broken_parse) == [
        f"{path}: transcript does not parse: ValueError: line 3 has no speaker"
    ]


def test_without_interviewees_every_non_interviewer_is_coded(tmp_path):
    tom = _code(quote="the new app looked far too expensive", force="anxiety")
    path = write_gold(tmp_path, [tom])
    assert validate_gold(path, parse=tiny_parse) != []
    data = json.loads(path.read_text())
    del data["interviewees"]
    path.write_text(json.dumps(data))
    assert validate_gold(path, parse=tiny_parse) == []

