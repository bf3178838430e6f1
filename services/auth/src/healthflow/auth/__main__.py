"""``python -m healthflow.auth``: serve the API; ``python -m healthflow.auth COMMAND``: the CLI."""

from healthflow.auth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
