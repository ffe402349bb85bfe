"""A seeded mutation fuzzer for lstmconvert's readers, converter and writers.

Run from the repository root::

    python -m fuzz --count 5000 --seed 1          # a long run; exit 1 if any mutant broke a promise
    python -m fuzz --count 200 --keep /tmp/defects  # keep the failing mutants' files

``fuzz.mutate`` and ``fuzz.structured`` make the mutants, ``fuzz.campaign`` checks them,
``fuzz.worker`` runs ``lstmconvert.cli.main`` in-process. ``tests/test_fuzz.py`` runs a small budget.
"""
