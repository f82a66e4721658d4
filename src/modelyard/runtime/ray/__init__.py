"""The Ray runtime: replicas as Ray Serve deployments, job runs as Ray Jobs (``docs/ray.md``).

Ray is an optional extra (``pip install 'modelyard[ray]'``) and is imported lazily inside this
package only: importing it (or ``modelyard.runtime``) does not import Ray.
"""

from modelyard.runtime.ray._cluster import RayConnection, RayUnavailable
from modelyard.runtime.ray.runtime import RayRuntime

__all__ = ["RayConnection", "RayRuntime", "RayUnavailable"]
