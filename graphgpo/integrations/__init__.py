"""Integrations of graphgpo's estimators into other training frameworks.

Each submodule imports its framework, so import it only where that framework is installed:

* ``graphgpo.integrations.verl`` registers ``graphgpo``, ``gigpo`` and the GraphGPO presets with verl's
  advantage-estimator registry (``pip install 'graphgpo[verl]'``; see docs/notes/verl.md).
"""
