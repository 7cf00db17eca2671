"""The benchmark behind `python -m tools.bench`: every cost of the system against raw APSW.

`run` parses arguments, runs the figures and prints the table; `figure` is the vocabulary
(samples, goals, scales, the table); `figures` measures each one; `baseline` holds the raw-APSW
programs, events and migration folders they compare against; `workers` is the code that runs inside
measured subprocesses (stdlib imports only, so import time can be measured).
"""
