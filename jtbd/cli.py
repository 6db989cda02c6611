"""The `jtbd` command line: code, redecide, search, list, forget, eval, gold check, model, deploy.

Every command lives here, on typer. The evaluation's work (coding a gold set, scoring, reports)
stays in jtbd.eval; this module is the top layer and the only one that imports both it and
the product.
"""

from __future__ import annotations

import jtbd.environment  # noqa: F401  (quiet, offline defaults first)

import functools
import inspect
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jtbd.checks import check_code_options, check_pool_options, check_redecide_options
from jtbd.coding.parse import SUPPORTED_SUFFIXES
from jtbd.eval import cli as eval_commands
from jtbd.settings import (DEFAULT_STUDY, Settings, load_settings, source_of, study_collection,
                           study_of_collection)

console = Console(stderr=True)
out = Console()

# typer keeps the line breaks of a paragraph after the first: one line each.
HELP = ("Code Jobs-to-be-Done interview transcripts into grounded codes (jobs, triggers, forces, quotable lines) "
        "and search them by meaning.\n\n"
        "Settings come from flags, then JTBD_* environment variables (JTBD_CHUNK_TOKENS ...), then a TOML config "
        "file (--config, $JTBD_CONFIG, ./jtbd.toml or ~/.config/jtbd-coder/config.toml; the flags' names with "
        "underscores), then defaults. API keys come from the environment only: JTBD_API_KEY or OPENAI_API_KEY.\n\n"
        "Exit status:\n"
        "0 ok\n"
        "1 some inputs failed (a transcript or gold file, an unknown transcript id, a regression against the eval "
        "baseline)\n"
        "2 usage or setup error (a bad option or setting, no store yet, a missing file)")

app = typer.Typer(name="jtbd", help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]})
gold_app = typer.Typer(name="gold", help="Work with hand-coded gold sets.", no_args_is_help=True,
                       rich_markup_mode="rich")
app.add_typer(gold_app)


# --- settings as flags --------------------------------------------------------------------------

MODEL, REQUESTS, CODING, STORE = "Model backend", "Model requests", "Coding", "Store and embeddings"


def _option(flag: str, help: str, metavar: str | None = None, panel: str | None = None) -> Any:
    # Defaults are said in the help's words: a setting's flag has none (see _with_settings).
    return typer.Option(flag, help=help, metavar=metavar, rich_help_panel=panel, show_default=False)


def _setting(panel: str, flag: str, kind: Any, help: str, metavar: str | None = None) -> tuple[Any, Any]:
    # No default value: a flag not given must leave the setting to JTBD_* variables and the config file.
    return kind, _option(flag, help, metavar, panel)


# Every field of Settings, as the flag that sets it (tests/test_cli.py fails on a field without one).
SETTING_OPTIONS: dict[str, tuple[Any, Any]] = {
    "backend": _setting(MODEL, "--backend", Literal["local", "openai"],
                        "local (default): llama.cpp in process; openai: any OpenAI-compatible server"),
    "model": _setting(MODEL, "--model", str, "model name (required for --backend openai)", "NAME"),
    "model_path": _setting(MODEL, "--model-path", str, "local backend: a GGUF file instead of the default model",
                           "FILE"),
    "base_url": _setting(MODEL, "--base-url", str, "openai backend or embeddings: the server's base URL, "
                         "e.g. http://localhost:11434/v1 (default: OpenAI's)", "URL"),
    "extra_body": _setting(MODEL, "--extra-body", str, "openai backend: JSON merged into every request, "
                           "e.g. '{\"repeat_penalty\": 1.0}'", "JSON"),
    "llm_mode": _setting(MODEL, "--llm-mode", Literal["auto", "tools", "json", "md_json", "json_schema",
                                                      "json_object_schema"],
                         "how structured output is requested: auto (default: json_object_schema for llama.cpp "
                         "in process, tools for servers), tools, json_schema, json_object_schema (use it for a "
                         "llama.cpp server), json or md_json", "MODE"),
    "n_ctx": _setting(MODEL, "--n-ctx", int, "local backend: the model's context in tokens (default 6144)", "N"),
    "n_threads": _setting(MODEL, "--n-threads", int, "local backend: CPU threads (default 0: every core)", "N"),
    "seed": _setting(MODEL, "--seed", int, "the model's sampling seed (default 0)", "N"),
    "concurrency": _setting(REQUESTS, "--concurrency", int, "chunks coded at once (default 0: 1 local, 4 server)",
                            "N"),
    "timeout": _setting(REQUESTS, "--timeout", float, "seconds to wait for one model or embeddings request "
                        "(default 180)", "SECONDS"),
    "max_retries": _setting(REQUESTS, "--max-retries", int, "re-asks after an answer fails validation (default 2)",
                            "N"),
    "task_retries": _setting(REQUESTS, "--task-retries", int, "retries of a chunk after a timeout, 429 or 5xx, "
                             "with backoff (default 3)", "N"),
    "decision": _setting(CODING, "--decision", str, "how ratings become codes: auto (default: the learned "
                         "decision, when it was fitted on this model), handmade (the [decide] rules of "
                         "prompts/passes.toml) or a file written by 'jtbd fit'", "auto|handmade|FILE"),
    "strategy": _setting(CODING, "--strategy", str, "extraction strategy from prompts/passes.toml (default rate)",
                         "NAME"),
    "prompts_dir": _setting(CODING, "--prompts-dir", str, "a folder of prompt files (and passes.toml) used "
                            "instead of the bundled ones of the same name", "DIR"),
    "chunk_tokens": _setting(CODING, "--chunk-tokens", int, "chunk size in estimated tokens (default 2500)", "N"),
    "overlap_tokens": _setting(CODING, "--overlap-tokens", int, "chunk overlap in estimated tokens (default 200)",
                               "N"),
    "interviewers": _setting(CODING, "--interviewer", list[str], "an interviewer's speaker label; repeat for two "
                             "interviewers (default: found from the labels and the questions)", "NAME"),
    "max_file_mb": _setting(CODING, "--max-file-mb", float, "larger transcript files are refused unread "
                            "(default 20)", "MB"),
    "data_dir": _setting(STORE, "--data-dir", str, "where the Chroma store and the result cache live "
                         "(default ~/.local/share/jtbd-coder)", "DIR"),
    "chroma_url": _setting(STORE, "--chroma-url", str, "a Chroma server, e.g. http://localhost:8000 "
                           "(default: the local store under --data-dir)", "URL"),
    "collection": _setting(STORE, "--collection", str, "the Chroma collection (default jtbd_codes)", "NAME"),
    "embeddings": _setting(STORE, "--embeddings", Literal["local", "openai"], "local (default): MiniLM in "
                           "process; openai: the embeddings endpoint of --base-url"),
    "embedding_model": _setting(STORE, "--embedding-model", str, "openai embeddings: the model "
                                "(default text-embedding-3-small)", "NAME"),
    "study": _setting(STORE, "--study", str, "the study: its own Chroma collection and review records "
                      "(default: default); letters, digits, - and _", "NAME"),
    "db_url": _setting(STORE, "--db", str, "the review database, any SQLAlchemy URL, e.g. "
                       "postgresql://db.example.org/reviews (default: SQLite at <data-dir>/reviews.sqlite3; "
                       "a password comes from JTBD_DB_PASSWORD)", "URL"),
    "reviewer": _setting(STORE, "--reviewer", str, "who records review decisions (default: the OS user)", "NAME"),
}
CONFIG_OPTION = (str, _option("--config", "a TOML settings file (default: $JTBD_CONFIG, ./jtbd.toml or "
                                          "~/.config/jtbd-coder/config.toml)", "FILE"))
