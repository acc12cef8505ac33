"""Building a personalized brain model from imaging inputs."""
