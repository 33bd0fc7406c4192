"""moodsong on the web: ``moodsong serve`` runs :func:`create_app` under uvicorn.

The package keeps the HTTP side (``app``) apart from the composing side
(``jobs``: worker processes, result folders, expiry).
"""

from moodsong.web.app import create_app

__all__ = ["create_app"]