ALL_SETTINGS = tuple(SETTING_OPTIONS)
STORE_SETTINGS = ("data_dir", "chroma_url", "collection", "study")
REVIEW_SETTINGS = (*STORE_SETTINGS, "db_url")
SEARCH_SETTINGS = (*STORE_SETTINGS, "embeddings", "embedding_model", "base_url", "timeout")


def _with_settings(*names: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Give a command a flag for each named setting and --config, without writing each into its
    signature: the command receives them as `flags` (name -> value, None when left out), for
    settings_from."""
    options = {name: SETTING_OPTIONS[name] for name in names} | {"config": CONFIG_OPTION}

    def decorate(command: Callable[..., int]) -> Callable[..., int]:
        signature = inspect.signature(command, eval_str=True)
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=Annotated[Optional[kind], option])
                 for name, (kind, option) in options.items()]

        @functools.wraps(command)
        def run(**kwargs: Any) -> int:
            return command(**{k: v for k, v in kwargs.items() if k not in options},
                           flags={name: kwargs[name] for name in options})

        kept = [p for p in signature.parameters.values() if p.name != "flags"]
        run.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
        return run

    return decorate


def settings_from(flags: dict[str, Any]) -> Settings:
    """Settings from the flags given (None: not given), JTBD_* variables and the config file."""
    given = {name: tuple(value) if isinstance(value, list) else value for name, value in flags.items()
             if name != "config" and value not in (None, [])}
    return load_settings(given, flags.get("config"))


# --- the entry point ----------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run `jtbd` with these arguments; returns the exit status (see HELP)."""
    command = typer.main.get_command(app)
    try:
        status = command.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="jtbd",
                              standalone_mode=False)
    except typer.Abort:
        console.print("[red]error:[/red] aborted")
        return 1
    except typer.TyperException as err:  # click's usage errors: a bad flag, value or command
        return _usage_error(err)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)  # one line, also in a log
        return 2
    return status if isinstance(status, int) else 0


def _usage_error(err: typer.TyperException) -> int:
    if type(err).__name__ == "NoArgsIsHelpError":  # `jtbd` or `jtbd gold` alone: typer showed the help
        return 2
    ctx = getattr(err, "ctx", None)
    message = " ".join(line.strip() for line in err.format_message().splitlines() if line.strip())
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    console.print(f"[red]error:[/red] {escape(message + hint)}", soft_wrap=True)
    return 2


def _show_version(show: bool) -> None:
    if show:
        out.print(f"jtbd-coder {_version()}", markup=False, highlight=False)
        raise typer.Exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jtbd-coder")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from jtbd import __version__

        return __version__


@app.callback()
def _jtbd(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                                help="print the version and exit")] = False) -> None:
    pass


# --- the commands -------------------------------------------------------------------------------

Paths = Annotated[list[str], typer.Argument(metavar="PATH", show_default=False,
                                            help="transcript files and folders (searched recursively)")]
RunFolder = Annotated[Optional[str], _option("--out", "run folder (default runs/<date-time>)", "DIR")]
Debug = Annotated[bool, _option("--debug", "show Prefect's logs and tracebacks of failures")]
Query = Annotated[str, typer.Argument(metavar="QUERY", show_default=False,
                                      help="what to look for, in your own words (matched by meaning)")]
