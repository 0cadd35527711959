#!/usr/bin/env python3
"""Summarize an Autobahn|Testsuite fuzzingclient report (Python 3, standard library only).

usage: summarize.py OUTDIR [--expected FILE] [--markdown]

Reads OUTDIR/index.json and the per-case JSON files next to it, and prints:
  - every case that did not pass (FAILED, any other verdict, or missing from the report
    although FILE, one case id per line, says it was selected),
  - every NON-STRICT and INFORMATIONAL case with the suite's own description, expectation
    and outcome, so documentation can cite the case id and the reason,
  - cases whose closing behaviour was not OK (a note; the verdict is the case's behaviour),
  - "verdicts: OK a, NON-STRICT b, INFORMATIONAL c, ..." and, last,
  - "conformance: N passed, M failed".
passed = OK + NON-STRICT + INFORMATIONAL; every other verdict and every missing case
counts as failed. With --markdown the lists are printed as Markdown tables (for
docs/conformance.md); the last line is the same.

Exit status: 0 nothing failed, 1 something failed, 2 no usable index.json.
"""

import html
import json
import os
import re
import sys

PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")
# Order of the verdict counts; any verdict not listed here is printed after these.
VERDICTS = PASSING + ("UNIMPLEMENTED", "FAILED")


def case_sort_key(case_id):
    """'9.10.2' -> (9, 10, 2), so 9.10 sorts after 9.2."""
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def plain(text):
    """The suite's descriptions are HTML fragments: turn one into a single line of text."""
    text = re.sub(r"<br\s*/?>", " ", text or "")
    text = re.sub(r"<[^>]+>", "", text)
    return " ".join(html.unescape(text).split())


def shorten(text, limit):
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class Case:
    """One case of the report: its index entry plus its detail file, when readable."""

    def __init__(self, outdir, agent, case_id, entry):
        self.agent = agent
        self.id = case_id
        self.verdict = entry.get("behavior", "?")
        self.close_verdict = entry.get("behaviorClose", "?")
        self.close_code = entry.get("remoteCloseCode")
        self.duration_ms = entry.get("duration") or 0
        self.detail = {}
        report = entry.get("reportfile")
        # The suite writes an HTML page beside each case's JSON file.
        self.page = os.path.join(outdir, report[: -len(".json")] + ".html") if report else "?"
        if report:
            try:
                with open(os.path.join(outdir, report), encoding="utf-8") as f:
                    self.detail = json.load(f)
            except (OSError, ValueError):
                pass

    @property
    def description(self):
        return plain(self.detail.get("description", ""))

    @property
    def expectation(self):
        return plain(self.detail.get("expectation", ""))

    @property
    def outcome(self):
        """What happened, in the suite's words, plus the close code the server sent."""
        parts = [plain(self.detail.get("result", ""))]
        close = plain(self.detail.get("resultClose", ""))
        if close:
            parts.append(close)
        if self.close_code is not None:
            parts.append(f"server's close code {self.close_code}")
        return "; ".join(p for p in parts if p)


def load(outdir):
    path = os.path.join(outdir, "index.json")
    with open(path, encoding="utf-8") as f:
        index = json.load(f)
    cases = [Case(outdir, agent, case_id, entry)
             for agent, per_case in index.items()
             for case_id, entry in per_case.items()]
    cases.sort(key=lambda c: (c.agent, case_sort_key(c.id)))
    return cases


def missing_cases(cases, expected_file):
    if not expected_file:
        return []
    with open(expected_file, encoding="utf-8") as f:
        expected = [line.strip() for line in f if line.strip()]
    # With several agents each must have every case; the script runs one agent.
    agents = sorted({c.agent for c in cases}) or ["?"]
    present = {(c.agent, c.id) for c in cases}
    return [(agent, case_id) for agent in agents for case_id in expected
            if (agent, case_id) not in present]


def print_text(outdir, cases, failed, missing, noted, odd_close):
    if failed or missing:
        print(f"not passed ({len(failed) + len(missing)}):")
        for c in failed:
            print(f"  {c.verdict:<13} {c.id:<8} {c.outcome}")
            print(f"  {'':<13} {'':<8} details: {c.page}")
        for agent, case_id in missing:
            print(f"  {'MISSING':<13} {case_id:<8} not in the report (did the server die?)")
    if noted:
        print(f"non-strict and informational ({len(noted)}):")
        for c in noted:
            print(f"  {c.verdict:<13} {c.id:<8} {shorten(c.description, 110)}")
            print(f"  {'':<13} {'':<8} expected: {shorten(c.expectation, 110)}")
            print(f"  {'':<13} {'':<8} got: {shorten(c.outcome, 110)}")
    if odd_close:
        print("closing behaviour not OK (verdict unaffected): "
              + ", ".join(f"{c.id} {c.close_verdict}" for c in odd_close))
    slowest = sorted(cases, key=lambda c: -c.duration_ms)[:3]
    if slowest:
        total = sum(c.duration_ms for c in cases) / 1000
        print("slowest: " + ", ".join(f"{c.id} {c.duration_ms} ms" for c in slowest)
              + f" (all cases {total:.1f} s)")


def md_cell(text):
    return text.replace("|", "\\|")


def print_markdown(cases, failed, missing, noted):
    if failed or missing:
        print("| Case | Verdict | Outcome |")
        print("| --- | --- | --- |")
        for c in failed:
            print(f"| {c.id} | {c.verdict} | {md_cell(c.outcome)} |")
        for _, case_id in missing:
            print(f"| {case_id} | MISSING | not in the report |")
        print()
    if noted:
        print("| Case | Verdict | What the case does | What the suite wanted | What happened |")
        print("| --- | --- | --- | --- | --- |")
        for c in noted:
            print(f"| {c.id} | {c.verdict} | {md_cell(shorten(c.description, 200))} "
                  f"| {md_cell(c.expectation)} | {md_cell(c.outcome)} |")
        print()


def main(argv):
    args = list(argv)
    markdown = "--markdown" in args
    if markdown:
        args.remove("--markdown")
    expected_file = None
    if "--expected" in args:
        at = args.index("--expected")
        if at + 1 >= len(args):
            sys.exit(__doc__)
        expected_file = args[at + 1]
        del args[at:at + 2]
    if len(args) != 1 or args[0].startswith("-"):
        sys.exit(__doc__)
    outdir = args[0]

    try:
        cases = load(outdir)
        missing = missing_cases(cases, expected_file)
    except (OSError, ValueError) as e:
        print(f"summarize: no usable report in {outdir}: {e}", file=sys.stderr)
        print("conformance: 0 passed, 1 failed")
        return 2

    counts = {}
    for c in cases:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    failed = [c for c in cases if c.verdict not in PASSING]
    noted = [c for c in cases if c.verdict in ("NON-STRICT", "INFORMATIONAL")]
    odd_close = [c for c in cases if c.close_verdict not in ("OK", "INFORMATIONAL")]

    if markdown:
        print_markdown(cases, failed, missing, noted)
    else:
        print_text(outdir, cases, failed, missing, noted, odd_close)

    order = list(VERDICTS) + sorted(set(counts) - set(VERDICTS))
    verdicts = ", ".join(f"{v} {counts.get(v, 0)}" for v in order
                         if v in counts or v in ("OK", "FAILED"))
    if missing:
        verdicts += f", MISSING {len(missing)}"
    print(f"verdicts: {verdicts} ({len(cases)} cases reported)")
    passed = sum(counts.get(v, 0) for v in PASSING)
    n_failed = len(failed) + len(missing)
    print(f"conformance: {passed} passed, {n_failed} failed")
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
