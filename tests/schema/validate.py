#!/usr/bin/env python3
"""Validates NDJSON files against cohortgate's JSON Schema (specs/schema/records.schema.json).

usage: validate.py SCHEMA [--kafka] FILE...

Each line of each FILE must be a record or a quality record; with --kafka, each line is a Kafka
message as the file sink and `cohortgate run --report-ndjson` write it (#/$defs/kafka_message),
and its value is checked too, by what its headers say it is. Exits 1 with every failure located
(file:line and the JSON path); prints how many lines of each kind passed.
"""
import json
import sys

try:
    import jsonschema
except ImportError:
    sys.exit("validate.py: python3-jsonschema is missing (tests/scripts/install-deps.sh installs it)")


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    kafka = argv[2] == "--kafka"
    files = argv[3:] if kafka else argv[2:]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    top = cls(schema)

    def sub(name):
        return cls({"$ref": "#/$defs/" + name, "$defs": schema["$defs"]})

    kafka_v, record_v, quality_v = sub("kafka_message"), sub("record"), sub("quality")
    audit_v, outcome_v = sub("audit"), sub("outcome")
    failures, counts = 0, {}
    record_def = schema["$defs"]["record"]
    by_table = {}

    def record_errors(doc):
        """A record's errors. The whole schema (its oneOf and every table's rule) judges the first
        record of each table; later ones go to that table's rule alone, which finds the same
        errors in a fraction of the time (the corpus has thousands of records)."""
        table = doc.get("table") if isinstance(doc, dict) else None
        if table not in by_table:
            errs = list(top.iter_errors(doc))
            if errs:
                return list(record_v.iter_errors(doc)) or errs
            rules = [r for r in record_def["allOf"] if r["if"]["properties"]["table"]["const"] == table]
            one = dict(record_def, allOf=rules)
            by_table[table] = cls(dict(one, **{"$defs": schema["$defs"]}))
            return []
        return list(by_table[table].iter_errors(doc))

    def report(where, errors):
        nonlocal failures
        for e in errors:
            failures += 1
            path = "/".join(str(p) for p in e.absolute_path)
            print(f"{where}: /{path}: {e.message[:300]}", file=sys.stderr)

    for path in files:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    doc = json.loads(line)
                except ValueError as e:
                    report(where, [jsonschema.ValidationError(f"not JSON: {e}")])
                    continue
                if not kafka:
                    kind = doc.get("kind", "record") if isinstance(doc, dict) else "?"
                    if kind == "quality":
                        errs = list(top.iter_errors(doc))
                        if errs:  # name the failing branch, not only "not valid under oneOf"
                            errs = list(quality_v.iter_errors(doc)) or errs
                    else:
                        errs = record_errors(doc)
                    report(where, errs)
                    counts[kind] = counts.get(kind, 0) + (not errs)
                    continue
                errs = list(kafka_v.iter_errors(doc))
                report(where, errs)
                if errs:
                    continue
                h = doc["headers"]
                if "cg.error.code" in h:
                    kind = "dead letter"  # its value is the input's original bytes
                else:
                    if "cg.outcome" in h:
                        kind = "outcome"
                    elif "cg.quality.reason" in h:
                        kind = "quality"
                    elif "cg.level" in h:
                        kind = "released record"
                    elif "cg.subscriber" in h:
                        kind = "audit"
                    else:
                        kind = "record"
                    value = json.loads(doc["value"])
                    if kind == "quality":
                        verrs = list(quality_v.iter_errors(value))
                    elif kind == "audit":
                        verrs = list(audit_v.iter_errors(value))
                    elif kind == "outcome":
                        verrs = list(outcome_v.iter_errors(value))
                        if not verrs and value["outcome"] != h["cg.outcome"]:
                            verrs = [jsonschema.ValidationError("cg.outcome differs from the value's")]
                    else:
                        verrs = record_errors(value)
                    report(where + " (value)", verrs)
                    if verrs:
                        continue
                    if kind == "released record" and "topic" in value["source"]:
                        report(where, [jsonschema.ValidationError("a released record names its source topic")])
                        continue
                    if kind.endswith("record") and (value["table"] != h["cg.table"] or value["op"] != h["cg.op"]):
                        report(where, [jsonschema.ValidationError("cg.table/cg.op differ from the value's")])
                        continue
                counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing"
    print(f"validate.py: {summary} valid; {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