Kind = Annotated[Optional[Literal["job", "trigger", "force", "quote"]], _option("--kind", "only codes of this kind")]
ForceType = Annotated[Optional[Literal["push", "pull", "anxiety", "habit"]],
                      _option("--force", "only forces of this type")]
TranscriptId = Annotated[Optional[str], _option("--transcript", "only this transcript's codes: its id, as "
                                                "`jtbd list` shows it", "ID")]
Speaker = Annotated[Optional[str], _option("--speaker", "only quotes of this speaker label, as in the transcript",
                                           "LABEL")]
HowMany = Annotated[int, typer.Option("-k", metavar="N", help="how many results")]
AsJson = Annotated[bool, _option("--json", "print JSON lines instead of cards")]
TranscriptIds = Annotated[list[str], typer.Argument(metavar="TRANSCRIPT", show_default=False,
                                                    help="a transcript id, as `jtbd list` shows it")]
GoldFolder = Annotated[Optional[str], _option("--gold", "transcripts with <id>.gold.json beside them "
                                              "(default: the bundled gold set)", "DIR")]
Split = Annotated[Literal["dev", "test", "all"], typer.Option("--split", help="the bundled gold set's split")]
Baseline = Annotated[Optional[str], _option("--baseline", "a scores JSON to compare against; exit 1 on a "
                                            "regression", "FILE")]
UpdateBaseline = Annotated[bool, _option("--update-baseline", "write the scores to --baseline")]
Report = Annotated[Optional[str], _option("--report", "write a Markdown (.md) or HTML (.html) report here", "FILE")]
Scores = Annotated[Optional[str], _option("--scores", "write the scores JSON here (default: scores.json in the "
                                          "run folder)", "FILE")]
EvalFolder = Annotated[Optional[str], _option("--out", "run folder for the coded gold transcripts "
                                              "(default runs/eval-<date-time>)", "DIR")]
FitGold = Annotated[str, typer.Option("--gold", metavar="DIR", show_default=False,
                                      help="transcripts with <id>.gold.json beside them: your own coded interviews")]
FitOut = Annotated[str, _option("--out", "the learned decision file to write (default learned_decision.json)", "FILE")]
FitL2 = Annotated[Optional[float], _option("--l2", "how strongly the fit is held back towards no preference "
                                           "(default 0.003; larger for fewer interviews)", "X")]
GoldCheckFolder = Annotated[str, typer.Argument(metavar="FOLDER", show_default=False,
                                                help="a folder of <id>.gold.json files beside their transcripts")]
ExportFormat = Annotated[Literal["csv", "json", "md", "gold", "qdpx"], _option(
    "--format", "csv, json (JSON lines), md (the study and interview reports), gold (a folder of *.gold.json for "
    "'jtbd eval --gold') or qdpx (a REFI-QDA project for ATLAS.ti, MAXQDA, NVivo, QualCoder)")]
ExportStatus = Annotated[Literal["reviewed", "all", "suggestions"], _option(
    "--status", "reviewed (default: accepted, changed or added by a person), suggestions (the model's, not reviewed "
    "yet) or all (everything not rejected)")]
ExportOut = Annotated[str, _option("--out", "the file to write (a folder for --format gold)", "PATH")]
Pool = Annotated[Optional[str], _option("--pool", "code on the Prefect workers of this work pool (see 'jtbd deploy'; "
                                        "needs PREFECT_API_URL, --chroma-url and a --data-dir the workers share)",
                                        "NAME")]
DeployPool = Annotated[str, typer.Option("--pool", metavar="NAME", show_default=False,
                                         help="the Prefect work pool (a process pool; made if missing)")]
CrashAfter = Annotated[int, typer.Option("--crash-after", metavar="SECONDS",
                                         help="a run that sends no heartbeat for this long is marked Crashed, "
                                              "and jtbd code --pool submits it again")]


@app.command()
@_with_settings(*ALL_SETTINGS)
def code(paths: Paths, run_folder: RunFolder = None, debug: Debug = False, pool: Pool = None, *,
         flags: dict[str, Any]) -> int:
    """Code transcripts: find jobs, triggers, forces and quotable lines, store them, write a run folder.

    Any mix of files and folders: .txt, .md, .docx, .vtt, .srt, .json (transcription segments).
    The run folder holds codes.jsonl, codes.csv, a Markdown report per transcript and study.md.
    With --pool, Prefect workers code them, one flow run per transcript (docs/scale-out.md).

    Example:
    jtbd code interviews/ call-07.vtt --interviewer Maya --interviewer Tom
    """
    from jtbd.flows.code_batch import run_batch

    settings = settings_from(flags)
    if pool is not None:
        check_pool_options(pool, settings)
    check_code_options(run_folder, settings)
    run_dir = run_folder or str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    with batch_progress(debug=debug):
        if pool is not None:
            from jtbd.flows.pool import submit_batch

            summary = submit_batch(list(paths), settings, run_dir, pool)
        else:
            summary = run_batch(list(paths), settings, run_dir)
    if not summary.transcripts_ok and not summary.transcripts_failed:
        console.print(f"[red]error:[/red] no transcripts found in {escape(' '.join(paths))} "
                      f"(looked for {', '.join(SUPPORTED_SUFFIXES)})", soft_wrap=True)
        return 1
    print_summary(summary.as_dict())
    if summary.transcripts_ok:
        out.print(f"open it in your browser: {serve_command(flags)}", markup=False, soft_wrap=True)
    return 1 if summary.transcripts_failed else 0


