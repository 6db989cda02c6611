"""The `jtbd` command line: code, search, eval, gold, model."""

from __future__ import annotations

import jtbd.environment  # noqa: F401  (quiet, offline defaults first)

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jtbd.checks import check_code_options
from jtbd.coding.parse import SUPPORTED_SUFFIXES
from jtbd.settings import Settings, load_settings

console = Console(stderr=True)
out = Console()


def _backend_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model backend")
    g.add_argument("--backend", choices=["local", "openai"], help="local (default): llama.cpp in process; "
                   "openai: any OpenAI-compatible server")
    g.add_argument("--model", help="model name (required for --backend openai)")
    g.add_argument("--model-path", help="local backend: a GGUF file instead of the default model")
    g.add_argument("--base-url", help="openai backend: the server's base URL, e.g. http://localhost:11434/v1")
    g.add_argument("--extra-body", help='openai backend: JSON merged into every request, e.g. \'{"repeat_penalty": 1.0}\'')
    g.add_argument("--llm-mode", choices=["auto", "tools", "json", "md_json", "json_schema", "json_object_schema"],
                   help="how structured output is requested (default auto: json_object_schema for llama.cpp "
                        "in process, tools for servers; use json_object_schema for a llama.cpp server)")
    g.add_argument("--strategy", help="extraction strategy from prompts/passes.toml (default rate)")
    g.add_argument("--chunk-tokens", type=int, help="chunk size in estimated tokens (default 2500)")
    g.add_argument("--overlap-tokens", type=int, help="chunk overlap in estimated tokens (default 200)")
    g.add_argument("--concurrency", type=int, help="chunks coded at once (default 1 local, 4 server)")
    g.add_argument("--debug", action="store_true", help="show Prefect's logs and tracebacks of failures")
    g.add_argument("--interviewer", action="append", dest="interviewers", default=None,
                   help="an interviewer's speaker label; repeat for two interviewers")
    _store_options(g)


def _store_options(p: Any) -> None:
    """--data-dir, --chroma-url and --config, on a parser or an argument group."""
    p.add_argument("--data-dir", help="where the Chroma store and the result cache live")
    p.add_argument("--chroma-url", help="a Chroma server, e.g. http://localhost:8000 (default: local store)")
    p.add_argument("--config", help="a TOML settings file")


_SETTING_FLAGS = ("backend", "model", "model_path", "base_url", "extra_body", "llm_mode", "strategy", "chunk_tokens",
                  "overlap_tokens", "concurrency", "interviewers", "data_dir", "chroma_url")


