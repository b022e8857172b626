"""latentmas-ray: LatentMAS run and evaluated faithfully, at cluster scale.

The core library imports no Ray at module level; see README.md for the layout.
"""

__version__ = "0.1.0"
