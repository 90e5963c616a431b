"""The DVC stages, one short script each, run by dvc.yaml as `python -m stages.<name>` from the project root, so that
`import pipeline` finds this checkout's library first (a script run by path would find whichever checkout the
environment's editable install points at)."""
