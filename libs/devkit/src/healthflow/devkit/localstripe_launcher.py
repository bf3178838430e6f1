"""Run localstripe on 127.0.0.1 with its store in memory only.

``python -m healthflow.devkit.localstripe_launcher --port N`` is its own process (the
one :class:`~healthflow.devkit.embedded.EmbeddedStripe` starts): localstripe is GPL-3,
so it is imported here, in this child process, and nowhere in HealthFlow's code paths.

localstripe's own ``python -m localstripe`` binds every interface (``::``, no address
option) and pickles its whole store to the fixed ``/tmp/localstripe.pickle`` after every
write, one file shared by every instance on the machine. This launcher serves the same
aiohttp application on 127.0.0.1 only and turns the disk dump and load off (the store
lives and dies with the process, like ``--from-scratch``).
"""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    from aiohttp import web
    from localstripe import resources, server  # GPL-3: only ever in this process

    def in_memory_only(store: object) -> None:
        """Stand in for Store.dump_to_disk / try_load_from_disk: no file at all."""

    resources.Store.dump_to_disk = in_memory_only
    resources.Store.try_load_from_disk = in_memory_only
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.INFO)
    access.addHandler(logging.StreamHandler())
    web.run_app(server.app, host=args.host, port=args.port, access_log=access,
                print=None)


if __name__ == "__main__":
    main()