@app.command()
@_with_settings(*ALL_SETTINGS)
def redecide(run_folder: RunFolder = None, debug: Debug = False, *, flags: dict[str, Any]) -> int:
    """Learn a study's decision from its reviews and decide its interviews again, with no model call.

    Accepted, changed and rejected forces and triggers (and, in an interview whose every suggestion
    was answered, the added ones and the sentences nobody coded) become examples for the study's own
    decision, fitted from the one it codes with (docs/using.md says which sentences count). Then every
    interview of the study is decided again from its cached ratings, from the file it was coded from:
    codes a person decided on stay as they are. Give the options the study was coded with (model,
    strategy, chunking), so the cache answers.

    Example:
    jtbd redecide --study onboarding
    """
    from jtbd.coding.from_reviews import MIN_EXAMPLES
    from jtbd.flows.redecide import redecide_study

    settings = settings_from(flags)
    check_redecide_options(run_folder, settings)
    if not settings.db_url and not (Path(settings.data_dir) / "reviews.sqlite3").exists():
        raise FileNotFoundError(f"no review database yet in {settings.data_dir}; run 'jtbd code' first")
    run_dir = run_folder or str(Path("runs") / ("redecide-" + time.strftime("%Y%m%d-%H%M%S")))
    with batch_progress(debug=debug):
        done = redecide_study(settings, run_dir)
    _said(f"learning from study {settings.study}'s reviews, starting from: {done.base}")
    fit = done.fit
    if fit is None:
        _said("nothing learned: the decision it starts from is not a learned one")
    else:
        classes = ", ".join(f"{name} {n}" for name, n in fit.classes.items()) or "none"
        seen = (f"{_plural(fit.answered, 'answered sentence')} in {_plural(fit.interviews, 'interview')} "
                f"({fit.complete} reviewed completely; {_plural(fit.examples, 'example')}: {classes})")
        if fit.decision is not None:
            _said(f"learned from {seen}: written to {done.file}")
        else:
            _said(f"nothing learned yet: {seen}; the study's own decision needs {MIN_EXAMPLES} answered sentences")
    if done.uncached:
        _said(f"note: not learned from, their ratings are not in the cache: {', '.join(done.uncached)}")
    print_summary(done.summary.as_dict(), "jtbd redecide")
    if done.summary.transcripts_ok:
        out.print(f"open it in your browser: {serve_command(flags)}", markup=False, soft_wrap=True)
    return 1 if done.summary.transcripts_failed else 0


@app.command()
def deploy(pool: DeployPool, crash_after: CrashAfter = 120) -> int:
    """Register the coding flow on a Prefect work pool, for 'jtbd code --pool' and its workers.

    The Prefect server is PREFECT_API_URL's. Makes the process work pool if it is missing, the deployment
    code_transcript/POOL, and an automation that marks a run Crashed when its worker is lost.
    Then start workers: prefect worker start --pool POOL (docs/scale-out.md).

    Example:
    jtbd deploy --pool interviews
    """
    from jtbd.flows.pool import deploy as deploy_flow

    done = deploy_flow(pool, crash_after)
    _said(f"work pool {pool}: {'made (process)' if done.pool_created else 'found'}")
    _said(f"deployment {done.deployment} registered ({done.deployment_id})")
    _said(f"automation: {done.automation}")
    _said(f"start workers with: prefect worker start --pool {pool}")
    return 0


def serve_command(flags: dict[str, Any]) -> str:
    """The `jtbd serve` line that opens what `jtbd code` with these flags just stored."""
    same_store = [(name, flags[key]) for key, name in (("data_dir", "--data-dir"), ("chroma_url", "--chroma-url"),
                  ("collection", "--collection"), ("study", "--study"), ("db_url", "--db")) if flags.get(key)]
    return shlex.join(["jtbd", "serve", *(part for pair in same_store for part in pair)])


class batch_progress:
    """A progress bar for transcripts and chunks, fed by the flow's events."""

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug

    def __enter__(self) -> "batch_progress":
        from jtbd.coding import progress

        self.restore_logs = _quiet_prefect() if not self.debug else (lambda: None)
        self.bar = Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=False)
        self.transcripts = self.bar.add_task("transcripts", total=None)
        self.chunks = self.bar.add_task("chunks", total=0)
        self.sentences = self.bar.add_task("sentences", total=0, visible=False)
        self.plain = not console.is_terminal  # logs and CI: one line per step instead of a bar
        self.stop = progress.listen(self.on_event)
        if not self.plain:
            self.bar.start()
        return self

    def on_event(self, event: str, *args: Any, **kwargs: Any) -> None:
        if event == "batch_planned":
            if kwargs["chunks"]:  # nothing parsed: the failures say why
                console.print(plan_line(**kwargs), markup=False, soft_wrap=True)
        elif event == "transcripts_total":
            self.bar.update(self.transcripts, total=args[0])
        elif event == "chunks_total":
            self.bar.update(self.chunks, total=(self.bar.tasks[self.chunks].total or 0) + args[0])
        elif event == "sentences_total":
            task = self.bar.tasks[self.sentences]
            self.bar.update(self.sentences, total=(task.total or 0) + args[0], visible=True)
        elif event == "sentence_rated":
            self.bar.advance(self.sentences)
            task = self.bar.tasks[self.sentences]
            if self.plain and int(task.completed) % 25 == 0:
                console.print(f"sentences rated: {int(task.completed)}/{int(task.total or 0)} "
                              f"({task.elapsed or 0:.0f} s)")
        elif event == "chunk_done":
            self.bar.advance(self.chunks)
            if self.plain:
                task = self.bar.tasks[self.chunks]
                console.print(f"chunk {int(task.completed)}/{int(task.total or 0)} done "
                              f"({task.elapsed or 0:.0f} s)")
        elif event == "run_resubmitted":  # --pool: a worker was lost; the finished chunks are cached
            console.print(f"re-submitted: {args[0]} (attempt {kwargs['attempt']}: {kwargs['reason']})",
                          markup=False, soft_wrap=True)
        elif event == "note":
            console.print(f"note: {args[0]}", markup=False, soft_wrap=True)
        elif event == "transcript_done":
            self.bar.advance(self.transcripts)
            if kwargs.get("ok") and self.plain:  # a failure is said once, with its reason, in the summary
                console.print(f"coded: {args[0]}", markup=False)

    def __exit__(self, *exc: Any) -> None:
        self.restore_logs()
        self.stop()
        if not self.plain:
            self.bar.stop()


