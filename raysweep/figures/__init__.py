"""What a person looks at: the scaling-curve figures, each readable at MLflow's preview size
(~600 px wide).

  law.py     one law per figure (a metric against D_p, its fit, band, baseline and notes), a
             metric against cross-entropy; re-exports panels' task_figure and law_panel
  panels.py  figures of several panels: every metric of a task (the overview), a study's
             candidates (raysweep.study.figures)
  draw.py    the artists: points with error bars, the baseline's band, a law and its band
  layout.py  title, panels, legends and notes placed by measuring them
  parts.py   sizes and fonts, token ticks (20k, 1M), axis ranges, where a curve ends (the
             target D_p), the no-signal note for a metric that does not vary
"""
