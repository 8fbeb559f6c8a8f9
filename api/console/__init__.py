"""The admin console: server-rendered pages at ``/admin`` over the same service calls as the API.

``add_console(app)`` mounts it; see ``routes`` (pages and actions) and ``session`` (sign-in
sessions and CSRF tokens).
"""

from ragwall.api.console.routes import add_console

__all__ = ["add_console"]
