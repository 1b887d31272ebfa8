"""The one wiring place: the app factory, its lifespan and background loops, the resources it opens."""
