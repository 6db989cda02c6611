"""Gold files: loading, exact alignment, and every violation validate_gold must catch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jtbd.eval.gold import GoldError, find_gold_files, load_gold, validate_gold
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
    (_code(note=None), "force code without a note"),
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


def test_interviewers_are_required(tmp_path):
    path = write_gold(tmp_path, GOOD, interviewers=[])
    [problem] = validate_gold(path, parse=tiny_parse)
    assert 'no "interviewers"' in problem


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

