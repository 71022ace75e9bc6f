"""The web page and JSON API behind `mnistlab serve` (needs the `web` extra: fastapi, uvicorn).

Import `mnistlab.web.app.create_app`; this package itself imports nothing heavy.
"""


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - a lazy alias of mnistlab.web.app.create_app
    from mnistlab.web.app import create_app as _create_app

    return _create_app(*args, **kwargs)
