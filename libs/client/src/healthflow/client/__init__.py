"""A typed async client of the HealthFlow API (through the gateway), the demo and the drill."""