def plan_line(sentences: int, chunks: int, uncached_chunks: int, seconds: float | None) -> str:
    """Said before the first model call, so nobody starts days of coding by accident."""
    line = f"to code: {sentences} interviewee sentences in {chunks} chunks, {uncached_chunks} not in the cache"
    if seconds is not None and uncached_chunks:
        line += f"; about {_duration(seconds)} on the local model (a 2-core machine)"
    return line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _quiet_prefect() -> Any:
    """Prefect logs every failed task with a traceback; the run's summary says each problem in
    one line instead. --debug keeps Prefect's logs. Returns what puts the levels back."""
    import logging

    import prefect  # noqa: F401  (configures its loggers on import: set them after that)

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name == "prefect" or name.startswith("prefect.")]
    before = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)

    def restore() -> None:
        for lg, level in before:
            lg.setLevel(level)

    return restore


def print_summary(s: dict[str, Any], command: str = "jtbd code") -> None:
    for path, problem in s["transcripts_failed"]:
        console.print(f"[red]error:[/red] {escape(f'{path}: {problem}')}", soft_wrap=True)
    for path, reason in s.get("skipped", []):
        console.print(f"skipped: {path}: {reason}", markup=False, soft_wrap=True)
    for path, speakers in s.get("speakers", {}).items():  # a wrong parse shows at once
        tid = s.get("transcript_ids", {}).get(path, path)
        who = ", ".join(f"{label} ({role}, {_plural(turns, 'turn')})" for label, role, turns in speakers)
        out.print(f"speakers in {tid}: {who}", markup=False, soft_wrap=True)
    table = Table(title=f"{command}: summary", show_header=False)
    rows = [
        ("transcripts ok / failed", f"{len(s['transcripts_ok'])} / {len(s['transcripts_failed'])}"),
        ("chunks (cache hits)", f"{s['chunks']} ({s['cache_hits']})"),
        ("codes", ", ".join(f"{k} {v}" for k, v in s["codes"].items())),
        ("skipped (not transcripts)", str(len(s.get("skipped", [])))),
        ("rejected quotes and job statements", str(s["rejected_quotes"])),
        *([("runs re-submitted after a crash", str(len(s["resubmitted"])))] if s.get("resubmitted") else []),
        *([("runs followed from an earlier submission", str(len(s["followed"])))] if s.get("followed") else []),
        ("LLM calls", str(s["llm_calls"])),
        ("tokens prompt / completion", f"{s['prompt_tokens']} / {s['completion_tokens']}"),
        ("LLM seconds / wall seconds", f"{s['llm_seconds']} / {s['wall_seconds']}"),
        ("model", s["model"]),
        ("decision", s.get("decision") or ""),
        ("prompt / schema version", f"{s['prompt_version']} / {s['schema_version']}"),
        ("run folder", s["out_dir"]),
        ("study report", str(Path(s["out_dir"]) / "study.md")),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))  # a folder or model name may hold [brackets]
    out.print(table)


def _open_store(settings: Settings, embed: bool = True, missing_ok: bool = False) -> Any:
    """The study's code store; a study other than the default must exist (None with missing_ok)."""
    from jtbd.coding.embed import embedder_for
    from jtbd.coding.store import CodeStore, open_collection

    if not settings.chroma_url and not settings.chroma_path.exists():
        raise _nothing_coded(settings)
    collection = open_collection(str(settings.chroma_path), settings.chroma_url, settings.study_collection,
                                 create=settings.study == DEFAULT_STUDY)  # as earlier versions did
    if collection is None:
        if missing_ok:
            return None
        raise FileNotFoundError(f"{source_of(settings, 'study')} is {settings.study!r}: no such study in the store "
                                f"(studies: {', '.join(_study_collections(settings)) or 'none'}; see 'jtbd list')")
    embedder = embedder_for(settings) if embed else None
    return CodeStore(collection, embedder)


def _nothing_coded(settings: Settings) -> FileNotFoundError:
    return FileNotFoundError(f"no coded transcripts yet in {settings.chroma_path}; run 'jtbd code' first")


