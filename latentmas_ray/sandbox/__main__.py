"""`python -m latentmas_ray.sandbox`: print what the sandbox enforces on this machine."""

import json

from .execute import sandbox_capabilities

print(json.dumps(sandbox_capabilities(), indent=2))
