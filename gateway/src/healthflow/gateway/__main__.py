"""``python -m healthflow.gateway``: serve the gateway on ``GATEWAY_HOST:GATEWAY_PORT``.

uvicorn's own ``X-Forwarded-For`` handling is switched off: the gateway decides
whom to believe itself (``GATEWAY_TRUSTED_PROXY_HOPS``), so a client cannot
choose the address its rate limit is counted under.
"""

from __future__ import annotations

import uvicorn

from healthflow.common.http import uvicorn_options
from healthflow.common.settings import load_settings
from healthflow.gateway.app import create_app
from healthflow.gateway.settings import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                proxy_headers=False, **uvicorn_options())


if __name__ == "__main__":
    main()
