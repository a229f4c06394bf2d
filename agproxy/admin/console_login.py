"""Carrying a console session to the gateway's new port after a port move.

A session lives in the browser per origin, and the port is part of the origin. The old
page asks for a ticket (admin auth), navigates to the new port with it in the URL
fragment (never sent to any server, never in a Referer), and the new page exchanges
it once for its login. A ticket is random, single-use and lives TICKET_TTL seconds, so
a tab left on an unreachable address holds nothing worth stealing.
"""

from __future__ import annotations

import secrets
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agproxy.admin.proxy import admin_error, read_json_object
from agproxy.frontends.common import JSONResponse

TICKET_TTL = 60.0
MAX_TICKETS = 16


def _tickets(request: Request) -> dict[str, float]:
    tickets: dict[str, float] = request.app.state.console_tickets
    now = time.monotonic()
    for ticket in [t for t, until in tickets.items() if until < now]:
        del tickets[ticket]
    return tickets


async def issue(request: Request) -> Response:
    tickets = _tickets(request)
    while len(tickets) >= MAX_TICKETS:
        del tickets[next(iter(tickets))]
    ticket = secrets.token_urlsafe(32)
    tickets[ticket] = time.monotonic() + TICKET_TTL
    return JSONResponse({"ticket": ticket, "expires_in": TICKET_TTL})


async def exchange(request: Request) -> Response:
    """Public (the new page has no login yet): the ticket is the credential."""
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    ticket = body.get("ticket")
    if not isinstance(ticket, str) or _tickets(request).pop(ticket, None) is None:
        return admin_error(401, "the login ticket is unknown, used or expired; log in again")
    return JSONResponse({"password": request.app.state.gateway.settings.admin_secret})


routes = [Route("/console/ticket", issue, methods=["POST"])]
