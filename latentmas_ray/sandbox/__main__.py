"""`python -m latentmas_ray.sandbox`: print what the sandbox enforces on this machine, and
which --sandbox_level values it can give."""

import json

from .capabilities import LEVELS, missing_for
from .execute import get_plan, sandbox_capabilities

caps = sandbox_capabilities("rlimits-only")   # whatever works here, nothing refused
plan = get_plan("rlimits-only")
caps["level"] = ", ".join(lv for lv in LEVELS if not missing_for(lv, plan)) + " (levels given here)"
print(json.dumps(caps, indent=2))
