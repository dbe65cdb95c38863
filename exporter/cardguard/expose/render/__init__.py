"""Offender reports rendered as terminal text, JSON, Markdown or a self-contained HTML page.

One module per format (:mod:`.text`, :mod:`.json`, :mod:`.markdown`, :mod:`.html`),
listed in one map, :data:`.formats.RENDERERS`; :mod:`.report` holds what they
all render, :mod:`.links` the Grafana links and :mod:`.page` the page style
``/`` and ``/report`` share. Pure: every renderer takes
:class:`~.report.TargetReport` objects and returns a string.
"""
