#!/usr/bin/env python3
"""A strict reader of the Prometheus text exposition format 0.0.4, for vmcryptd's /metrics.

  promparse.py check FILE          exit 0 when FILE is valid, else print every error and exit 1
  promparse.py get FILE SERIES...  print each series' value (0 when absent), one a line;
                                   SERIES is name{label="value",...} in any label order
  promparse.py series FILE         print every series, labels sorted, with its value

Stricter than Prometheus itself where the format leaves room: every family has exactly one HELP
and one TYPE line before its samples, a family's samples are contiguous, no series repeats, label
values use only the three escapes, counters end in _total and gauges do not, histograms have
ascending le bounds ending in +Inf, cumulative counts, and _count equal to the +Inf bucket, and
nothing but HELP and TYPE comments and samples appears.
"""
import math
import re
import sys

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
TYPES = {'counter', 'gauge', 'histogram', 'summary', 'untyped'}


def parse_value(text):
    if text in ('+Inf', 'Inf'):
        return math.inf
    if text == '-Inf':
        return -math.inf
    if text == 'NaN':
        return math.nan
    if not re.fullmatch(r'[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?', text):
        raise ValueError('bad value %r' % text)
    return float(text)


def parse_labels(s, i):
    """Parses {a="x",b="y"} from s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == '}':
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ValueError('bad label name at column %d' % i)
        name = m.group(0)
        if name.startswith('__'):
            raise ValueError('reserved label name %s' % name)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ValueError('expected =" after label %s' % name)
        i += 2
        value = []
        while s[i] != '"':
            if s[i] == '\\':
                esc = s[i + 1]
                if esc not in '\\"n':
                    raise ValueError('bad escape \\%s in label %s' % (esc, name))
                value.append('\n' if esc == 'n' else esc)
                i += 2
            elif s[i] == '\n':
                raise ValueError('raw line feed in label %s' % name)
            else:
                value.append(s[i])
                i += 1
        i += 1
        if name in labels:
            raise ValueError('label %s twice' % name)
        labels[name] = ''.join(value)
        if s[i] == ',':
            i += 1
            if s[i] == '}':  # a trailing comma is allowed by the format
                return labels, i + 1
        elif s[i] != '}':
            raise ValueError('expected , or } after label %s' % name)


def key(name, labels):
    return name + '{' + ','.join('%s="%s"' % (k, labels[k]) for k in sorted(labels)) + '}'


def family_of(name, types):
    for suffix in ('_bucket', '_sum', '_count'):
        base = name[:-len(suffix)] if name.endswith(suffix) else None
        if base and types.get(base) in ('histogram', 'summary'):
            return base
    return name


def parse(text):
    """Returns (series dict key->value, errors list)."""
    errors, series = [], {}
    helps, types, done, current = {}, {}, set(), None
    hist = {}  # (family, labels without le) -> {'buckets': [(le, v)], 'sum': v, 'count': v}
    if text and not text.endswith('\n'):
        errors.append('the last line has no line feed')
    for n, line in enumerate(text.split('\n')[:-1] if text.endswith('\n') else text.split('\n'), 1):
        try:
            if line.startswith('#'):
                m = re.fullmatch(r'# (HELP|TYPE) (\S+) ?(.*)', line)
                if not m:
                    raise ValueError('a comment that is neither HELP nor TYPE')
                what, name, rest = m.groups()
                if not NAME.fullmatch(name):
                    raise ValueError('bad metric name %r' % name)
                if name in done:
                    raise ValueError('%s %s after its family ended' % (what, name))
                if current != name:
                    if current:
                        done.add(current)
                    current = name
                if what == 'HELP':
                    if name in helps:
                        raise ValueError('second HELP for %s' % name)
                    if re.search(r'\\[^\\n]', rest.replace('\\\\', '')):
                        raise ValueError('bad escape in HELP of %s' % name)
                    helps[name] = rest
                else:
                    if name in types:
                        raise ValueError('second TYPE for %s' % name)
                    if rest not in TYPES:
                        raise ValueError('unknown type %r' % rest)
                    if any(family_of(k.split('{')[0], {name: rest}) == name for k in series):
                        raise ValueError('TYPE of %s after its samples' % name)
                    types[name] = rest
                continue
            m = NAME.match(line)
            if not m:
                raise ValueError('a sample without a metric name')
            name = m.group(0)
            i = m.end()
            labels = {}
            if i < len(line) and line[i] == '{':
                labels, i = parse_labels(line + '\n', i)
            parts = line[i:].split(' ')
            if len(parts) not in (2, 3) or parts[0] != '':
                raise ValueError('expected " VALUE [TIMESTAMP]"')
            value = parse_value(parts[1])
            if len(parts) == 3 and not re.fullmatch(r'-?\d+', parts[2]):
                raise ValueError('bad timestamp')
            fam = family_of(name, types)
            if fam not in types or fam not in helps:
                raise ValueError('sample %s without HELP and TYPE of %s' % (name, fam))
            if fam != current:
                raise ValueError('sample %s outside its family %s (not contiguous)' % (name, fam))
            t = types[fam]
            if t == 'counter' and (not name.endswith('_total') or value < 0 or math.isnan(value)):
                raise ValueError('counter %s must end in _total and be >= 0' % name)
            if t == 'gauge' and name.endswith('_total'):
                raise ValueError('gauge %s ends in _total' % name)
            if t == 'histogram':
                if name == fam:
                    raise ValueError('histogram %s sample without _bucket/_sum/_count' % name)
                rest = dict(labels)
                le = rest.pop('le', None)
                h = hist.setdefault((fam, key('', rest)), {'buckets': [], 'sum': None, 'count': None})
                if name.endswith('_bucket'):
                    if le is None:
                        raise ValueError('%s without le' % name)
                    h['buckets'].append((parse_value(le), value))
                elif le is not None:
                    raise ValueError('%s with le' % name)
                elif name.endswith('_sum'):
                    h['sum'] = value
                else:
                    h['count'] = value
            k = key(name, labels)
            if k in series:
                raise ValueError('series %s twice' % k)
            series[k] = value
        except (ValueError, IndexError) as e:
            errors.append('line %d: %s: %r' % (n, e, line))
    for (fam, labels), h in hist.items():
        b = h['buckets']
        where = '%s%s' % (fam, labels)
        if not b or b[-1][0] != math.inf:
            errors.append('%s: no +Inf bucket last' % where)
            continue
        if any(b[i][0] >= b[i + 1][0] for i in range(len(b) - 1)):
            errors.append('%s: le bounds not ascending' % where)
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            errors.append('%s: buckets not cumulative' % where)
        if h['count'] is None or h['sum'] is None:
            errors.append('%s: _sum or _count missing' % where)
        elif h['count'] != b[-1][1]:
            errors.append('%s: _count %s is not the +Inf bucket %s' % (where, h['count'], b[-1][1]))
    for name in set(helps) ^ set(types):
        errors.append('%s has HELP or TYPE but not both' % name)
    return series, errors


def canonical(arg):
    m = NAME.match(arg)
    if not m:
        raise SystemExit('bad series %r' % arg)
    labels = {}
    if m.end() < len(arg):
        labels, end = parse_labels(arg + '\n', m.end())
        if end != len(arg):
            raise SystemExit('bad series %r' % arg)
    return key(m.group(0), labels)


def fmt(v):
    return str(int(v)) if v == int(v) and abs(v) < 2**53 else repr(v)


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    with open(sys.argv[2], encoding='utf-8') as f:
        text = f.read()
    series, errors = parse(text)
    if sys.argv[1] == 'check':
        for e in errors:
            print(e)
        return 1 if errors else 0
    if errors:
        print('invalid exposition: %s' % errors[0], file=sys.stderr)
        return 1
    if sys.argv[1] == 'get':
        for arg in sys.argv[3:]:
            print(fmt(series.get(canonical(arg), 0)))
        return 0
    if sys.argv[1] == 'series':
        for k in sorted(series):
            print(k, fmt(series[k]))
        return 0
    raise SystemExit(__doc__)


if __name__ == '__main__':
    sys.exit(main())
