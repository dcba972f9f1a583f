"""Writes a data file of N tasks, as taskserver would have written it.

    python gen_tasks.py N PATH

One task per line in a JSON array, with every field a real run stores,
`idempotency_key` included, ids 1..N. A million tasks take a few seconds and
about 220 MB. The benchmark uses these files to start servers on a full file.
"""

import os
import sys


def main():
    n, path = int(sys.argv[1]), sys.argv[2]
    head = '{"id":%d,"titulo":"Tarea %d de gen","descripcion":"generated task %d of a benchmark file","completada":false,"cliente":"gen","creada_en":"2026-11-23T10:15:30.123Z","idempotency_key":"gen-000000000000-%d"}'
    with open(path + ".tmp", "w", encoding="ascii") as f:
        f.write("[")
        step = 10_000
        for start in range(1, n + 1, step):
            end = min(start + step, n + 1)
            sep = "\n" if start == 1 else ",\n"
            f.write(sep + ",\n".join(head % (i, i, i, i) for i in range(start, end)))
        f.write("\n]\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
