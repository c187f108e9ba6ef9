#!/usr/bin/env python3
"""Generate mappers/targets/omop_schema.c, the OMOP CDM v5.4 schema as C data, from OHDSI's CSV files.

    python3 tests/scripts/gen-omop-schema.py [--omop-dir ../shared/omop] [-o mappers/targets/omop_schema.c]

Reads OMOP_CDMv5.4_Table_Level.csv and OMOP_CDMv5.4_Field_Level.csv (OHDSI CommonDataModel,
Apache-2.0) and writes every table with its columns in the CSV's order. The output only records
what the CSV says; cohortgate's own decisions (bigint ids) live in mappers/targets/omop.c. The output is
deterministic so that a test can regenerate it and compare byte for byte.
"""
import argparse
import csv
import os
import re
import sys

FIELD_CSV = "OMOP_CDMv5.4_Field_Level.csv"
TABLE_CSV = "OMOP_CDMv5.4_Table_Level.csv"


def die(msg):
    sys.stderr.write("gen-omop-schema: %s\n" % msg)
    sys.exit(1)


def read_csv(path):
    try:
        # utf-8-sig: OHDSI's files have carried a BOM in some releases
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        die("%s: %s" % (path, e.strerror))


def c_str(s):
    out = ['"']
    for ch in s:
        if ch in '\\"':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            die("unexpected character %r in %r" % (ch, s))
    out.append('"')
    return "".join(out)


def parse_type(where, raw):
    t = raw.strip().lower()
    m = re.fullmatch(r"varchar\((\d+|max)\)", t)
    if m:
        if m.group(1) == "max":
            return "CG_OMOP_TEXT", 0
        return "CG_OMOP_VARCHAR", int(m.group(1))
    simple = {
        "integer": "CG_OMOP_INTEGER",
        "bigint": "CG_OMOP_BIGINT",
        "float": "CG_OMOP_FLOAT",
        "numeric": "CG_OMOP_FLOAT",
        "date": "CG_OMOP_DATE",
        "datetime": "CG_OMOP_DATETIME",
    }
    if t not in simple:
        die("%s: unknown cdmDatatype %r" % (where, raw))
    return simple[t], 0


def yes(where, v):
    v = v.strip()
    if v not in ("Yes", "No"):
        die("%s: expected Yes or No, got %r" % (where, v))
    return v == "Yes"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--omop-dir", default=os.path.join(root, "..", "shared", "omop"))
    ap.add_argument("-o", "--output", default=os.path.join(root, "mappers", "targets", "omop_schema.c"))
    args = ap.parse_args()

    tables = read_csv(os.path.join(args.omop_dir, TABLE_CSV))
    fields = read_csv(os.path.join(args.omop_dir, FIELD_CSV))

    order = []
    meta = {}
    for i, t in enumerate(tables, 2):
        name = t["cdmTableName"].strip().lower()
        if name in meta:
            die("%s:%d: table %s listed twice" % (TABLE_CSV, i, name))
        order.append(name)
        meta[name] = (t["schema"].strip(), yes("%s:%d" % (TABLE_CSV, i), t["isRequired"]))

    cols = {name: [] for name in order}
    for i, f in enumerate(fields, 2):
        where = "%s:%d" % (FIELD_CSV, i)
        table = f["cdmTableName"].strip().lower()
        if table not in cols:
            die("%s: table %s is not in %s" % (where, table, TABLE_CSV))
        # the CSV quotes SQL keywords ("offset"); the column itself is named offset
        name = f["cdmFieldName"].strip().strip('"').lower()
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            die("%s: odd column name %r" % (where, f["cdmFieldName"]))
        if any(c["name"] == name for c in cols[table]):
            die("%s: column %s.%s listed twice" % (where, table, name))
        ctype, length = parse_type(where, f["cdmDatatype"])
        fk = yes(where, f["isForeignKey"])
        fk_table = f["fkTableName"].strip().lower() if fk else ""
        fk_field = f["fkFieldName"].strip().lower() if fk else ""
        if fk_table == "na":
            fk_table = fk_field = ""
        # a concept id refers to CONCEPT; concept.concept_id is the key they refer to
        concept = fk_table == "concept" or (table == "concept" and name == "concept_id")
        cols[table].append(
            dict(
                name=name,
                datatype=f["cdmDatatype"].strip(),
                type=ctype,
                length=length,
                required=yes(where, f["isRequired"]),
                pk=yes(where, f["isPrimaryKey"]),
                fk=fk,
                fk_table=fk_table,
                fk_field=fk_field,
                concept=concept,
            )
        )

    out = []
    w = out.append
    w("/* omop_schema.c - OMOP CDM v5.4 tables and columns as data. GENERATED: do not edit.\n")
    w(" *\n")
    w(" * Source: OHDSI CommonDataModel v5.4 (https://github.com/OHDSI/CommonDataModel,\n")
    w(" * Apache License 2.0): %s and %s,\n" % (TABLE_CSV, FIELD_CSV))
    w(" * copied to ../shared/omop.\n")
    w(" * Regenerate: python3 tests/scripts/gen-omop-schema.py --omop-dir ../shared/omop \\\n")
    w(" *                 -o mappers/targets/omop_schema.c\n")
    w(" * The test test_omop_schema checks that this file matches the CSV files.\n")
    w(" */\n")
    w('#include "cg_omop.h"\n')
    w("\n")
    w("/* clang-format off */\n")
    for t in order:
        if not cols[t]:
            die("table %s has no columns in %s" % (t, FIELD_CSV))
        w("static const cg_omop_column_t cols_%s[] = {\n" % t)
        for c in cols[t]:
            w(
                "    {%s, %s, %s, %d, %d, %d, %d, %s, %s, %d},\n"
                % (
                    c_str(c["name"]),
                    c_str(c["datatype"]),
                    c["type"],
                    c["length"],
                    c["required"],
                    c["pk"],
                    c["fk"],
                    c_str(c["fk_table"]) if c["fk_table"] else "NULL",
                    c_str(c["fk_field"]) if c["fk_field"] else "NULL",
                    c["concept"],
                )
            )
        w("};\n")
    w("\n")
    w("const cg_omop_table_t cg_omop_cdm54_tables[] = {\n")
    for t in order:
        schema, required = meta[t]
        w(
            "    {%s, %s, %d, cols_%s, sizeof cols_%s / sizeof cols_%s[0]},\n"
            % (c_str(t), c_str(schema), required, t, t, t)
        )
    w("};\n")
    w("const size_t cg_omop_cdm54_n_tables = sizeof cg_omop_cdm54_tables / sizeof cg_omop_cdm54_tables[0];\n")
    w("/* clang-format on */\n")

    text = "".join(out)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
    os.replace(tmp, args.output)
    n_cols = sum(len(v) for v in cols.values())
    sys.stderr.write("gen-omop-schema: %d tables, %d columns -> %s\n" % (len(order), n_cols, args.output))


if __name__ == "__main__":
    main()