def _study_collections(settings: Settings) -> dict[str, str]:
    """Each study the code store holds, with its Chroma collection."""
    from jtbd.coding.store import collection_names

    names = collection_names(str(settings.chroma_path), settings.chroma_url)
    found = {study_of_collection(settings.collection, name): name for name in names}
    return {study: name for study, name in sorted(found.items()) if study is not None}


def _open_reviews(settings: Settings) -> Any:
    """The review store, or None when the default SQLite file was never made (a store of an earlier
    version): reading or forgetting makes no database."""
    from jtbd.coding.reviews import ReviewStore

    if not settings.db_url and not (Path(settings.data_dir) / "reviews.sqlite3").exists():
        return None
    return ReviewStore.open(settings.review_db_url)


@app.command()
@_with_settings(*SEARCH_SETTINGS)
def search(query: Query, kind: Kind = None, force: ForceType = None, transcript: TranscriptId = None,
           speaker: Speaker = None, k: HowMany = 5, as_json: AsJson = False, *, flags: dict[str, Any]) -> int:
    """Search the coded quotes of every transcript by meaning.

    Example:
    jtbd search "worried the data would not move over" --force anxiety -k 5
    """
    # Before the store and the embedding model are opened; main prints the error in one line.
    if k < 1:
        raise ValueError(f"-k is {k}: it must be 1 or more (how many results to show)")
    if not query.strip():
        shown = repr(query[:20]) + ("..." if len(query) > 20 else "")
        raise ValueError(f"the search query is {shown}: it must say what to look for, in words")
    store = _open_store(settings_from(flags))
    hits = store.search(query, k=k, kind=kind, force=force, transcript=transcript, speaker=speaker)
    if as_json:
        from jtbd.coding.text import strip_controls

        for hit in hits:
            record = {"id": hit.id, "quote": hit.quote, "score": hit.score, **hit.meta}
            # JSON escapes C0 controls but not C1 ones or DEL; stores from older versions can hold any.
            out.print_json(json.dumps({k: strip_controls(v) if isinstance(v, str) else v for k, v in record.items()}))
    else:
        for hit in hits:
            out.print(quote_card(hit))
    if not hits:
        console.print("no matching codes")
    return 0


@app.command("list")
@_with_settings(*REVIEW_SETTINGS)
def list_transcripts(*, flags: dict[str, Any]) -> int:
    """List the studies with their transcripts; with --study, a study's coded transcripts and codes per kind.

    Example:
    jtbd list --study onboarding
    """
    settings = settings_from(flags)
    if flags.get("study") is None:
        return _list_studies(settings)
    stored = _open_store(settings, embed=False).transcripts()
    table = Table(title=f"coded transcripts in study {settings.study}: {len(stored)}")
    table.add_column("transcript", no_wrap=True)  # the id `jtbd forget` and `--transcript` take: never cut
    for col in ("file", "codes", "model / prompt version"):
        table.add_column(col, overflow="fold")  # wrapped, never cut with an ellipsis
    for tid, entry in stored.items():
        codes = ", ".join(f"{kind} {n}" for kind, n in sorted(entry["codes"].items()))
        coded_with = "; ".join(sorted(entry["models"])) + " / " + "; ".join(sorted(entry["prompt_versions"]))
        table.add_row(*(escape(v) for v in (tid, entry["source"], codes, coded_with)))
    out.print(table)
    return 0


def _list_studies(settings: Settings) -> int:
    """Each study of the code store and the review store, with its transcripts (in either)."""
    from jtbd.coding.store import CodeStore, open_collection

    reviews = _open_reviews(settings)
    has_codes = bool(settings.chroma_url) or settings.chroma_path.exists()
    if not has_codes and reviews is None:
        raise _nothing_coded(settings)
    transcripts: dict[str, set[str]] = {}
    if reviews is not None:
        with reviews:
            transcripts = {study: set(reviews.transcript_ids(study)) for study in reviews.studies()}
    for study, name in _study_collections(settings).items() if has_codes else ():
        collection = open_collection(str(settings.chroma_path), settings.chroma_url, name)
        transcripts.setdefault(study, set()).update(CodeStore(collection, None).transcripts())
    table = Table(title=f"studies: {len(transcripts)} ('jtbd list --study NAME' lists a study's transcripts)")
    for col in ("study", "transcripts", "Chroma collection"):
        table.add_column(col, overflow="fold")
    for study, ids in sorted(transcripts.items()):
        table.add_row(escape(study), str(len(ids)), escape(study_collection(settings.collection, study)))
    out.print(table)
    return 0


