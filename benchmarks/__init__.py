"""Benchmarks: dingsync against the official ``dingtalk-stream`` SDK on the local emulator.

Run ``python -m benchmarks.run --help``. Method notes are in ``benchmarks/README.md``.
"""
