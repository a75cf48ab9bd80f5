"""`pgt study`: the papers' claims measured in miniature, with intervals over seeds and a verdict per claim.

    from pgt.study.runner import StudyOptions, run_study
    from pgt.study.scales import get_scale
    results = run_study(StudyOptions(out=Path("runs/study"), scale=get_scale("cpu"), seeds=3))

Modules: `arms` (what is trained, which claims compare what), `scales` (sizes), `corpus`
(training/held-out split), `cloze` (the multiple-choice task), `scoring` (per-model scores),
`flops` (analytic training FLOPs), `stats` (intervals and the verdict rule), `results`
(the typed OUT/study.json), `report` (OUT/report.md), `runner` (the orchestration) and
`adapter`, the only module that calls into the rest of pgt.
"""
