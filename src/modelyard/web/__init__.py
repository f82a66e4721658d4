"""What the REST API (``server``) and the dashboard (``ui``) share, so neither imports the other:

- ``services``: the running server's parts (``Services``, opened and closed in order) and
  ``ServicesDep``, the one dependency through which every route reaches them;
- ``auth``: API keys, roles, capabilities and scopes (one rule for REST and dashboard);
- ``errors``: the one JSON error shape and the handlers that produce it;
- ``keys``: creating an API key (the REST route and the dashboard's form);
- ``offloop``: ``off_loop``, how an ``async`` route runs registry and store work off the event
  loop the model gateway shares; ``home``: the server's home folder and admin key;
  ``jsonable``: records as JSON.
"""

from __future__ import annotations

from modelyard.web.services import ServerConfig, Services, ServicesDep, get_services, services_of

__all__ = ["ServerConfig", "Services", "ServicesDep", "get_services", "services_of"]
