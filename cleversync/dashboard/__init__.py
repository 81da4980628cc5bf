"""The operator's web dashboard: server-rendered pages over SessionDb, and a few actions.

``app.Dashboard`` is the WSGI application (Werkzeug, Jinja2); ``auth`` decides who may see
it (loopback on a laptop, App Service Authentication and the admin list in Azure); ``views``
holds the pages and actions; ``local`` serves it for ``cleversync dashboard``; ``hosted``
wraps it for the Functions app.
"""
