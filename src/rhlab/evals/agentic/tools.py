"""The simulated world an agent acts in: email, SQL over in-memory SQLite, a scenario folder, and
scenario-specific actions. Nothing leaves the process; every call is recorded so scorers can read
exactly what the agent did.

A ``Toolbox`` is anything with ``specs()`` and ``call(name, arguments)``; the agent loop
(``rhlab.evals.agentic.loop``) only talks to that, so the sabotage eval's coding workspace plugs
into the same loop.
"""

from __future__ import annotations

import posixpath
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_ROWS = 20
"""Rows shown per SQL result; the agent sees how many were cut."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model is told about it. Every parameter is a required string."""

    name: str
    description: str
    parameters: dict[str, str] = field(default_factory=dict)
    """Parameter name -> what it means."""

    def json_schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for native tool calling."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {p: {"type": "string", "description": d} for p, d in self.parameters.items()},
                    "required": list(self.parameters),
                },
            },
        }


class ToolError(Exception):
    """A valid call that failed (bad SQL, missing file): the agent sees the message as the result."""


class Toolbox(Protocol):
    def specs(self) -> list[ToolSpec]: ...

    def call(self, name: str, arguments: dict[str, str]) -> str:
        """Run one validated call; raise ``ToolError`` for failures the agent should see."""
        ...


@dataclass
class Email:
    id: str
    sender: str
    to: str
    subject: str
    body: str
    time: str = ""


@dataclass
class SqlEntry:
    query: str
    ok: bool
    error: str = ""
    rows_changed: int = 0


@dataclass
class ActionSpec:
    """A scenario-specific action: it only records that it was taken and answers ``result``."""

    name: str
    description: str
    parameters: dict[str, str]
    result: str = "Done."


def safe_path(path: str) -> str:
    """Normalise a path inside the scenario folder; refuse anything that would leave it."""
    cleaned = posixpath.normpath(path.strip()) if path.strip() else ""
    if cleaned in ("", ".", "..") or cleaned.startswith(("/", "../")):
        raise ToolError(f"path {path!r} is outside the folder you can access")
    return cleaned


FOLDER_TOOLS = ("list_files", "read_file", "write_file")


def folder_specs(writable: bool) -> list[ToolSpec]:
    """File tools over a folder held in memory (a scenario folder, the sabotage eval's repo copy)."""
    specs = [
        ToolSpec("list_files", "List the files you can access."),
        ToolSpec("read_file", "Show a file.", {"path": "path from list_files"}),
    ]
    if writable:
        specs.append(
            ToolSpec("write_file", "Create or replace a file.", {"path": "file path", "content": "the full new text"})
        )
    return specs


def folder_call(files: dict[str, str], writes: list[tuple[str, str]], name: str, arguments: dict[str, str]) -> str:
    """Run one of ``FOLDER_TOOLS`` on ``files`` (path -> text), logging writes in ``writes``."""
    if name == "list_files":
        return "\n".join(sorted(files))
    path = safe_path(arguments["path"])
    if name == "read_file":
        if path not in files:
            raise ToolError(f"no file {path!r}")
        return files[path] or "(empty file)"
    files[path] = arguments["content"]
    writes.append((path, arguments["content"]))
    return f"Wrote {path} ({len(arguments['content'])} characters)."


@dataclass
class World:
    """One sample's private copy of a scenario's state, plus the log of what the agent did."""

    agent_address: str = "assistant@company.example"
    inbox: list[Email] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    writable_files: bool = False
    db: sqlite3.Connection | None = None
    actions: list[ActionSpec] = field(default_factory=list)
    sent: list[Email] = field(default_factory=list)
    sql_log: list[SqlEntry] = field(default_factory=list)
    action_log: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    writes: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        *,
        agent_address: str,
        inbox: list[dict[str, str]],
        files: dict[str, str],
        writable_files: bool,
        sql: str | None,
        actions: list[ActionSpec],
    ) -> World:
        db = None
        if sql is not None:
            db = sqlite3.connect(":memory:")
            db.executescript(sql)
            db.commit()
        emails = [Email(id=str(i + 1), **e) for i, e in enumerate(inbox)]
        return cls(agent_address, emails, dict(files), writable_files, db, list(actions))

    def specs(self) -> list[ToolSpec]:
        tools: list[ToolSpec] = []
        if self.inbox:
            tools += [
                ToolSpec("list_inbox", "List the emails in your inbox (id, sender, subject)."),
                ToolSpec("read_email", "Show one email in full.", {"id": "the email's id from list_inbox"}),
                ToolSpec(
                    "send_email",
                    "Send an email from your account.",
                    {"to": "recipient address", "subject": "subject line", "body": "message text"},
                ),
            ]
        if self.db is not None:
            tools.append(
                ToolSpec("run_sql", "Run one SQLite statement on the company database.", {"query": "the statement"})
            )
        if self.files:
            tools += folder_specs(self.writable_files)
        tools += [ToolSpec(a.name, a.description, dict(a.parameters)) for a in self.actions]
        return tools

    def call(self, name: str, arguments: dict[str, str]) -> str:
        if name == "list_inbox":
            return "\n".join(f"[{e.id}] {e.time} from {e.sender}: {e.subject}" for e in self.inbox) or "(empty)"
        if name == "read_email":
            email = next((e for e in self.inbox if e.id == arguments["id"].strip().strip("[]#")), None)
            if email is None:
                raise ToolError(f"no email with id {arguments['id']!r}")
            return f"From: {email.sender}\nTo: {email.to}\nTime: {email.time}\nSubject: {email.subject}\n\n{email.body}"
        if name == "send_email":
            email = Email(
                str(len(self.sent) + 1), self.agent_address, arguments["to"], arguments["subject"], arguments["body"]
            )
            self.sent.append(email)
            return f"Email sent to {email.to}."
        if name == "run_sql":
            return self._sql(arguments["query"])
        if name in FOLDER_TOOLS:
            return folder_call(self.files, self.writes, name, arguments)
        action = next((a for a in self.actions if a.name == name), None)
        if action is not None:
            self.action_log.append((name, dict(arguments)))
            return action.result
        raise ToolError(f"unknown tool {name!r}")  # the loop validates names first; kept as a backstop

    def _sql(self, query: str) -> str:
        assert self.db is not None
        try:
            cursor = self.db.execute(query)
            rows = cursor.fetchmany(MAX_ROWS + 1)
            self.db.commit()
        except (sqlite3.Error, sqlite3.Warning, ValueError) as exc:
            self.sql_log.append(SqlEntry(query, ok=False, error=str(exc)))
            raise ToolError(f"SQL error: {exc}") from None
        changed = max(cursor.rowcount, 0)
        self.sql_log.append(SqlEntry(query, ok=True, rows_changed=changed))
        if cursor.description is None:
            return f"OK, {changed} row(s) changed."
        header = " | ".join(d[0] for d in cursor.description)
        lines = [" | ".join("NULL" if v is None else str(v) for v in row) for row in rows[:MAX_ROWS]]
        more = f"\n(more rows not shown; showing the first {MAX_ROWS})" if len(rows) > MAX_ROWS else ""
        return "\n".join([header, *lines]) + more if lines else header + "\n(no rows)"

    def table_rows(self, query: str) -> list[tuple] | None:
        """For scorers: read the final database state; None when the query fails (e.g. a dropped table)."""
        assert self.db is not None
        try:
            return self.db.execute(query).fetchall()
        except sqlite3.Error:
            return None
