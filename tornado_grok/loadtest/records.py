"""--records FILE: one row per request, JSONL or CSV (chosen by the file's extension)."""
import csv
import json
import math

FIELDS = ("target", "rate", "conversation", "turn", "start_s", "status", "end", "ttft_ms", "chunks",
          "tokens", "output_tokens", "end_s", "e2e_ms", "error")


def _ms(v):
    return None if v is None or math.isnan(v) else round(v, 3)


def rows(runs):
    """Every request of every run as a dict, times in seconds since the first request started."""
    t0 = min((row[0] for _, rec in runs for row in rec.rows), default=0.0)
    for entry, rec in runs:
        for (start, status, end, ttft, chunks, tokens, ntok, t_end, e2e, err, conv,
             turn) in sorted(rec.rows, key=lambda r: r[0]):
            yield {"target": entry["label"], "rate": entry.get("rate"), "conversation": conv,
                   "turn": turn, "start_s": round(start - t0, 6), "status": status or None,
                   "end": end, "ttft_ms": _ms(ttft), "chunks": chunks, "tokens": tokens,
                   "output_tokens": ntok, "end_s": round(t_end - t0, 6), "e2e_ms": _ms(e2e),
                   "error": None if err is None else " ".join(str(err).split())[:500]}


def write(path, runs):
    with open(path, "w", encoding="utf-8", newline="") as f:
        if path.endswith(".csv"):
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            for row in rows(runs):
                w.writerow({k: "" if v is None else v for k, v in row.items()})
        else:
            for row in rows(runs):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
