"""The admin console: server-rendered pages at ``/admin`` over the same service calls as the API.

``add_console(app)`` mounts it; see ``routes`` (sign-in and assembly), ``pages`` (pages and
actions), ``web`` (what they share: the session checks, rendering, redirects, the flash) and
``session`` (the cookies and the CSRF field).
"""

from ragwall.api.console.routes import add_console

__all__ = ["add_console"]
