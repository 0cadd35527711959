# Python 2.7 (runs on the private interpreter next to wstest).
"""Print, one per line, the case ids a fuzzingclient spec selects.

usage: py27 expected_cases.py SPEC.json

Uses the suite's own case table and pattern rules (CaseSet.parseSpecCases), so the
list matches what wstest will run. An id given without '*' that names no case is an
error (wstest would crash on it halfway through), as is a spec that selects nothing.
"""
import json
import sys

from autobahntestsuite.case import (Cases, CaseBasename, CaseCategories,
                                    CaseSetname, CaseSubCategories)
from autobahntestsuite.caseset import CaseSet


def main(argv):
    if len(argv) != 1:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[0]) as f:
        spec = json.load(f)
    cases = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
    unknown = [p for p in spec["cases"] + spec.get("exclude-cases", [])
               if "*" not in p and p not in cases.CasesById]
    if unknown:
        sys.stderr.write("no such case: %s\n" % ", ".join(unknown))
        return 2
    selected = cases.parseSpecCases(spec)
    for case_id in selected:
        print(case_id)
    return 0 if selected else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