@app.command()
@_with_settings(*REVIEW_SETTINGS)
def forget(ids: TranscriptIds, *, flags: dict[str, Any]) -> int:
    """Remove transcripts' codes from the store, their review records and their cached model results.

    For a participant who withdraws or a file coded by mistake: the study's codes, the transcript
    and every suggestion and review decision of it in the review database. Run folders are yours to delete.

    Example:
    jtbd forget call-07 --study onboarding
    """
    # Everything the data folder holds of these transcripts, with or without a store yet.
    from jtbd.coding.store import scrub_log
    from jtbd.flows.code_batch import forget_results
    from jtbd.flows.pool import forget_inputs

    settings = settings_from(flags)
    known: dict[str, Any] = {}
    removed: dict[str, int] = {}
    reviewed, elsewhere = _forget_reviews(settings, ids)  # first: the store most likely to refuse (a lock)
    store = _open_store(settings, embed=False, missing_ok=True) \
        if settings.chroma_url or settings.chroma_path.exists() else None
    if store is not None:
        known = store.transcripts()
        doomed = [code_id for tid in ids for code_id in store.ids_of(tid)]
        removed = {tid: store.delete_transcript(tid) for tid in ids}
        if not settings.chroma_url:  # a server's own log is the server's to compact
            scrub_log(settings.chroma_path, doomed)
    gone = forget_results(settings.results_path, set(ids))
    copies = forget_inputs(settings.data_dir, set(ids))  # files copied for --pool workers
    learned, decision_file = _forget_study_decision(settings, ids)
    for tid in ids:
        if removed.get(tid):
            _said(f"{tid}: {_plural(removed[tid], 'code')} removed from the store")
        if any(reviewed.get(tid, {}).values()):
            rows = reviewed[tid]
            _said(f"{tid}: {_plural(rows['transcripts'], 'transcript')}, {_plural(rows['suggestions'], 'suggestion')} "
                  f"and {_plural(rows['decisions'], 'review decision')} removed from the review database")
        for other in elsewhere.get(tid, []):  # the same id in another study may be the same participant
            _said(f"{tid}: also in study {other}, kept there (jtbd forget {tid} --study {other})")
        if gone.cached.get(tid):
            _said(f"{tid}: {_plural(len(gone.cached[tid]), 'cached chunk result')} removed from {settings.results_path}")
        if gone.reports.get(tid):
            _said(f"{tid}: {_plural(len(gone.reports[tid]), 'unread pool run result')} removed from "
                  f"{settings.results_path}")
        if copies.get(tid):
            _said(f"{tid}: {_plural(len(copies[tid]), 'file')} copied for pool workers removed")
        if tid in learned:
            _said(f"{tid}: the study's decision learned from its reviews removed ({decision_file}; "
                  f"'jtbd redecide --study {settings.study}' learns it again without them)")
    if gone.failures:
        _said(f"{_plural(len(gone.failures), 'failure record')} of an earlier version removed from "
              f"{settings.results_path} (they could hold any transcript's words)")
    console.print("run folders (codes.jsonl, reports, normalised text) are yours to delete", markup=False)
    missing = [tid for tid in ids if not removed.get(tid) and not gone.cached.get(tid) and not gone.reports.get(tid)
               and not copies.get(tid) and not any(reviewed.get(tid, {}).values()) and tid not in learned]
    if missing:
        shown = ", ".join(known) or "none"
        console.print(f"[red]error:[/red] nothing stored or cached for: {escape(', '.join(missing))} "
                      f"(coded transcripts in the store: {escape(shown)})", soft_wrap=True)
        return 1
    return 0


def _forget_study_decision(settings: Settings, ids: Sequence[str]) -> tuple[list[str], Path]:
    """The transcripts the study's decision learned from reviews of (its file removed if any)."""
    from jtbd.coding.from_reviews import learned_from, study_decision_path

    path = study_decision_path(settings.data_dir, settings.study)
    hit = [tid for tid in ids if tid in learned_from(path)]
    if hit:
        path.unlink()
    return hit, path


def _forget_reviews(settings: Settings, ids: Sequence[str]) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    """Each transcript's rows removed from the study's review records (none without a review database),
    and the other studies that hold a transcript of the same id."""
    reviews = _open_reviews(settings)
    if reviews is None:
        return {}, {}
    with reviews:
        removed = {tid: reviews.forget(settings.study, [tid]) for tid in ids}
        held = {study: set(reviews.transcript_ids(study)) for study in reviews.studies()}
    return removed, {tid: [study for study, tids in held.items() if tid in tids] for tid in ids}


@app.command("export")
@_with_settings(*REVIEW_SETTINGS, "reviewer")
def export_codes(export_format: ExportFormat, out_path: ExportOut, status: ExportStatus = "reviewed", *,
                 flags: dict[str, Any]) -> int:
    """Export a study's reviewed codes: CSV, JSON lines, Markdown, a gold folder or a REFI-QDA project.

    Example:
    jtbd export --study onboarding --format qdpx --out onboarding.qdpx
    """
    from jtbd.coding.export import Note, export_study as build, other_gold_files, write_export

    settings = settings_from(flags)
    reviews = _open_reviews(settings)
    if reviews is None:
        raise FileNotFoundError(f"no review database yet in {settings.data_dir}; run 'jtbd code' first")
    with reviews:
        studies = reviews.studies()
        if settings.study not in studies:
            raise FileNotFoundError(f"{source_of(settings, 'study')} is {settings.study!r}: no such study in the "
                                    f"review database (studies: {', '.join(studies) or 'none'}; see 'jtbd list')")
        export = build(reviews, settings.study, export_format, status=status, reviewer=settings.reviewer_name,
                       origin=f"jtbd-coder {_version()}")
    for line in export.problems:
        console.print(("note: " if isinstance(line, Note) else "left out: ") + line, markup=False, soft_wrap=True)
    if export_format == "gold" and not export.files:
        console.print(f"[red]error:[/red] nothing to export: no interview of study {escape(settings.study)} has "
                      f"{'a decision' if status == 'reviewed' else 'codes'} yet", soft_wrap=True)
        return 1
    others = other_gold_files(export, out_path)
    written = write_export(export, out_path)
    counts = ", ".join(f"{status_name} {n}" for status_name, n in sorted(export.counts.items())) or "none"
    where = out_path if export_format != "gold" else f"{out_path} ({_plural(len(written), 'file')})"
    _said(f"exported {_plural(sum(export.counts.values()), 'code')} ({counts}) of "
          f"{_plural(export.interviews, 'interview')} in study {settings.study} to {where}")
    if others:
        _said(f"note: {out_path} also holds {_plural(len(others), 'other gold file')} that jtbd eval will score "
              f"too: {', '.join(str(p) for p in others[:3])}{' ...' if len(others) > 3 else ''}")
    return 1 if export.left_out else 0


