"""The benchmark behind `python -m tools.bench`: what production pays, against raw APSW.

`run` parses arguments, runs the figures and prints the table; `figure` is the vocabulary (samples,
goals, scales, the table); `baseline` holds the raw-APSW statements, events and migration folders;
`roundtrips` counts round trips in an strace log and models their time on EFS; `scenarios`, `cpu`,
`coldstart` and `lockqueue` are what runs in the measured processes, one module per figure.
"""
