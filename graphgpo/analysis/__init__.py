"""Analysis of rollouts and advantages: per-step credit diagnostics and graph views of one task's rollouts.

    from graphgpo.analysis import compute_method_outputs, credit_diagnostics
    diag = credit_diagnostics(batch, compute_method_outputs(batch, omega=0.8))
    print(diag.table())

Graph view of one task's rollouts: ``graph`` (model: nodes, edges, advantages per method), ``graph_layout``,
``graph_plot`` (matplotlib PNG/SVG), ``graph_html`` (interactive page from ``templates/graph.html``) and
``viz.visualize_task`` (what ``graphgpo viz RUN_DIR --task N`` runs). Plotting modules load matplotlib only
when used.
"""

from graphgpo.analysis.diagnostics import (
    METHODS,
    CreditDiagnostics,
    StepCategories,
    compute_method_outputs,
    credit_diagnostics,
    step_categories,
)

__all__ = ["METHODS", "CreditDiagnostics", "StepCategories", "compute_method_outputs", "credit_diagnostics",
           "step_categories"]
