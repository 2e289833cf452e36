"""A protocol-faithful fake of the OpenAI Chat Completions and Anthropic Messages APIs.

No paid provider is reachable from tests or `faregate demo`, so the gateway talks to this real HTTP
server on a loopback port instead. It answers in the exact wire formats (bodies, SSE sequences,
usage blocks, error bodies, request-id headers) with token counts a test scripts per request, so
cost accounting can be checked to the token. Two alternatives to scripted counts: a simulation of
provider prompt caching that derives usage from the requests (`fake.prompt_cache = True`), and
recorded provider payloads served verbatim (`Scenario(replay_body=...)`, `replay_stream=...`).

    with FakeProvider() as fake:
        fake.push(Scenario(cached_tokens=1000, status=200))
        client = openai.OpenAI(base_url=fake.url + "/v1", api_key="sk-test")

Load tests inject random failures instead (`Faults`: 5xx, 429 with Retry-After, hangs, dropped
connections, or a provider that is down), seeded so a run can be repeated.
"""

from ._common import Faults, ReceivedRequest, Scenario
from ._server import FakeProvider, serve

__all__ = ["FakeProvider", "Faults", "ReceivedRequest", "Scenario", "serve"]
