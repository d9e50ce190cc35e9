"""GET /v1/models and GET /v1/models/{id}: the models a key's owner may use, in OpenAI's shapes."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mindroute.db import get_engine, transaction
from mindroute.http.answers import KEY_CODES, database_unavailable, error_response
from mindroute.http.asgi_request import bearer
from mindroute.http.openai_compat import error_body
from mindroute.models import User
from mindroute.services import admission
from mindroute.services.call_log import is_database_outage
from mindroute.services.db_threads import in_db_thread
from mindroute.services.model_ids import api_model_ids


async def models_route(request: Request) -> Response:
    """GET /v1/models: OpenAI's model list of every "<provider name>/<model>" the key's owner may use."""
    try:
        return await _models(request)
    except Exception as error:
        if not is_database_outage(error):
            raise
        return database_unavailable(error)


async def _models(request: Request) -> Response:
    engine = get_engine()
    admitted = await admission.aadmit(engine, bearer(request.headers.get("authorization")), None)
    if isinstance(admitted, admission.KeyRefused):
        refusal = admitted.refusal
        return error_response(401, refusal.message, KEY_CODES[refusal], headers={"www-authenticate": "Bearer"})

    def listing() -> list[dict[str, Any]]:
        with transaction(engine) as session:
            user = session.get(User, admitted.user_id)
            assert user is not None
            ids = api_model_ids(session, user)
        return [{"id": model_id, "object": "model", "created": 0, "owned_by": owner} for owner, model_id in ids]

    return JSONResponse({"object": "list", "data": await in_db_thread(listing)})


async def model_route(request: Request, model_id: str) -> Response:
    """GET /v1/models/{id}: OpenAI's model object for an id the key's owner may use, else a 404."""
    listing = await models_route(request)
    if listing.status_code != 200:
        return listing
    for model in json.loads(listing.body)["data"]:
        if model["id"] == model_id:
            return JSONResponse(model)
    return JSONResponse(
        error_body(404, f"The model '{model_id}' does not exist", "model_not_found", "model"), status_code=404
    )
