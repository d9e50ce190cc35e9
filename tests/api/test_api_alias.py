"""`uvicorn mindroute.api:app` is the API alone, as README and the deployment notes name it."""

import mindroute.api
from mindroute.http import api


def test_the_short_module_name_serves_the_same_app():
    assert mindroute.api.app is api.app
