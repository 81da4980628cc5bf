"""The Azure Functions app (Python v2 model): wiring only; the work is in the cleversync package."""

from __future__ import annotations

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
