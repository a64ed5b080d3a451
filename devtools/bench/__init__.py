"""The benchmarks (`make bench-intake|bench-release|bench-cleaner`, or scripts/bench_*.py) and the
fresh database and installed portal they share (environment.py). Figures and their commands are
recorded in the README's Measurements."""
