"""The course's reference design, re-implemented for the benchmark.

This is the server our users start from (the course exercise's taskserver.py):
a Flask app on its threaded development server (`app.run`), `/tareas` GET and
POST, and one JSON file. For each POST it takes an exclusive flock on the
file, reads and parses the whole file, appends the task, rewrites the whole
file, fsyncs it and unlocks. That is correct (no task is lost) but every
request costs a read and a rewrite of everything stored so far.

    python flask_reference.py --port 9200 --data tasks.json

It reads the same file format taskserver writes (a JSON array, one task per
line) and writes it back in that format, so both servers start from the same
files in the benchmark. Only the benchmark uses it; it is not part of the
product.
"""

import argparse
import datetime
import fcntl
import json
import os

from flask import Flask, jsonify, request

app = Flask(__name__)
DATA = "tasks.json"


def dump(tareas, f):
    """Writes the array one task per line, as taskserver does."""
    f.write("[\n")
    f.write(",\n".join(json.dumps(t, ensure_ascii=False, separators=(",", ":")) for t in tareas))
    f.write("\n]\n" if tareas else "]\n")


@app.route("/tareas", methods=["GET"])
def listar():
    with open(DATA, "r", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        try:
            tareas = json.load(f)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return jsonify(tareas)


@app.route("/tareas", methods=["POST"])
def agregar():
    datos = request.get_json()
    if not isinstance(datos, dict) or not str(datos.get("titulo", "")).strip():
        return jsonify({"error": "titulo es obligatorio"}), 400
    with open(DATA, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            contenido = f.read()
            tareas = json.loads(contenido) if contenido.strip() else []
            tarea = {
                "id": max((t["id"] for t in tareas), default=0) + 1,
                "titulo": datos["titulo"].strip(),
                "descripcion": datos.get("descripcion"),
                "completada": bool(datos.get("completada", False)),
                "cliente": datos.get("cliente"),
                "creada_en": datetime.datetime.now(datetime.timezone.utc)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
            }
            tareas.append(tarea)
            f.seek(0)
            f.truncate()
            dump(tareas, f)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return jsonify(tarea), 201


@app.route("/health", methods=["GET"])
def health():
    return jsonify({"status": "ok"})


def main():
    global DATA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--data", default="tasks.json")
    args = parser.parse_args()
    DATA = args.data
    if not os.path.exists(DATA) or os.path.getsize(DATA) == 0:
        with open(DATA, "w", encoding="utf-8") as f:
            f.write("[]\n")
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