@app.command("eval")
@_with_settings(*ALL_SETTINGS)
def eval_gold_set(gold: GoldFolder = None, split: Split = "all", baseline: Baseline = None,
                  update_baseline: UpdateBaseline = False, report: Report = None, scores: Scores = None,
                  run_folder: EvalFolder = None, debug: Debug = False, *, flags: dict[str, Any]) -> int:
    """Code a gold set with the normal flow and score it against the hand-coded codes.

    Example:
    jtbd eval --split dev --report runs/dev.html --baseline dev-scores.json
    """
    options = eval_commands.EvalOptions(gold=gold, split=split, out=run_folder, report=report, scores=scores,
                                        baseline=baseline, update_baseline=update_baseline)
    return eval_commands.cmd_eval(options, settings_from(flags), batch_progress(debug=debug), print_summary)


@app.command()
@_with_settings(*ALL_SETTINGS)
def fit(gold: FitGold, out_path: FitOut = "learned_decision.json", l2: FitL2 = None, debug: Debug = False, *,
        flags: dict[str, Any]) -> int:
    """Fit how ratings become codes to your own coded interviews, and say how well it codes each held out.

    Codes the gold folder with the normal flow (free when it is already coded with the same settings).
    Fits the learned decision on it and prints its scores with each transcript held out in turn,
    beside the hand-made rules and the no-skill baseline. Writes it for 'jtbd code --decision FILE'.

    Example:
    jtbd fit --gold my-gold/ --out my-study-decision.json
    """
    if l2 is not None and not l2 > 0:
        raise typer.BadParameter(f"it must be above 0, not {l2}", param_hint="'--l2'")
    return eval_commands.cmd_fit(Path(gold), Path(out_path), settings_from(flags), batch_progress(debug=debug),
                                 print_summary, l2)


@gold_app.command("check")
def gold_check(folder: GoldCheckFolder) -> int:
    """Validate a folder of hand-coded <id>.gold.json files against their transcripts.

    Example:
    jtbd gold check my-gold/
    """
    return eval_commands.cmd_gold_check(Path(folder))


@app.command()
def model() -> int:
    """Assemble and verify the default offline model, print its path.

    Example:
    jtbd model
    """
    from jtbd.coding.model_files import ensure_default_model

    out.print(str(ensure_default_model()))
    return 0


ServeHost = Annotated[str, _option("--host", "the address to listen on (default 127.0.0.1: this computer only; "
                                           "any other needs a token)", "ADDRESS")]
ServePort = Annotated[int, _option("--port", "the port to listen on (default 8765)", "PORT")]
ServeToken = Annotated[Optional[str], _option("--token", "a token every request must carry (required off loopback; "
                                                         "default there: one is generated and printed)", "TOKEN")]


@app.command()
@_with_settings(*SEARCH_SETTINGS, "db_url", "reviewer")
def serve(host: ServeHost = "127.0.0.1", port: ServePort = 8765, token: ServeToken = None, *,
          flags: dict[str, Any]) -> int:
    """Open a study in the web browser: browse, search, see and review its codes, export them.

    Serves this computer only unless --host says otherwise; then every request needs the token.

    Example:
    jtbd serve --study onboarding --port 8765
    """
    from jtbd.web.app import serve as run_server

    if not 0 < port < 65536:
        raise ValueError(f"--port is {port}: it must be a port number, 1 to 65535")
    run_server(settings_from(flags), host, port, token or "", _said, known_study=flags.get("study") is not None)
    return 0


def _said(line: str) -> None:
    out.print(line, markup=False, soft_wrap=True)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def quote_card(hit: Any) -> str:
    from jtbd.coding.text import strip_controls
    from jtbd.schemas.transcript import format_timestamp

    # A store written before the parser removed control characters can hold terminal escapes.
    meta = {k: strip_controls(v) if isinstance(v, str) else v for k, v in hit.meta.items()}
    m = {k: escape(v) if isinstance(v, str) else v for k, v in meta.items()}  # transcripts say "[laughs]"
    quote = escape(strip_controls(hit.quote))
    when = format_timestamp(m["start_seconds"]) if m.get("start_seconds", -1) >= 0 else "no timestamp"
    line = f"line {m['source_line']}" if m.get("source_line", -1) >= 0 else ""
    # A job statement is the model's summary of the quote above it (stores coded before
    # `statement_source` existed hold model statements too): never shown as the interviewee's words.
    code = m["label"] + (f" (model-written): {m['statement']}" if m.get("statement") else "")
    context = f"...{escape(meta.get('context_before', '')[-80:])} [bold]>>{quote}<<[/bold] " \
              f"{escape(meta.get('context_after', '')[:80])}..."
    return (f"[bold cyan]\"{quote}\"[/bold cyan]\n"
            f"  {code}  |  {m['source']}{' ' + line if line else ''}  |  {m['speaker']}  |  {when}  |  similarity {hit.score}\n"
            f"  [dim]{context}[/dim]\n")


if __name__ == "__main__":
    sys.exit(main())