def settings_from(args: argparse.Namespace) -> Settings:
    flags = {k: getattr(args, k, None) for k in _SETTING_FLAGS}
    return load_settings(flags, getattr(args, "config", None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jtbd", description="Code Jobs-to-be-Done interviews into grounded codes.")
    sub = parser.add_subparsers(dest="command", required=True)
    code = sub.add_parser("code", help="code transcripts (files and/or folders)")
    code.add_argument("paths", nargs="+", metavar="PATH")
    code.add_argument("--out", help="run folder (default runs/<date-time>)")
    _backend_options(code)
    search = sub.add_parser("search", help="search coded quotes by meaning")
    search.add_argument("query", help="what to look for, in your own words (matched by meaning)")
    search.add_argument("--kind", choices=["job", "trigger", "force", "quote"], help="only codes of this kind")
    search.add_argument("--force", choices=["push", "pull", "anxiety", "habit"], help="only forces of this type")
    search.add_argument("--transcript", help="a transcript id (its file name without extension)")
    search.add_argument("--speaker", help="only quotes of this speaker label, as in the transcript")
    search.add_argument("-k", type=int, default=5, help="how many results (default 5)")
    search.add_argument("--json", action="store_true", help="print JSON lines instead of cards")
    _store_options(search)
    listing = sub.add_parser("list", help="list the coded transcripts in the store, with their codes per kind")
    _store_options(listing)
    forget = sub.add_parser("forget", help="remove transcripts' codes from the store and their cached model "
                                           "results (a participant who withdraws, a file coded by mistake)")
    forget.add_argument("ids", nargs="+", metavar="TRANSCRIPT", help="a transcript id (its file name without "
                                                                   "extension), as `jtbd list` shows it")
    _store_options(forget)
    model = sub.add_parser("model", help="assemble and verify the default offline model, print its path")
    model.set_defaults(command="model")
    from jtbd.eval import cli as eval_cli

    eval_cli.add_parsers(sub, _backend_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "code":
            return cmd_code(args)
        if args.command == "search":
            return cmd_search(args)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "forget":
            return cmd_forget(args)
        if args.command == "model":
            from jtbd.coding.model_files import ensure_default_model

            out.print(str(ensure_default_model()))
            return 0
        from jtbd.eval import cli as eval_cli

        return eval_cli.run(args, settings_from)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)  # one line, also in a log
        return 2


def cmd_code(args: argparse.Namespace) -> int:
    from jtbd.flows.code_batch import run_batch

    settings = settings_from(args)
    check_code_options(args.out, settings)
    run_dir = args.out or str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    with batch_progress(debug=args.debug):
        summary = run_batch(list(args.paths), settings, run_dir)
    if not summary.transcripts_ok and not summary.transcripts_failed:
        console.print(f"[red]error:[/red] no transcripts found in {escape(' '.join(args.paths))} "
                      f"(looked for {', '.join(SUPPORTED_SUFFIXES)})", soft_wrap=True)
        return 1
    print_summary(summary.as_dict())
    return 1 if summary.transcripts_failed else 0


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


def print_summary(s: dict[str, Any]) -> None:
    for path, problem in s["transcripts_failed"]:
        console.print(f"[red]error:[/red] {escape(f'{path}: {problem}')}", soft_wrap=True)
    table = Table(title="jtbd code: summary", show_header=False)
    rows = [
        ("transcripts ok / failed", f"{len(s['transcripts_ok'])} / {len(s['transcripts_failed'])}"),
        ("chunks (cache hits)", f"{s['chunks']} ({s['cache_hits']})"),
        ("codes", ", ".join(f"{k} {v}" for k, v in s["codes"].items())),
        ("rejected quotes", str(s["rejected_quotes"])),
        ("LLM calls", str(s["llm_calls"])),
        ("tokens prompt / completion", f"{s['prompt_tokens']} / {s['completion_tokens']}"),
        ("LLM seconds / wall seconds", f"{s['llm_seconds']} / {s['wall_seconds']}"),
        ("model", s["model"]),
        ("prompt / schema version", f"{s['prompt_version']} / {s['schema_version']}"),
        ("run folder", s["out_dir"]),
        ("study report", str(Path(s["out_dir"]) / "study.md")),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))  # a folder or model name may hold [brackets]
    out.print(table)


def _open_store(settings: Settings, embed: bool = True) -> Any:
    from jtbd.coding.embed import make_embedder
    from jtbd.coding.store import CodeStore, open_collection

    if not settings.chroma_url and not settings.chroma_path.exists():
        raise FileNotFoundError(f"no coded transcripts yet in {settings.chroma_path}; run 'jtbd code' first")
    embedder = make_embedder(settings.embeddings, settings.embedding_model, settings.base_url, settings.api_key,
                             settings.timeout) if embed else None
    return CodeStore(open_collection(str(settings.chroma_path), settings.chroma_url, settings.collection), embedder)


def cmd_list(args: argparse.Namespace) -> int:
    stored = _open_store(settings_from(args), embed=False).transcripts()
    table = Table(title=f"coded transcripts in the store: {len(stored)}")
    table.add_column("transcript", no_wrap=True)  # the id `jtbd forget` and `--transcript` take: never cut
    for col in ("file", "codes", "model / prompt version"):
        table.add_column(col, overflow="fold")  # wrapped, never cut with an ellipsis
    for tid, entry in stored.items():
        codes = ", ".join(f"{kind} {n}" for kind, n in sorted(entry["codes"].items()))
        coded_with = "; ".join(sorted(entry["models"])) + " / " + "; ".join(sorted(entry["prompt_versions"]))
        table.add_row(*(escape(v) for v in (tid, entry["source"], codes, coded_with)))
    out.print(table)
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """Everything the data folder holds of these transcripts, with or without a store yet."""
    from jtbd.coding.store import scrub_log
    from jtbd.flows.code_batch import forget_results

    settings = settings_from(args)
    known: dict[str, Any] = {}
    removed: dict[str, int] = {}
    if settings.chroma_url or settings.chroma_path.exists():
        store = _open_store(settings, embed=False)
        known = store.transcripts()
        doomed = [code_id for tid in args.ids for code_id in store.ids_of(tid)]
        removed = {tid: store.delete_transcript(tid) for tid in args.ids}
        if not settings.chroma_url:  # a server's own log is the server's to compact
            scrub_log(settings.chroma_path, doomed)
    gone = forget_results(settings.results_path, set(args.ids))
    for tid in args.ids:
        if removed.get(tid):
            _said(f"{tid}: {_plural(removed[tid], 'code')} removed from the store")
        if gone.cached.get(tid):
            _said(f"{tid}: {_plural(len(gone.cached[tid]), 'cached chunk result')} removed from {settings.results_path}")
    if gone.failures:
        _said(f"{_plural(len(gone.failures), 'failure record')} of an earlier version removed from "
              f"{settings.results_path} (they could hold any transcript's words)")
    console.print("run folders (codes.jsonl, reports, normalised text) are yours to delete", markup=False)
    missing = [tid for tid in args.ids if not removed.get(tid) and not gone.cached.get(tid)]
    if missing:
        shown = ", ".join(known) or "none"
        console.print(f"[red]error:[/red] nothing stored or cached for: {escape(', '.join(missing))} "
                      f"(coded transcripts in the store: {escape(shown)})", soft_wrap=True)
        return 1
    return 0


def _said(line: str) -> None:
    out.print(line, markup=False, soft_wrap=True)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def cmd_search(args: argparse.Namespace) -> int:
    # Before the store and the embedding model are opened; main prints the error in one line.
    if args.k < 1:
        raise ValueError(f"-k is {args.k}: it must be 1 or more (how many results to show)")
    if not args.query.strip():
        shown = repr(args.query[:20]) + ("..." if len(args.query) > 20 else "")
        raise ValueError(f"the search query is {shown}: it must say what to look for, in words")
    settings = settings_from(args)
    store = _open_store(settings)
    hits = store.search(args.query, k=args.k, kind=args.kind, force=args.force,
                        transcript=args.transcript, speaker=args.speaker)
    if args.json:
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
