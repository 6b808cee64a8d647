"""Connectors: one package per system (crm, erp, pdm, oa, drp), plus shared machinery.

Each system folder reads top to bottom: ``native.py`` (the system's records as it writes
them), ``mapping.py`` (native <-> canonical), ``valuemaps.yaml`` (its code lists),
``connector.py`` (what it sends and receives), ``simulator.py`` (a stand-in system).
"""
