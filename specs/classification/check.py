#!/usr/bin/env python3
"""Check the classification catalogue: columns.csv covers every column of every shipped target
table exactly once with allowed values, and every sensitive-codes.csv row parses.
Usage: python3 specs/classification/check.py [OMOP_CDMv5.4_Field_Level.csv]"""
import csv, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIELDS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, '..', 'shared', 'omop', 'OMOP_CDMv5.4_Field_Level.csv')
CATEGORIES = {'personal_attributes', 'health_status', 'medical_application', 'payment', 'health_resources', 'public_health'}
FLAGS = {'identifier', 'quasi', 'free_text', 'sensitive', 'pseudonym'}
GENERALIZE = {'', 'date', 'age_band', 'zip3'}
SETS = {'hiv', 'sti', 'mental_health', 'substance_use', 'genetic'}
REFERENCE = {'concept', 'vocabulary', 'domain', 'concept_class', 'concept_relationship', 'relationship',
             'concept_synonym', 'concept_ancestor', 'source_to_concept_map', 'drug_strength', 'cdm_source',
             'metadata', 'cohort_definition'}
errors = []

def err(msg):
    errors.append(msg)

def cohortgate_columns():
    """The columns of cohortgate's own tables, read from mappers/targets/cohortgate_target.c."""
    src = open(os.path.join(ROOT, 'mappers', 'targets', 'cohortgate_target.c')).read()
    out = []
    for table, var in (('cohortgate.person_merge', 'person_merge_columns'),
                       ('cohortgate.document_retraction', 'document_retraction_columns'),
                       ('cohortgate.order_retraction', 'order_retraction_columns')):
        body = re.search(r'%s\[\] = \{(.*?)\n\};' % var, src, re.S).group(1)
        out += [(table, c) for c in re.findall(r'^\s*\{"([a-z_]+)"', body, re.M)]
    return out

expected = [(r['cdmTableName'].strip().lower(), r['cdmFieldName'].strip().strip('"').lower())
            for r in csv.DictReader(open(FIELDS, encoding='utf-8-sig'))]
expected += cohortgate_columns()

with open(os.path.join(HERE, 'columns.csv'), newline='') as f:
    reader = csv.reader(f)
    if next(reader) != 'table,column,category,level,flags,generalize,generalized_level,why'.split(','):
        err('columns.csv: wrong header')
    seen = {}
    for n, row in enumerate(reader, 2):
        if len(row) != 8:
            err(f'columns.csv:{n}: {len(row)} fields'); continue
        t, c, cat, lv, fl, gen, gl, why = row
        key = (t, c)
        if key in seen: err(f'columns.csv:{n}: {t}.{c} also on line {seen[key]}')
        seen[key] = n
        if cat not in CATEGORIES: err(f'columns.csv:{n}: category {cat!r}')
        if lv not in {'1', '2', '3', '4', '5'}: err(f'columns.csv:{n}: level {lv!r}'); continue
        flags = fl.split(' ') if fl else []
        if fl != fl.strip() or '  ' in fl or not set(flags) <= FLAGS or len(set(flags)) != len(flags):
            err(f'columns.csv:{n}: flags {fl!r}')
        if gen not in GENERALIZE: err(f'columns.csv:{n}: generalize {gen!r}')
        if bool(gen) != bool(gl): err(f'columns.csv:{n}: generalized_level present iff generalize')
        if gl and not (gl.isdigit() and 1 <= int(gl) < int(lv)): err(f'columns.csv:{n}: generalized_level {gl!r} not below {lv}')
        if gen == 'age_band' and key != ('person', 'year_of_birth'): err(f'columns.csv:{n}: age_band is for person.year_of_birth')
        if gen == 'zip3' and key != ('location', 'zip'): err(f'columns.csv:{n}: zip3 is for location.zip')
        if not why.strip(): err(f'columns.csv:{n}: no why')
        if c.endswith('_concept_id') and 'pseudonym' in flags: err(f'columns.csv:{n}: a concept id is no pseudonym')
        if t in REFERENCE and (cat != 'health_resources' or lv != '1'): err(f'columns.csv:{n}: reference tables are health_resources level 1')
        if t not in REFERENCE and (c.endswith('_date') or c.endswith('_datetime')) and gen != 'date':
            err(f'columns.csv:{n}: {t}.{c}: a person-level date needs generalize=date')
        if gen == 'date' and not (c.endswith('_date') or c.endswith('_datetime')): err(f'columns.csv:{n}: date on a non-date column')
for key in expected:
    if key not in seen: err(f'columns.csv: missing {key[0]}.{key[1]}')
for key in seen:
    if key not in set(expected): err(f'columns.csv: {key[0]}.{key[1]} is no column of a shipped table')

with open(os.path.join(HERE, 'sensitive-codes.csv'), newline='') as f:
    reader = csv.reader(f)
    if next(reader) != 'set,level,match,value,why'.split(','):
        err('sensitive-codes.csv: wrong header')
    rows = set()
    for n, row in enumerate(reader, 2):
        if len(row) != 5:
            err(f'sensitive-codes.csv:{n}: {len(row)} fields'); continue
        s, lv, m, v, why = row
        if s not in SETS: err(f'sensitive-codes.csv:{n}: set {s!r}')
        if lv not in {'1', '2', '3', '4', '5'}: err(f'sensitive-codes.csv:{n}: level {lv!r}')
        if not v or v != v.strip(): err(f'sensitive-codes.csv:{n}: value {v!r}')
        if m == 'concept' and not (v.isdigit() and 0 < int(v) < 2**31): err(f'sensitive-codes.csv:{n}: concept {v!r}')
        elif m == 'range':
            lo, sep, hi = v.partition('-')
            if not sep or not lo or len(lo) != len(hi) or lo > hi: err(f'sensitive-codes.csv:{n}: range {v!r}')
        elif m not in ('concept', 'code', 'prefix', 'range'): err(f'sensitive-codes.csv:{n}: match {m!r}')
        if (s, m, v) in rows: err(f'sensitive-codes.csv:{n}: duplicate')
        rows.add((s, m, v))
        if not why.strip(): err(f'sensitive-codes.csv:{n}: no why')

for e in errors:
    print(e)
print(f'{len(seen)} columns, {len(rows)} code rows: ' + ('ok' if not errors else f'{len(errors)} errors'))
sys.exit(1 if errors else 0)
